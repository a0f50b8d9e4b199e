"""Reconciliation: what ComfyUI says of a held job, when its events cannot be trusted.

After a (re)connect, a takeover or a restart, while a backend's websocket is down (every
POLL_INTERVAL_S), for a job taken over from another holder (its events go to that holder's
client id), and now and then for every job anyway (an event can be lost), a job is looked up
by its prompt id: in ComfyUI's queue (running or waiting), in its history (ended: collect
it), or in neither (ComfyUI lost it: send it again, up to ``max_attempts``). A backend that
refuses connections has lost its in-memory queue: its jobs go to another backend at once.
Jobs past their deadline are cancelled here too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from comfygate.backends.backend import Backend
from comfygate.backends.pool import BackendPool
from comfygate.errors import BackendUnavailable, Conflict, NotFound
from comfygate.jobs.collect import Collector
from comfygate.jobs.dispatch import Dispatcher
from comfygate.jobs.holdings import Holdings
from comfygate.jobs.ledger import Ledger
from comfygate.jobs.model import now

log = logging.getLogger(__name__)

# Even with the websocket up, each job on a backend is checked against /queue and /history
# this often: an event can be lost (a submission whose answer never came, a reconnect that
# raced it) and a job must not wait for its deadline because of that.
RECHECK_INTERVAL_S = 10.0

Cancel = Callable[..., Any]


class Reconciler:
    def __init__(
        self,
        ledger: Ledger,
        pool: BackendPool,
        holdings: Holdings,
        dispatcher: Dispatcher,
        collector: Collector,
        cancel: Cancel,
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.holdings = holdings
        self.dispatcher = dispatcher
        self.collector = collector
        self.cancel = cancel
        self.holder = dispatcher.holder

    def job(self, job_id: str) -> None:
        held = self.holdings.get(job_id)
        if held is None or held.submitting:
            return
        job = self.ledger.store.get(job_id)
        if job is None or not job.on_backend or job.holder != self.holder:
            self._let_go(job_id)  # it ended, went back to the queue, or was taken over
            return
        backend = self.pool.get(job.backend)
        if backend is None or job.prompt_id is None:
            return
        prompt_id = job.prompt_id
        try:
            # Queue first, then history: a prompt leaves the queue only after its history
            # is written, so "in neither" really means ComfyUI lost it.
            queue = backend.client.queue()
            queued = prompt_id in queue
            entry = None if queued else backend.client.history(prompt_id)
        except BackendUnavailable:
            return  # backend down: its jobs wait for it (or for their deadline)
        if queued:
            if prompt_id in queue.running:
                # Its execution_start may have been sent while nobody listened.
                self.ledger.running(job_id, self.holder)
            return
        if entry is not None:
            self.collector.finalize(job_id, entry)
            return
        self.dispatcher.requeue(job_id, "ComfyUI no longer knows the job (was it restarted?)")

    def _let_go(self, job_id: str) -> None:
        """A held job that is no longer this holder's to follow."""
        held = self.holdings.drop(job_id)
        if held is not None:
            self.pool.release(held.backend)

    def backend(self, name: str) -> None:
        for held in self.holdings.on(name):
            self.job(held.job_id)

    def poll(self) -> None:
        """Websocket down, or a followed job: poll it. Websocket up: recheck a job now and
        then, in case one of its events was lost."""
        current = time.monotonic()
        for held in self.holdings.all():
            backend = self.pool.get(held.backend)
            if held.checked == 0.0:
                held.checked = current
            due = current - held.checked >= RECHECK_INTERVAL_S
            if backend is None or not backend.ws_connected or held.followed or due:
                held.checked = current
                self.job(held.job_id)

    def on_down(self, backend: Backend, queue_lost: bool) -> None:
        """Failover: a ComfyUI that refuses connections has lost its in-memory queue, so
        every job on it, queued or running, goes to another backend now. Other failures
        (timeouts) may be passing: those jobs wait for reconciliation or their deadline."""
        if not queue_lost:
            return
        for held in self.holdings.on(backend.name):
            if not held.submitting:
                self.dispatcher.requeue(held.job_id, f"backend {backend.name} went down")

    def expire(self) -> None:
        """Cancel the unfinished jobs past their deadline (whoever holds them)."""
        for job_id in self.ledger.store.past_deadline(now()):
            with contextlib.suppress(Conflict, NotFound):
                self.cancel(
                    job_id,
                    error={
                        "code": "timeout",
                        "message": "the job did not finish before its deadline",
                        "details": {"job_id": job_id},
                    },
                )
