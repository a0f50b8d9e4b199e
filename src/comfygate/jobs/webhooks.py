"""Webhook delivery: the job object POSTed to the job's ``webhook_url`` when it ends.

Signed with HMAC-SHA256 of the exact body (``X-ComfyGate-Signature: sha256=<hex>``), with a
delivery id (``X-ComfyGate-Delivery``) that stays the same across retries so a receiver can
drop duplicates. Failures are retried with exponential backoff on worker threads of their
own, so delivery never blocks the dispatcher; each outcome is recorded on the job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ComfyGate-Signature"
DELIVERY_HEADER = "X-ComfyGate-Delivery"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (shown in the README): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    if configured:
        return configured
    path = data_dir / "webhook-secret"
    if path.is_file():
        return path.read_text().strip()
    secret = secrets.token_hex(32)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    log.info("generated a webhook signing secret in %s", path)
    return secret


@dataclass(frozen=True)
class WebhookOptions:
    secret: str
    max_attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 10.0


# Called after every attempt: (job id, delivery state) so the job records it.
Recorder = Callable[[str, dict[str, Any]], None]


class WebhookSender:
    def __init__(self, options: WebhookOptions, record: Recorder) -> None:
        self.options = options
        self._record = record
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")
        self._session = requests.Session()

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._session.close()

    def send(self, job_id: str, url: str, payload: dict[str, Any]) -> None:
        if not self._stop.is_set():
            self._pool.submit(self._deliver, job_id, url, payload)

    def _deliver(self, job_id: str, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery = uuid.uuid4().hex
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "comfygate-webhook",
            SIGNATURE_HEADER: sign(self.options.secret, body),
            DELIVERY_HEADER: delivery,
        }
        delay = self.options.backoff_s
        state: dict[str, Any] = {
            "delivery_id": delivery,
            "delivered": False,
            "attempts": 0,
            "last_error": None,
        }
        for attempt in range(1, self.options.max_attempts + 1):
            state["attempts"] = attempt
            try:
                resp = self._session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=self.options.timeout_s,
                    allow_redirects=False,
                )
                resp.close()
                if 200 <= resp.status_code < 300:
                    state.update(delivered=True, last_error=None)
                    self._record(job_id, dict(state))
                    log.info("webhook delivered", extra={"job_id": job_id, "attempt": attempt})
                    return
                state["last_error"] = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                state["last_error"] = type(exc).__name__
            self._record(job_id, dict(state))
            log.warning(
                "webhook attempt %d failed: %s",
                attempt,
                state["last_error"],
                extra={"job_id": job_id},
            )
            if attempt < self.options.max_attempts and self._stop.wait(delay):
                return
            delay *= 2
        log.error(
            "webhook gave up after %d attempts", self.options.max_attempts, extra={"job_id": job_id}
        )
