"""Waiting requests (a synchronous generate, an event stream) each hold a server thread for
as long as they wait. Unbounded, one client could take every thread and leave nothing for
anyone else, ``/healthz`` included. So the waits are counted:

* per client (``clients.client_key``: the key's owner, or the address with keys off), at most
  ``MAX_WAITS_PER_CLIENT``: past it, 429 ``rate_limited``;
* in all, at most ``THREADS`` less a reserve kept for the quick routes (``/healthz``,
  ``/readyz``, job reads, submissions): past it, 503 ``backend_unavailable`` with
  ``Retry-After``, so a load balancer or client backs off.

A slot is taken before the job is created (a refused request leaves nothing behind) and given
back when the answer is done: for a stream, when the server closes its response.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask, current_app

from comfygate.api.clients import client_key
from comfygate.config import Settings
from comfygate.errors import BackendUnavailable, RateLimited

EXTENSION = "comfygate.waits"


def reserve_for(threads: int) -> int:
    """Threads kept free of waits: an eighth, at least 1, at most 32."""
    return max(1, min(32, threads // 8))


class WaitSlots:
    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client  # 0: no cap per client
        self.total = total
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self._in_use = 0

    def acquire(self, client: str) -> Callable[[], None]:
        """Take a slot for ``client``; the returned function gives it back (once)."""
        with self._lock:
            if self.per_client and self._held[client] >= self.per_client:
                raise RateLimited(
                    f"this client already has {self.per_client} requests waiting on jobs "
                    "(MAX_WAITS_PER_CLIENT); wait for one to end, or follow jobs with "
                    "GET /v1/jobs/{id} instead",
                    {"limit": self.per_client, "retry_after_s": 1},
                    headers={"Retry-After": "1"},
                )
            if self._in_use >= self.total:
                raise BackendUnavailable(
                    f"the gateway has {self.total} requests waiting on jobs, as many as it "
                    "holds; retry later",
                    {"limit": self.total},
                    retry_after_s=2,
                )
            self._held[client] += 1
            self._in_use += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._in_use -= 1
                self._held[client] -= 1
                if self._held[client] <= 0:
                    del self._held[client]

        return release

    def in_use(self) -> int:
        return self._in_use


def init_app(app: Flask, settings: Settings) -> None:
    total = max(1, settings.threads - reserve_for(settings.threads))
    app.extensions[EXTENSION] = WaitSlots(settings.max_waits_per_client, total)


def acquire() -> Callable[[], None]:
    """A slot for this request's client (see the module doc)."""
    slots: WaitSlots = current_app.extensions[EXTENSION]
    return slots.acquire(client_key())


@contextmanager
def slot() -> Iterator[None]:
    release = acquire()
    try:
        yield
    finally:
        release()
