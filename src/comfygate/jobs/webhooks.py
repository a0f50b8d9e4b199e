"""Webhook delivery: the job object POSTed to the job's ``webhook_url`` when it ends.

**Durable.** A delivery is a record in the job store (``Delivery``, the outbox), written in
the same commit as the job's end state. ``WebhookOutbox`` sends whatever is pending and due,
on worker threads of its own (delivery never blocks the dispatcher), and writes each
attempt's outcome back: retries with exponential backoff go on after a restart, and a
gateway killed mid-delivery sends it again when it starts (at least once; the id is the same,
so a receiver drops the duplicate).

**Signed twice.** ``X-ComfyGate-Signature: sha256=<hex HMAC-SHA256 of the body>`` and
``X-ComfyGate-Delivery: <id>`` (as before), and the Standard Webhooks headers
``webhook-id`` (the same id), ``webhook-timestamp`` (the attempt's time, so a receiver can
refuse replays) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``,
made and checked by the ``standardwebhooks`` package. Both use ``WEBHOOK_SECRET``'s bytes as
the key: in the Standard Webhooks libraries of other languages the secret is
``whsec_`` + base64 of it (``standard_webhooks_secret``).

**Safe.** The target is the client's, so every attempt goes through ``comfygate.egress``: the
URL is checked again, resolved again, refused when any address is private, loopback,
link-local or a metadata address (unless ``WEBHOOK_ALLOW_PRIVATE``; a refusal is final), and
the POST goes to the checked address. Redirects are not followed (a 3xx is a failed attempt).
The delivery state says only what a receiver's owner needs (``HTTP 500``, ``could not be
reached``), nothing that would map the network behind the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from standardwebhooks import Webhook

from comfygate import egress
from comfygate.egress import EgressPolicy, Resolver
from comfygate.errors import ValidationFailed
from comfygate.jobs.model import Delivery, Job

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ComfyGate-Signature"
DELIVERY_HEADER = "X-ComfyGate-Delivery"
FIELD = "webhook_url"
# Pending deliveries are looked for at least this often (a new one wakes the worker at once).
POLL_S = 1.0
_CONCURRENT = 4


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (shown in the README): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def standard_webhooks_secret(secret: str) -> str:
    """``WEBHOOK_SECRET`` as the Standard Webhooks libraries take it (``whsec_<base64>``)."""
    return "whsec_" + base64.b64encode(secret.encode()).decode()


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    if configured:
        return configured
    path = data_dir / "webhook-secret"
    if path.is_file():
        return path.read_text().strip()
    secret = secrets.token_hex(32)
    # Created 0600: written first and narrowed after, it would be readable for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
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


def check_target(
    url: str, policy: EgressPolicy, *, timeout_s: float, resolver: Resolver | None = None
) -> str:
    """``url`` if a webhook may be sent there now (checked when the job is submitted; every
    delivery attempt checks again). Raises ``ValidationFailed`` naming ``webhook_url``."""
    egress.check_and_resolve(url, FIELD, policy, timeout_s=timeout_s, resolver=resolver)
    return url


class DeliveryStore(Protocol):
    """What the outbox needs of the job store."""

    def claim_deliveries(self, now: float, until: float, limit: int) -> list[Delivery]: ...
    def next_delivery_at(self) -> float | None: ...
    def save_delivery(self, delivery: Delivery) -> None: ...


# Called after every attempt with the delivery, so the job shows its state.
Recorder = Callable[[Delivery], None]


class WebhookOutbox:
    def __init__(self, options: WebhookOptions, store: DeliveryStore, record: Recorder) -> None:
        self.options = options
        self._store = store
        self._record = record
        self._signer = Webhook(options.secret.encode())
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=_CONCURRENT, thread_name_prefix="webhook")
        self._thread: threading.Thread | None = None
        self.resolver: Resolver | None = None  # tests inject a fake DNS here
        # An attempt takes at most the timeout (twice: resolving, then the POST); the queue
        # of claimed deliveries waits for up to four rounds of the workers.
        self._claim_s = 4 * (2 * options.timeout_s + 1)

    def start(self) -> None:
        """Send what is pending (from before a restart too), then whatever becomes due."""
        self._thread = threading.Thread(target=self._loop, name="webhook-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def new(self, job_id: str, url: str, body: str) -> Delivery:
        """A delivery to write with the job's end state (``JobStore.update(job, delivery)``);
        call ``wake`` once it is written."""
        return Delivery(job_id=job_id, url=url, body=body, next_attempt_at=time.time())

    def wake(self) -> None:
        self._wake.set()

    def delivery_for(self, job: Job) -> Delivery | None:
        """The delivery of a job that just ended, if it has a webhook (the ledger writes it
        with the end state; the job shows its state)."""
        if not job.webhook_url:
            return None
        delivery = self.new(job.id, job.webhook_url, "")
        job.webhook = delivery.public()
        delivery.body = json.dumps(job.public(), separators=(",", ":"))
        return delivery

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._send_due()
                nxt = self._store.next_delivery_at()
            except Exception:
                log.exception("webhook outbox: the store failed; trying again")
                nxt = None
            wait = POLL_S if nxt is None else min(POLL_S, max(0.0, nxt - time.time()))
            self._wake.wait(wait)

    def _send_due(self) -> None:
        # Claimed in the store (their next attempt moves past this one's longest run), so
        # no other process sharing the store sends them meanwhile; if this one dies, they
        # are due again then.
        with self._lock:
            room = _CONCURRENT * 4 - len(self._in_flight)
            if room <= 0:
                return
            current = time.time()
            due = self._store.claim_deliveries(current, current + self._claim_s, room)
            self._in_flight.update(d.id for d in due)
        for delivery in due:
            try:
                self._pool.submit(self._attempt, delivery)
            except RuntimeError:  # the pool is shut down: we are stopping
                return

    def _attempt(self, delivery: Delivery) -> None:
        try:
            if self._stop.is_set():
                return
            delivery.attempts += 1
            final = False
            try:
                status = self._post(delivery)
                if 200 <= status < 300:
                    delivery.state, delivery.last_error = "delivered", None
                else:
                    delivery.last_error = f"HTTP {status}"
            except egress.Refused as exc:
                delivery.last_error, final = exc.message, True  # trying again changes nothing
            except ValidationFailed as exc:
                delivery.last_error = exc.message
            if delivery.state != "delivered":
                if final or delivery.attempts >= self.options.max_attempts:
                    delivery.state, delivery.next_attempt_at = "failed", None
                else:
                    delay = self.options.backoff_s * 2 ** (delivery.attempts - 1)
                    delivery.next_attempt_at = time.time() + delay
            self._store.save_delivery(delivery)
            self._record(delivery)
            self._log(delivery)
        except Exception:
            log.exception("webhook delivery failed", extra={"job_id": delivery.job_id})
        finally:
            with self._lock:
                self._in_flight.discard(delivery.id)
            self._wake.set()

    def _log(self, delivery: Delivery) -> None:
        extra = {"job_id": delivery.job_id, "attempt": delivery.attempts}
        if delivery.state == "delivered":
            log.info("webhook delivered", extra=extra)
        elif delivery.state == "failed":
            log.error("webhook gave up: %s", delivery.last_error, extra=extra)
        else:
            log.warning(
                "webhook attempt %d failed: %s", delivery.attempts, delivery.last_error, extra=extra
            )

    def headers(self, delivery: Delivery, now: datetime | None = None) -> dict[str, str]:
        body = delivery.body.encode()
        when = now or datetime.now(UTC)
        return {
            "Content-Type": "application/json",
            "User-Agent": "comfygate-webhook",
            SIGNATURE_HEADER: sign(self.options.secret, body),
            DELIVERY_HEADER: delivery.id,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": self._signer.sign(delivery.id, when, delivery.body),
        }

    def _post(self, delivery: Delivery) -> int:
        """One attempt: check and resolve the URL again, POST to the checked address."""
        timeout = self.options.timeout_s
        target, addresses = egress.check_and_resolve(
            delivery.url, FIELD, self.options.policy, timeout_s=timeout, resolver=self.resolver
        )
        with egress.exchange(
            target,
            addresses,
            method="POST",
            headers=self.headers(delivery),
            body=delivery.body.encode(),
            field=FIELD,
            deadline=time.monotonic() + timeout,
            timeout_s=timeout,
        ) as response:
            return response.status
