"""Dispatch: claim a queued job from the store, pick a backend, record the submission, POST.

A dispatcher is a holder (its owner id, also its ComfyUI client id). It claims jobs with a
lease and renews the leases of the jobs it holds; a job whose holder stopped renewing (a
process that died) is taken over by whichever dispatcher finds it first: the same code at
start (a restart takes back its own jobs at once) and while running. Submissions run on an
executor of their own, so a slow ComfyUI never delays the claims of the others; except in a
``submitting_here()`` block (a synchronous request, which waits for its job anyway), where the
thread that makes a job sends it itself, saving the hand-off: with a backend free and no job
queued before it, the job is written straight as submitted and held (``create``: one store
write where insert, claim and submitted were three); otherwise it is queued and the thread
sends the first job it claims (the oldest: a synchronous request never jumps the queue).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from comfygate.backends.backend import Backend
from comfygate.backends.pool import BackendPool
from comfygate.backends.requirements import requirements
from comfygate.errors import BackendUnavailable, BackendUnreachable, GenerationFailed
from comfygate.jobs.holdings import Held, Holdings
from comfygate.jobs.ledger import Ledger
from comfygate.jobs.model import Job, JobStatus
from comfygate.storage.base import OutputStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchOptions:
    lease_s: float = 15.0
    max_attempts: int = 3


Reconcile = Callable[[str], None]

_QUEUED = frozenset({JobStatus.QUEUED})
_SUBMIT_HERE: ContextVar[bool] = ContextVar("submit_here", default=False)


@contextmanager
def submitting_here() -> Iterator[None]:
    """A job this thread queues in the block is sent to ComfyUI by this thread."""
    token = _SUBMIT_HERE.set(True)
    try:
        yield
    finally:
        _SUBMIT_HERE.reset(token)


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        pool: BackendPool,
        holdings: Holdings,
        holder: str,
        inputs: OutputStorage,
        options: DispatchOptions,
        submissions: ThreadPoolExecutor,
    ) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.pool = pool
        self.holdings = holdings
        self.holder = holder
        self.inputs = inputs
        self.options = options
        self.submissions = submissions
        self.reconcile: Reconcile = lambda job_id: None  # set by the engine (reconcile.py)
        self.renewing = True  # False: this dispatcher acts dead (its leases run out)

    def until(self) -> float:
        return time.time() + self.options.lease_s

    # --- claims ----------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        """Write a new job (``Admission`` calls it). In a ``submitting_here()`` block, with
        room on a backend that can run it and no job queued before it, the job is written
        submitted and held, and this thread sends it; otherwise it is queued (and, in the
        block, this thread sends the oldest job it claims)."""
        if not _SUBMIT_HERE.get() or job.status is not JobStatus.QUEUED:
            return self.ledger.create(job)
        backend = self.pool.acquire(requirements(job.graph))
        if backend is None:
            return self.ledger.create(job)  # no room: queued, for whoever has room first
        try:
            submitted = self.ledger.create_submitted(
                job, self.holder, self.until(), backend.name, str(uuid.uuid4())
            )
        except BaseException:
            self.pool.release(backend.name)
            raise
        if submitted is None:  # others wait before it: queued behind them
            self.pool.release(backend.name)
            return self.ledger.create(job)
        assert submitted.prompt_id is not None
        self.holdings.add(Held(job.id, backend.name, submitted.prompt_id, submitting=True))
        self._submit(submitted, backend)
        return job

    def dispatch(self) -> int:
        """Claim and submit queued jobs while a backend has room; returns how many."""
        tried: list[str] = []
        sent = 0
        here = known = _SUBMIT_HERE.get()  # the thread that has just queued a job knows one is
        while self.pool.has_room():
            # Nothing queued is found by a read, not by a claim (a write) that finds nothing.
            if not known and not self.store.count(_QUEUED):
                break
            known = False
            job = self.store.claim(self.holder, self.until(), time.time(), tried)
            if job is None:
                break
            backend = self.pool.acquire(requirements(job.graph))
            if backend is None:  # no room on a backend that can run it; others may fit
                self.ledger.release(job.id, self.holder)
                tried.append(job.id)
                continue
            prompt_id = str(uuid.uuid4())
            # The prompt id is on record before the POST leaves.
            submitted = self.ledger.submitted(job, self.holder, backend.name, prompt_id)
            if submitted is None:  # cancelled meanwhile
                self.pool.release(backend.name)
                continue
            self.holdings.add(Held(job.id, backend.name, prompt_id, submitting=True))
            sent += 1
            if here:  # the first one only: the rest go to the executor
                here = False
                self._submit(submitted, backend)
                continue
            try:
                self.submissions.submit(self._submit, submitted, backend)
            except RuntimeError:  # stopping: the job stays submitted; recovery follows it
                self.holdings.drop(job.id)
                return sent
        return sent

    def _submit(self, job: Job, backend: Backend) -> None:
        uncertain = False
        try:
            uncertain = self._send(job, backend)
        finally:
            held = self.holdings.get(job.id)
            if held is not None:
                held.submitting = False
        if uncertain:
            # It may have reached ComfyUI: never send again blindly; ask /queue and /history.
            self.reconcile(job.id)

    def _upload_inputs(self, job: Job, backend: Backend) -> None:
        """Put the job's input images on the backend (again on every submission: another
        backend, or a restarted one, has not seen them)."""
        for name in job.inputs:
            stored = self.inputs.open(job.id, name)
            if stored is None:
                raise GenerationFailed(
                    "an input image of the job is no longer kept", {"input": name}
                )
            with stored:
                data, kind = stored.read(), stored.content_type
            if backend.client.upload_image(name, data, kind) != name:
                raise BackendUnavailable("ComfyUI stored the input image under another name")

    def _send(self, job: Job, backend: Backend) -> bool:
        """POST the job; True when it is unknown whether ComfyUI got it."""
        sent = False
        assert job.prompt_id is not None
        try:
            self._upload_inputs(job, backend)
            sent = True
            backend.client.submit(job.graph, job.prompt_id)
            log.debug("submitted", extra={"job_id": job.id, "backend": backend.name})
        except GenerationFailed as exc:
            self.ledger.failed(job.id, exc.to_dict(), self.holder)
        except BackendUnreachable as exc:
            # Nothing reached ComfyUI: undo the submission; a dispatcher claims it again.
            self.pool.report_failure(backend, exc)
            self.unsend(job.id, count=False)
        except BackendUnavailable as exc:
            if not sent:
                # An input upload failed: the prompt itself was not sent. Again, counted.
                log.warning("input upload failed: %s", exc, extra={"job_id": job.id})
                self.requeue(job.id, f"uploading an input image failed: {exc.message}")
                return False
            log.warning("submission uncertain: %s", exc, extra={"job_id": job.id})
            return True
        return False

    # --- giving jobs back ------------------------------------------------------------------

    def unsend(self, job_id: str, *, count: bool) -> Job | None:
        held = self.holdings.drop(job_id)
        job = self.ledger.requeue(job_id, self.holder, count=count)
        if held is not None:
            self.pool.release(held.backend)
        return job

    def requeue(self, job_id: str, reason: str) -> None:
        """Send a job ComfyUI lost again, up to max_attempts (then it fails)."""
        job = self.store.get(job_id)
        if job is None or job.holder != self.holder or not job.on_backend:
            return
        if job.attempts >= self.options.max_attempts:
            self.ledger.failed(
                job_id,
                {
                    "code": "backend_unavailable",
                    "message": f"{reason}; gave up after {job.attempts} attempts",
                    "details": {"attempts": job.attempts},
                },
                self.holder,
            )
            return
        log.warning("resubmitting: %s", reason, extra={"job_id": job_id})
        self.unsend(job_id, count=True)

    def ended(self, job_id: str) -> None:
        """A job ended (written by this process): its backend slot is free again."""
        held = self.holdings.drop(job_id)
        if held is not None:
            self.pool.release(held.backend)

    # --- leases ----------------------------------------------------------------------------

    def renew(self) -> None:
        """Extend the leases of the jobs held; a job no longer held (ended elsewhere, or
        taken over after a pause longer than the lease) is let go."""
        if not self.renewing:
            return
        ids = self.holdings.ids()
        if not ids:
            return
        kept = self.store.renew(self.holder, ids, self.until())
        for job_id in set(ids) - kept:
            held = self.holdings.drop(job_id)
            if held is not None:
                self.pool.release(held.backend)
                log.info("no longer holds the job", extra={"job_id": job_id})

    def take_over(self, *, own: bool = False) -> list[str]:
        """Take the jobs whose holder stopped renewing (and this holder's own, after a
        restart): a claimed job not yet submitted goes back to the queue; a submitted or
        running one is followed on its backend. Returns the ids to reconcile."""
        follow: list[str] = []
        for job in self.store.take_over(self.holder, self.until(), time.time(), own=own):
            if job.status is JobStatus.QUEUED or job.prompt_id is None:
                self.ledger.release(job.id, self.holder)
                continue
            backend = self.pool.get(job.backend)
            if backend is None:
                self.ledger.requeue(job.id, self.holder, count=False)
                log.warning(
                    "its backend is no longer configured: queued again",
                    extra={"job_id": job.id},
                )
                continue
            if self.holdings.get(job.id) is None:
                self.pool.claim(backend.name)
            self.holdings.add(Held(job.id, backend.name, job.prompt_id, followed=True))
            log.info("took over", extra={"job_id": job.id, "backend": backend.name})
            follow.append(job.id)
        return follow
