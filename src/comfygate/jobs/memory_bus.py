"""The ``memory`` event bus: publish/subscribe of job updates inside one process.

Each subscriber has its own queue, so a thousand waiters cost a thousand blocked threads and
no CPU: nobody polls, and an update wakes only the subscribers of that job.

A late subscriber first gets the job's current state: the last ``status`` payload published
for it. Publishing and subscribing hold one lock, so a subscriber gets either the remembered
status or the event that replaced it, never both and never neither. What is remembered is
bounded: at most ``max_jobs`` jobs (the least recently updated are forgotten first), and a
job's last status is dropped ``done_ttl_s`` after its ``done`` event (the store still has
the job: these are only for the subscribers of a job that is still moving).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from comfygate.jobs.bus import CLOSING, JobUpdate, Subscription

# Jobs whose last status is remembered for late subscribers (about 1-2 KB each).
MAX_JOBS = 10_000
# How long a job's last status is still given to late subscribers after its "done".
DONE_TTL_S = 300.0


class _Queue:
    """A subscriber's queue, with the ``Subscription`` signature (``get(timeout)``)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[JobUpdate] = queue.SimpleQueue()

    def get(self, timeout: float) -> JobUpdate:
        return self._queue.get(timeout=timeout)

    def put(self, update: JobUpdate) -> None:
        self._queue.put(update)

    hand = put


@dataclass
class _Last:
    data: dict[str, Any]
    expires_at: float | None = None  # set by the job's "done"


class MemoryBus:
    """The in-process ``EventBus``. ``max_jobs=0`` remembers no status (no replay)."""

    def __init__(
        self,
        max_jobs: int = MAX_JOBS,
        done_ttl_s: float = DONE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subs: dict[str, list[_Queue]] = {}
        self._last: OrderedDict[str, _Last] = OrderedDict()
        self._max_jobs = max_jobs
        self._done_ttl_s = done_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            if kind == "status" and self._max_jobs > 0:
                self._last[job_id] = _Last(data)
                self._last.move_to_end(job_id)
                while len(self._last) > self._max_jobs:
                    self._last.popitem(last=False)
            elif kind == "done" and job_id in self._last:
                self._last[job_id].expires_at = self._clock() + self._done_ttl_s
            # Under the lock: a subscriber arriving now is either before this (and gets it)
            # or after (and gets it as the remembered status). SimpleQueue.put never blocks.
            for sub in self._subs.get(job_id, ()):
                sub.put((kind, data))

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        sub = _Queue()
        with self._lock:
            self._subs.setdefault(job_id, []).append(sub)
            if self._closed:
                sub.put((CLOSING, {}))
            else:
                last = self._current(job_id)
                if last is not None:
                    sub.put(("status", last))
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(job_id)
                if subs is not None:
                    subs.remove(sub)
                    if not subs:
                        del self._subs[job_id]

    def _current(self, job_id: str) -> dict[str, Any] | None:
        """The job's last status while it is remembered (caller holds the lock)."""
        last = self._last.get(job_id)
        if last is None:
            return None
        if last.expires_at is not None and self._clock() >= last.expires_at:
            del self._last[job_id]
            return None
        return last.data

    def subscribers(self, job_id: str) -> int:
        with self._lock:
            return len(self._subs.get(job_id, ()))

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._subs.values())

    def remembered(self) -> int:
        """How many jobs' last status is kept (the bound is ``max_jobs``)."""
        with self._lock:
            return len(self._last)

    def close(self) -> None:
        """Wake every subscriber, now and later, with ``CLOSING``."""
        with self._lock:
            self._closed = True
            for subs in self._subs.values():
                for sub in subs:
                    sub.put((CLOSING, {}))
