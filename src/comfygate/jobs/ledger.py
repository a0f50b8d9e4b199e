"""The ledger: the one owner of every job transition.

The state machine is the table below. A transition is a compare-and-set on the job's stored
version (``JobStore.swap``), written before anyone acts on it; after the write the job's
events go out on the bus. Nothing else assigns a job's status, backend, prompt id, attempts
or lease holder.

    queued ──claim──> (held) ──submit──> submitted ──> running ──> succeeded
      ^                                     │  │          │ │
      └──────────── requeue / unsend ───────┘  │          │ └────> failed / cancelled
                                               └──────────┴──────> succeeded / failed / cancelled
    queued ─────────────────────────────────────────────────────> failed / cancelled
    (new) ───create_submitted──> submitted     (held at once: nothing queued before it)

A holder (a dispatcher) may lose its job: another took it over after its lease ran out, or
it ended elsewhere (cancelled on another replica). Its next transition then finds a version
or a holder it did not expect and gets ``None``: it stops acting on that job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from comfygate.jobs.bus import EventBus
from comfygate.jobs.model import Delivery, Job, JobStatus, Output, now
from comfygate.jobs.store import JobStore

log = logging.getLogger(__name__)

Q, S, R = JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING
OK, FAILED, CANCELLED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED

# from -> the states it may move to. Staying in a state while fields change (progress, a
# lease given back, a webhook's delivery state) is an update: ``change(..., update=True)``.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    Q: frozenset({S, FAILED, CANCELLED}),
    S: frozenset({R, Q, OK, FAILED, CANCELLED}),
    R: frozenset({Q, OK, FAILED, CANCELLED}),
    OK: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}
MAX_RETRIES = 50  # CAS retries when others write the job meanwhile (progress, renewals)

Change = Callable[[Job], bool | None]  # mutate the job; False: do not write after all
DeliveryFor = Callable[[Job], Delivery | None]
EndListener = Callable[[JobStatus, Job], None]  # (the status it ended from, the ended job)


VERSION = "_version"  # in a status event: the version written (api/ strips it)


def payload(job: Job) -> dict[str, Any]:
    """A status or done event: the job object, and the version it was written as (so a
    stream that read the job from the store can tell an older event from a newer one)."""
    return {**job.public(), VERSION: job.version}


# The end listeners held in this context by ``Ledger.holding_ends`` (a waiting request).
_HELD: ContextVar[list[Callable[[], None]] | None] = ContextVar("held_ends", default=None)


def _unassign(job: Job) -> None:
    """A job not written as submitted after all: queued again, as it came."""
    job.status, job.holder = Q, None
    job.prompt_id = job.backend = job.submitted_at = None
    job.attempts -= 1


class Ledger:
    def __init__(self, store: JobStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self._delivery_for: DeliveryFor = lambda job: None
        self._on_end: list[EndListener] = []
        self._on_end_at_once: list[EndListener] = []
        self._on_queued: list[Callable[[], None]] = []
        self._later: Callable[[Callable[[], None]], None] | None = None

    def set_later(self, later: Callable[[Callable[[], None]], None]) -> None:
        """Where the end listeners held by ``holding_ends()`` run once released."""
        self._later = later

    def set_delivery(self, factory: DeliveryFor) -> None:
        """What a job that ends sends (its webhook), written in the same step as the end."""
        self._delivery_for = factory

    def on_queued(self, listener: Callable[[], None]) -> None:
        """Called after a job is written queued (new, or back in the queue)."""
        self._on_queued.append(listener)

    def on_end(self, listener: EndListener, *, at_once: bool = False) -> None:
        """Called once per job, after its terminal state is written, in the writing process;
        ``at_once``: never held by ``holding_ends()`` (what must not wait for an answer
        to be sent, such as the backend's slot)."""
        (self._on_end_at_once if at_once else self._on_end).append(listener)

    def create(self, job: Job) -> Job:
        """Write a new job: queued, or already ended (answered from the cache), with its
        webhook's delivery then."""
        self.store.insert(job)
        if job.status.terminal:
            delivery = self._delivery_for(job)
            if delivery is not None:
                self.store.swap(job, job.version, delivery)
            self._after(Q, job, "status")
        else:
            self.bus.publish(job.id, "status", payload(job))
            self._queued()
        return job

    def create_submitted(
        self, job: Job, holder: str, until: float, backend: str, prompt_id: str
    ) -> Job | None:
        """Write a new job straight as submitted: held by ``holder`` (lease until ``until``)
        with its backend and prompt id, on record before the POST leaves. One write where
        create, claim and submitted are three; the same first event (``status``, queued to
        users, as a submitted job is). Only while no queued job waits for a claim (a job
        never jumps the queue): None then, with nothing written and ``job`` as it was."""
        if job.status is not Q:
            return None
        job.status, job.holder = S, holder
        job.prompt_id, job.backend, job.submitted_at = prompt_id, backend, now()
        job.attempts += 1
        try:
            written = self.store.insert_held(job, holder, until, job.submitted_at)
        except BaseException:
            _unassign(job)
            raise
        if not written:
            _unassign(job)
            return None
        self.bus.publish(job.id, "status", payload(job))
        return job

    def _queued(self) -> None:
        for wake in self._on_queued:
            wake()

    # --- the one way to change a job -------------------------------------------------------

    def change(
        self,
        job_id: str,
        to: JobStatus,
        change: Change | None = None,
        *,
        holder: str | None = None,
        publish: str | None = "status",
        update: bool = False,
        current: Job | None = None,
    ) -> Job | None:
        """Move a job to ``to`` (applying ``change`` to it) if the table allows it from its
        current state (``update``: or if it is in ``to`` already) and, with ``holder``, only
        while that holder holds it. Returns the job as written, or None when the transition
        does not apply (anymore). ``current``: the job as the caller just read it from the
        store (saves a read; a stale copy only costs a retry)."""
        for _ in range(MAX_RETRIES):
            job, current = current or self.store.get(job_id), None
            if job is None:
                return None
            if to not in TRANSITIONS[job.status] and not (update and to is job.status):
                return None
            if holder is not None and job.holder != holder:
                return None  # taken over by another holder, or ended elsewhere
            before = job.status
            expected = job.version
            if change is not None and change(job) is False:
                return None
            job.status = to
            delivery = None
            if to.terminal and not before.terminal:
                job.finished_at = now()
                job.holder = None  # the lease ends with the job
                delivery = self._delivery_for(job)
            if to is R and job.started_at is None:
                job.started_at = now()
            if self.store.swap(job, expected, delivery):
                self._after(before, job, publish)
                return job
        log.error("job %s: gave up writing %s after %d tries", job_id, to, MAX_RETRIES)
        return None

    def _after(self, before: JobStatus, job: Job, publish: str | None) -> None:
        data = payload(job)
        if publish is not None:
            self.bus.publish(job.id, publish, data)
        if job.status.terminal and not before.terminal:
            self.bus.publish(job.id, "done", data)
            self._ended(before, job, self._on_end_at_once)
            self.soon(lambda: self._ended(before, job, self._on_end))

    def soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` now, or, in a ``holding_ends()`` block, once it is released."""
        held = _HELD.get()
        if held is not None and self._later is not None:
            held.append(fn)
        else:
            fn()

    @contextmanager
    def holding_ends(self) -> Iterator[Callable[[], None]]:
        """For a request that waits for its job and answers: the end listeners (the result
        cache, the coalescing key, metrics, the log line) of a job this thread ends in the
        block are held until the call it yields sends them to the other thread (once the
        answer is out, so the bookkeeping does not compete with sending it; the call may come
        after the block, and more than once)."""
        held: list[Callable[[], None]] = []
        token = _HELD.set(held)

        def release() -> None:
            while held:
                fn = held.pop(0)
                if self._later is not None:  # always: soon() holds nothing without it
                    self._later(fn)

        try:
            yield release
        finally:
            _HELD.reset(token)

    def _ended(self, before: JobStatus, job: Job, listeners: list[EndListener]) -> None:
        for listener in listeners:
            try:
                listener(before, job)
            except Exception:
                log.exception("a job-end listener failed", extra={"job_id": job.id})

    # --- named transitions -----------------------------------------------------------------

    def submitted(self, job: Job, holder: str, backend: str, prompt_id: str) -> Job | None:
        """A claimed job's prompt id and backend, on record before the POST leaves."""

        def assign(j: Job) -> bool:
            if j.status is not Q:
                return False
            j.prompt_id, j.backend, j.submitted_at = prompt_id, backend, now()
            j.attempts += 1
            return True

        return self.change(job.id, S, assign, holder=holder, publish=None, current=job)

    def running(self, job_id: str, holder: str | None = None) -> Job | None:
        return self.change(job_id, R, lambda j: j.status is S, holder=holder)

    def progress(self, job_id: str, value: dict[str, Any], holder: str) -> Job | None:
        def put(j: Job) -> bool:
            j.progress = value
            return j.status in (S, R)

        job = self.store.get(job_id)
        if job is None:
            return None
        return self.change(job_id, job.status, put, holder=holder, publish=None, update=True)

    def requeue(self, job_id: str, holder: str | None, *, count: bool) -> Job | None:
        """Back to the queue, for any dispatcher to claim: ComfyUI lost the job (``count``:
        that attempt counts), or nothing of it reached ComfyUI (the attempt is undone)."""

        def back(j: Job) -> bool:
            if j.status not in (S, R):
                return False
            if not count:
                j.attempts -= 1
            j.prompt_id = j.backend = j.submitted_at = None
            j.progress = None
            j.holder = None
            return True

        job = self.change(job_id, Q, back, holder=holder)
        if job is not None:
            self._queued()
        return job

    def release(self, job_id: str, holder: str) -> Job | None:
        """Give back a claimed job that was not submitted (no backend had room for it)."""

        def free(j: Job) -> bool:
            j.holder = None
            return j.status is Q

        return self.change(job_id, Q, free, holder=holder, publish=None, update=True)

    def succeeded(
        self,
        job_id: str,
        outputs: list[Output],
        holder: str | None,
        current: Job | None = None,
    ) -> Job | None:
        def put(j: Job) -> None:
            j.outputs = outputs

        return self.change(job_id, OK, put, holder=holder, current=current)

    def failed(self, job_id: str, error: dict[str, Any], holder: str | None = None) -> Job | None:
        def put(j: Job) -> None:
            j.error = error

        return self.change(job_id, FAILED, put, holder=holder)

    def cancelled(
        self, job_id: str, error: dict[str, Any], status: JobStatus = CANCELLED
    ) -> Job | None:
        """Anyone may end a job early (a user, a deadline, a run-time limit)."""

        def put(j: Job) -> None:
            j.error = error

        return self.change(job_id, status, put)

    def webhook_state(self, job_id: str, delivery: Delivery) -> Job | None:
        """An ended job shows how its webhook's delivery goes."""
        job = self.store.get(job_id)
        if job is None:
            return None

        def put(j: Job) -> None:
            j.webhook = delivery.public()

        return self.change(job_id, job.status, put, publish=None, update=True)
