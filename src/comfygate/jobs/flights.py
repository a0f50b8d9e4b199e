"""The SQLite store's coalescing bindings (a determined request's key -> the job in flight
for it), kept in memory by the one process that writes the file.

Why not a table: binding and leaving were two of a determined job's six commits, one of them
before its ``POST /prompt``, for bindings no other process ever reads (one gateway owns a
DATA_DIR, ``shared = False``). What a restart loses is a chance to coalesce, nothing more: a
request made after it while an identical job is still running runs once more. Replicas share
their bindings in Redis.

The rule is the store's (``JobStore.join_in_flight``): a bound job that is unfinished, not
written yet or succeeded stays bound; one that failed or was cancelled is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from comfygate.jobs.model import TERMINAL, JobStatus

# Ended without a result: a request for the same key must run again.
_REPLACED = frozenset(s.value for s in TERMINAL - {JobStatus.SUCCEEDED})


class Flights:
    def __init__(self, status: Callable[[str], str | None]) -> None:
        self._status = status  # a job's status as stored, None if it is not written (yet)
        self._bound: dict[str, str] = {}  # key -> job id
        self._keys: dict[str, set[str]] = {}  # job id -> its keys
        self._lock = threading.Lock()  # dict updates only: never held over SQLite

    def join(self, key: str, job_id: str) -> str:
        while True:
            with self._lock:
                bound = self._bound.get(key)
                if bound is None or bound == job_id:
                    self._bind(key, job_id)
                    return job_id
            status = self._status(bound)  # a query: outside the lock
            with self._lock:
                if self._bound.get(key) != bound:
                    continue  # bound or left meanwhile: look again
                if status not in _REPLACED:
                    return bound
                self._unbind(key, bound)
                self._bind(key, job_id)
                return job_id

    def leave(self, key: str, job_id: str) -> None:
        with self._lock:
            if self._bound.get(key) == job_id:
                self._unbind(key, job_id)

    def forget(self, job_id: str) -> None:
        """A deleted job is bound to nothing."""
        with self._lock:
            for key in self._keys.pop(job_id, set()):
                del self._bound[key]

    def _bind(self, key: str, job_id: str) -> None:
        self._bound[key] = job_id
        self._keys.setdefault(job_id, set()).add(key)

    def _unbind(self, key: str, job_id: str) -> None:
        del self._bound[key]
        keys = self._keys.get(job_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys[job_id]
