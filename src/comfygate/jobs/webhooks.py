"""Webhook delivery: the job object POSTed to the job's ``webhook_url`` when it ends.

Signed with HMAC-SHA256 of the exact body (``X-ComfyGate-Signature: sha256=<hex>``), with a
delivery id (``X-ComfyGate-Delivery``) that stays the same across retries so a receiver can
drop duplicates. Failures are retried with exponential backoff on worker threads of their
own, so delivery never blocks the dispatcher; each outcome is recorded on the job.

The target is the client's, so every attempt goes through ``comfygate.egress``: the URL is
checked again, resolved again, and refused when any address is private, loopback,
link-local or a metadata address (unless ``WEBHOOK_ALLOW_PRIVATE``); the POST goes to the
checked address. Redirects are not followed (a 3xx is a failed attempt). The delivery state
says only what a receiver's owner needs (``HTTP 500``, ``could not be reached``), nothing
that would map the network behind the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfygate import egress
from comfygate.egress import EgressPolicy, Resolver
from comfygate.errors import ValidationFailed

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


# Webhooks may be plain http (receivers often are), to public addresses only.
PUBLIC_HTTP = EgressPolicy(allow_http=True)


@dataclass(frozen=True)
class WebhookOptions:
    secret: str
    max_attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 10.0
    policy: EgressPolicy = PUBLIC_HTTP


FIELD = "webhook_url"


def check_target(
    url: str, policy: EgressPolicy, *, timeout_s: float, resolver: Resolver | None = None
) -> str:
    """``url`` if a webhook may be sent there now (checked when the job is submitted; every
    delivery attempt checks again). Raises ``ValidationFailed`` naming ``webhook_url``."""
    egress.check_and_resolve(url, FIELD, policy, timeout_s=timeout_s, resolver=resolver)
    return url


# Called after every attempt: (job id, delivery state) so the job records it.
Recorder = Callable[[str, dict[str, Any]], None]


class WebhookSender:
    def __init__(self, options: WebhookOptions, record: Recorder) -> None:
        self.options = options
        self._record = record
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")
        self.resolver: Resolver | None = None  # tests inject a fake DNS here

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

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
                status = self._post(url, body, headers)
                if 200 <= status < 300:
                    state.update(delivered=True, last_error=None)
                    self._record(job_id, dict(state))
                    log.info("webhook delivered", extra={"job_id": job_id, "attempt": attempt})
                    return
                state["last_error"] = f"HTTP {status}"
            except egress.Refused as exc:
                # The policy refuses the target: trying again would not change that.
                state["last_error"] = exc.message
                self._record(job_id, dict(state))
                log.warning("webhook refused: %s", exc.message, extra={"job_id": job_id})
                return
            except ValidationFailed as exc:
                state["last_error"] = exc.message
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

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """One attempt: check and resolve the URL again, POST to the checked address."""
        timeout = self.options.timeout_s
        target, addresses = egress.check_and_resolve(
            url, FIELD, self.options.policy, timeout_s=timeout, resolver=self.resolver
        )
        with egress.exchange(
            target,
            addresses,
            method="POST",
            headers=headers,
            body=body,
            field=FIELD,
            deadline=time.monotonic() + timeout,
            timeout_s=timeout,
        ) as response:
            return response.status
