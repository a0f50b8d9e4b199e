"""What this process knows about the jobs it holds leases on: how to find a job from a
ComfyUI event (prompt id -> job id), and what a running job reported so far.

Derived, never the truth: every entry comes from a claim or a takeover written in the store,
and goes when the job ends or the lease is lost (a renewal the store refuses). Another
process sees the same jobs in the store, with this process as their holder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from comfygate.jobs.bus import Subscription


@dataclass
class Held:
    job_id: str
    backend: str
    prompt_id: str
    # True until the POST /prompt has answered: "in neither /queue nor /history" does not
    # yet mean that ComfyUI lost it.
    submitting: bool = False
    # Taken over from another holder: ComfyUI sends its events to the client id that
    # submitted it, so this process follows it by /history until it ends.
    followed: bool = False
    exec_error: dict[str, Any] | None = None
    returned: int = 0  # images reported so far (the run-time MAX_BATCH_SIZE)
    progress_written: float = 0.0
    checked: float = field(default=0.0)  # last reconciliation (monotonic)
    finalizing: bool = False
    running: bool = False  # seen running: later "executing" events need no store read
    # What the websocket's ``executed`` messages reported, node by node: the same as the
    # outputs /history will list, unless an event may have been missed (``events_gap``).
    ui_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_gap: bool = False


class Holdings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[str, Held] = {}
        self._by_prompt: dict[str, str] = {}
        # job id -> a synchronous request of this process waiting for it (JobEngine.wait):
        # it collects the job's outputs itself when ComfyUI says it succeeded.
        self._waiters: dict[str, Subscription] = {}

    @contextmanager
    def waiting(self, job_id: str, updates: Subscription) -> Iterator[None]:
        with self._lock:
            first = self._waiters.setdefault(job_id, updates) is updates
        try:
            yield
        finally:
            if first:
                with self._lock:
                    self._waiters.pop(job_id, None)

    def waiter(self, job_id: str) -> Subscription | None:
        with self._lock:
            return self._waiters.get(job_id)

    def add(self, held: Held) -> None:
        with self._lock:
            old = self._by_job.get(held.job_id)
            if old is not None:
                self._by_prompt.pop(old.prompt_id, None)
            self._by_job[held.job_id] = held
            self._by_prompt[held.prompt_id] = held.job_id

    def drop(self, job_id: str) -> Held | None:
        with self._lock:
            held = self._by_job.pop(job_id, None)
            if held is not None:
                self._by_prompt.pop(held.prompt_id, None)
            return held

    def get(self, job_id: str) -> Held | None:
        with self._lock:
            return self._by_job.get(job_id)

    def by_prompt(self, prompt_id: str) -> Held | None:
        with self._lock:
            job_id = self._by_prompt.get(prompt_id)
            return self._by_job.get(job_id) if job_id else None

    def on(self, backend: str) -> list[Held]:
        with self._lock:
            return [h for h in self._by_job.values() if h.backend == backend]

    def all(self) -> list[Held]:
        with self._lock:
            return list(self._by_job.values())

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._by_job)

    def start_finalizing(self, job_id: str) -> bool:
        """True for the one caller that may collect the job's outputs now."""
        with self._lock:
            held = self._by_job.get(job_id)
            if held is None or held.finalizing:
                return False
            held.finalizing = True
            return True

    def end_finalizing(self, job_id: str) -> None:
        with self._lock:
            held = self._by_job.get(job_id)
            if held is not None:
                held.finalizing = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_job)
