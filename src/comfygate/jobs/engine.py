"""The job engine: the parts of ``jobs/`` wired together, and the operations ``api/`` uses.

    api/ ──> JobEngine ──> Admission ──> Ledger ──> JobStore (sqlite | redis)
                 │                          └────> EventBus (memory | redis)
                 ├──> Dispatcher (claim, lease, submit)  ──> BackendPool ──> comfy/
                 ├──> Watcher (websocket events)  ──> Collector (outputs) ──> OutputStorage
                 ├──> Reconciler (/queue, /history, failover, deadlines)
                 └──> WebhookOutbox, retention

One background thread runs the loop (claims, polls, leases, the retention sweep); the
submissions and the downloads each have an executor of their own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from comfygate.backends.backend import Backend
from comfygate.backends.pool import BackendPool
from comfygate.comfy.folders import LocalFolders
from comfygate.errors import Conflict, GatewayStopping, StorageFailed
from comfygate.jobs import batches, retention
from comfygate.jobs.admission import Admission, AdmissionOptions
from comfygate.jobs.bus import CLOSING, COLLECT, Empty, EventBus
from comfygate.jobs.cache import ResultCache
from comfygate.jobs.collect import Collector
from comfygate.jobs.dispatch import Dispatcher, DispatchOptions, submitting_here
from comfygate.jobs.ending import JobEnd
from comfygate.jobs.holdings import Holdings
from comfygate.jobs.ledger import Ledger
from comfygate.jobs.memory_bus import MemoryBus
from comfygate.jobs.model import Delivery, Job, JobStatus
from comfygate.jobs.reconcile import Reconciler
from comfygate.jobs.store import JobStore
from comfygate.jobs.watch import Watcher
from comfygate.jobs.webhooks import WebhookOptions, WebhookOutbox
from comfygate.metrics import Metrics
from comfygate.storage.base import OutputStorage
from comfygate.templates import TemplateRegistry
from comfygate.templates.limits import CostLimits

log = logging.getLogger(__name__)

EXPIRY_INTERVAL_S = 5.0  # deadlines are checked this often (a scan of the unfinished jobs)
WAIT_RECHECK_S = 5.0  # a waiting request reads the job again this often without an event


@dataclass(frozen=True)
class EngineOptions:
    poll_interval_s: float = 1.0
    job_deadline_s: float = 3600.0
    max_attempts: int = 3
    retention_s: float = 7 * 86400.0
    sweep_interval_s: float = 60.0
    lease_s: float = 15.0
    limits: CostLimits = field(default_factory=CostLimits)


class JobEngine:
    def __init__(
        self,
        store: JobStore,
        pool: BackendPool,
        storage: OutputStorage,
        inputs: OutputStorage,
        templates: TemplateRegistry,
        *,
        holder: str,
        options: EngineOptions | None = None,
        webhooks: WebhookOptions | None = None,
        metrics: Metrics | None = None,
        cache_max_bytes: int | None = None,
        bus: EventBus | None = None,
        local_folders: Mapping[str, LocalFolders] | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.storage = storage
        self.inputs = inputs
        self.templates = templates
        self.holder = holder
        self.options = options or EngineOptions()
        self.metrics = metrics or Metrics()
        self.events: EventBus = bus or MemoryBus()
        # Backends on this host, by name: a job's outputs are taken from their disk and its
        # files there removed once collected.
        self.local_folders = dict(local_folders or {})
        self.cache = (
            ResultCache(store, storage, cache_max_bytes) if cache_max_bytes is not None else None
        )
        self.ledger = Ledger(store, self.events)
        self.holdings = Holdings()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._submissions = ThreadPoolExecutor(8, thread_name_prefix="job-submit")
        self._downloads = ThreadPoolExecutor(8, thread_name_prefix="job-collect")
        self._thread: threading.Thread | None = None
        opts = self.options
        self.admission = Admission(
            self.ledger,
            pool,
            templates,
            storage,
            inputs,
            self.cache,
            self.metrics,
            AdmissionOptions(opts.job_deadline_s, opts.limits),
        )
        self.dispatcher = Dispatcher(
            self.ledger,
            pool,
            self.holdings,
            holder,
            inputs,
            DispatchOptions(opts.lease_s, opts.max_attempts),
            self._submissions,
        )
        self.collector = Collector(
            self.ledger,
            pool,
            self.holdings,
            holder,
            storage,
            templates,
            opts.limits,
            self.metrics,
            self.events,
            self._stop,
            self.local_folders,
        )
        self.watcher = Watcher(
            self.ledger,
            pool,
            self.holdings,
            holder,
            self.collector,
            templates,
            opts.limits,
            self.events,
            self._downloads,
            self.cancel,
        )
        self.reconciler = Reconciler(
            self.ledger, pool, self.holdings, self.dispatcher, self.collector, self.cancel
        )
        self.dispatcher.reconcile = self.reconciler.job
        self.admission.create_job = self.dispatcher.create
        self.webhooks = (
            WebhookOutbox(webhooks, store, self._record_webhook) if webhooks is not None else None
        )
        if self.webhooks is not None:
            self.ledger.set_delivery(self.webhooks.delivery_for)
        # The backend's slot is free at once, not after the waiting request's answer is sent.
        self.ledger.on_end(lambda before, job: self.dispatcher.ended(job.id), at_once=True)
        self.ended = JobEnd(
            store, self.cache, self.admission, self.metrics, self.local_folders, self._later
        )
        self.ended.webhooks = self.webhooks
        self.ledger.on_end(self.ended)
        self.ledger.set_later(self._later)
        self.ledger.on_queued(self._claim_now)
        # What api/ calls to make jobs (admission.py); batches below.
        self.create = self.admission.create
        self.submitting_here = submitting_here
        self.create_raw = self.admission.create_raw
        pool.set_handlers(self.watcher.on_event, self._on_connection, self._wake.set, self._down)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Take back this holder's own jobs (a restart), then run. A store that does not
        answer yet (Redis starting after the gateway) is waited for: the requests that need
        it answer 503 meanwhile, and this holder's jobs are taken over once their leases
        run out, like anyone's."""
        try:
            taken = self.dispatcher.take_over(own=True)
        except StorageFailed as exc:
            log.warning("%s; starting without it", exc.message)
            taken = []
        if taken:
            log.info("recovered %d unfinished jobs", len(taken))
        for job_id in taken:
            self._later(self.reconciler.job, job_id)
        self._thread = threading.Thread(target=self._loop, name="job-engine", daemon=True)
        self._thread.start()
        if self.webhooks is not None:
            self.webhooks.start()  # pending deliveries, from before a restart too

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._submissions.shutdown(wait=True, cancel_futures=True)
        self._downloads.shutdown(wait=True, cancel_futures=True)
        if self.webhooks is not None:
            self.webhooks.stop()
        if self.cache is not None:
            self.cache.close()

    def _later(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # stopping
            self._downloads.submit(fn, *args)

    def _loop(self) -> None:
        last_poll = last_lease = last_expiry = 0.0
        last_sweep = time.monotonic()
        store_down = False
        opts = self.options
        while not self._stop.is_set():
            self._wake.wait(opts.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.dispatcher.dispatch()
                current = time.monotonic()
                if current - last_lease >= opts.lease_s / 3:
                    last_lease = current
                    self.dispatcher.renew()
                    for job_id in self.dispatcher.take_over():
                        self._later(self.reconciler.job, job_id)
                if current - last_poll >= opts.poll_interval_s:
                    last_poll = current
                    self.reconciler.poll()
                if current - last_expiry >= min(EXPIRY_INTERVAL_S, opts.poll_interval_s * 5):
                    last_expiry = current
                    self.reconciler.expire()
                if current - last_sweep >= opts.sweep_interval_s:
                    last_sweep = current
                    self.sweep()
                if store_down:
                    log.info("the job store answers again")
                    store_down = False
            except StorageFailed as exc:
                if not store_down:  # once per outage, not once a second
                    log.warning("%s; waiting for it", exc.message)
                    store_down = True
            except Exception:
                log.exception("job engine iteration failed")

    def _claim_now(self) -> None:
        """A job was queued: claim and submit in this thread (the request's), not after a hop
        to the loop thread; the claim is atomic in the store, so any thread may make it.
        Whatever this does not place, the loop does."""
        if self._stop.is_set():
            return
        try:
            self.dispatcher.dispatch()
        except Exception:
            log.exception("claiming at once failed; the loop will")
            self._wake.set()

    def _on_connection(self, backend: Backend, connected: bool) -> None:
        for held in self.holdings.on(backend.name):
            held.events_gap = True  # what the websocket said of it may be incomplete
        if connected:
            # Events sent while we were away are lost: ask ComfyUI about every job held there.
            self._later(self.reconciler.backend, backend.name)

    def _down(self, backend: Backend, queue_lost: bool) -> None:
        self.reconciler.on_down(backend, queue_lost)
        self._wake.set()

    # --- the operations api/ uses -----------------------------------------------------------

    def create_batch(
        self,
        template_name: str,
        items: list[dict[str, Any]],
        *,
        cache: bool = True,
        owner: str | None = None,
    ) -> tuple[str, list[Job]]:
        return batches.create_batch(self.admission, template_name, items, cache=cache, owner=owner)

    def get(self, job_id: str, owner: str | None = None) -> Job:
        return self.admission.get(job_id, owner)

    def page(
        self,
        status: JobStatus | None,
        limit: int,
        cursor: str | None,
        owner: str | None = None,
    ) -> tuple[list[Job], str | None]:
        statuses = None
        if status is JobStatus.QUEUED:  # submitted jobs are queued to users
            statuses = frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED})
        elif status is not None:
            statuses = frozenset({status})
        return self.store.page(statuses, limit, cursor, owner=owner)

    def waiting(self) -> int:
        """Jobs in the gateway's own queue, not yet on a backend (all processes')."""
        return self.store.count(frozenset({JobStatus.QUEUED}))

    def answering(self) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """Around a wait and its answer: the end's bookkeeping of the job the waiting thread
        collects (the cache copy, the coalescing key, the backend's slot, metrics, the log
        line) runs when the call it yields is made, once the answer is sent."""
        return self.ledger.holding_ends()

    def wait(self, job_id: str, timeout_s: float) -> Job | None:
        """Block until the job ends; None if ``timeout_s`` passes first. GatewayStopping
        (503) if the gateway stops meanwhile: the job itself goes on."""
        deadline = time.monotonic() + timeout_s
        with self.events.subscribe(job_id) as updates, self.holdings.waiting(job_id, updates):
            job = self.get(job_id)
            while not job.status.terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    kind, data = updates.get(timeout=min(remaining, WAIT_RECHECK_S))
                except Empty:
                    # An event can be lost (a Redis bus that was away): the store says.
                    job = self.get(job_id)
                    continue
                if kind == COLLECT:  # ComfyUI says it succeeded: collect it in this thread
                    ended = None
                    try:
                        # The end's bookkeeping waits for the answer (answering()).
                        ended = self.collector.finalize(job_id, data["entry"])
                    except Exception:  # the end from /history (executing: null) follows
                        log.exception("collecting in the waiting request failed")
                    job = ended or self.get(job_id)
                elif kind == "done":
                    job = self.get(job_id)
                elif kind == CLOSING:
                    raise GatewayStopping(
                        f"the gateway is stopping; the job goes on: ask GET /v1/jobs/{job_id} "
                        "in a moment",
                        {"job_id": job_id},
                    )
            return job

    def cancel(
        self,
        job_id: str,
        error: dict[str, Any] | None = None,
        owner: str | None = None,
        status: JobStatus = JobStatus.CANCELLED,
    ) -> Job:
        job = self.get(job_id, owner)
        ended = None
        if not job.status.terminal:
            ended = self.ledger.cancelled(
                job_id,
                error or {"code": "cancelled", "message": "cancelled by request", "details": {}},
                status,
            )
        if ended is None:
            latest = self.get(job_id)
            raise Conflict(
                f"job '{job_id}' has already ended ({latest.status.value})",
                {"job_id": job_id, "status": latest.status.value},
            )
        backend = self.pool.get(ended.backend)
        if backend is not None and ended.prompt_id is not None:
            # Written first, acted on after: take it out of ComfyUI's queue, and interrupt it
            # if it is the one running (the targeted interrupt never hits another prompt).
            try:
                backend.client.delete_from_queue([ended.prompt_id])
                backend.client.interrupt(ended.prompt_id)
            except Exception as exc:
                log.warning("could not cancel on ComfyUI: %s", exc, extra={"job_id": job_id})
        return ended

    def sweep(self) -> int:
        return retention.sweep(
            self.store, self.storage, self.inputs, self.options.retention_s, self.local_folders
        )

    def _record_webhook(self, delivery: Delivery) -> None:
        self.ledger.webhook_state(delivery.job_id, delivery)
