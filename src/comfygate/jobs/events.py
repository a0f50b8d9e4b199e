"""In-process publish/subscribe of job updates: what wakes waiting requests and SSE streams.

Each subscriber has its own queue, so a thousand waiters cost a thousand blocked threads and
no CPU: nobody polls, and an update wakes only the subscribers of that job.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

JobUpdate = tuple[str, dict[str, Any]]  # (event name, payload)
# Sent to every subscriber when the gateway stops: waiting requests and event streams end
# at once instead of holding the stop for the server's grace period.
CLOSING = "closing"


class JobEvents:
    def __init__(self) -> None:
        self._subs: dict[str, list[queue.SimpleQueue[JobUpdate]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Wake every subscriber, now and later, with ``CLOSING``."""
        with self._lock:
            self._closed = True
            subs = [sub for subs in self._subs.values() for sub in subs]
        for sub in subs:
            sub.put((CLOSING, {}))

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs.get(job_id, ()))
        for sub in subs:
            sub.put((kind, data))

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[queue.SimpleQueue[JobUpdate]]:
        sub: queue.SimpleQueue[JobUpdate] = queue.SimpleQueue()
        with self._lock:
            self._subs[job_id].append(sub)
            if self._closed:
                sub.put((CLOSING, {}))
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(job_id)
                if subs is not None:
                    subs.remove(sub)
                    if not subs:
                        del self._subs[job_id]

    def subscribers(self, job_id: str) -> int:
        with self._lock:
            return len(self._subs.get(job_id, ()))

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._subs.values())
