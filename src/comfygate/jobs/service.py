"""The job service: one path for every request, from creation to the last byte stored.

create -> store (queued) -> dispatcher picks a backend, records the prompt id, POSTs /prompt
-> ComfyUI's websocket events move the job (running, progress) -> ``executing`` with
``node: null`` (sent after ComfyUI wrote /history) triggers finalisation: one /history read,
outputs streamed from /view into storage -> succeeded/failed -> waiters and streams wake.

When a backend's websocket is down, its jobs are reconciled by polling /history every
POLL_INTERVAL_S; after it reconnects, and after a gateway restart, every job on it is
reconciled once from /queue and /history. A job ComfyUI no longer knows is submitted again,
up to ``max_attempts``. Every job has a deadline.

The cost limits hold at run time too, whatever template or raw workflow made the job: the
images a job returns are counted as ComfyUI reports them (``executed``), and once there are
more than ``MAX_BATCH_SIZE``, or one image of more than ``MAX_PIXELS`` (read from the head
of the file as soon as it is reported), the job is interrupted on ComfyUI and fails; the
stored files are checked again at the end, and nothing of a failed job is kept or cached.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from comfygate.backends.pool import Backend, BackendPool
from comfygate.backends.requirements import requirements
from comfygate.comfy.client import (
    HistoryEntry,
    OutputRef,
    execution_error_details,
    parse_history_entry,
)
from comfygate.comfy.events import (
    Event,
    Executed,
    Executing,
    ExecutionError,
    ExecutionStart,
    Progress,
)
from comfygate.comfy.folders import LocalFolders, job_output_prefix
from comfygate.errors import (
    BackendUnavailable,
    BackendUnreachable,
    ComfyGateError,
    Conflict,
    GatewayStopping,
    GenerationFailed,
    NotFound,
    ValidationFailed,
)
from comfygate.inputs.images import CheckedImage
from comfygate.jobs.cache import CacheHit, ResultCache, cache_key
from comfygate.jobs.events import CLOSING, JobEvents
from comfygate.jobs.model import Delivery, Job, JobStatus, Output, now
from comfygate.jobs.sqlite_store import LegacyJobStore as JobStore
from comfygate.jobs.webhooks import WebhookOptions, WebhookOutbox
from comfygate.metrics import Metrics
from comfygate.storage.local import LocalStorage, content_type, image_size, output_name
from comfygate.templates import (
    Template,
    TemplateRegistry,
    bind,
    graph_costs,
    raw,
    resolve_params,
    validate_params,
)
from comfygate.templates.binding import apply_output_prefix
from comfygate.templates.limits import CostLimits

log = logging.getLogger(__name__)

PROGRESS_PERSIST_INTERVAL_S = 1.0  # a 1,000-step job writes about one row a second, not 1,000
# Even with the websocket up, each job on a backend is checked against /queue and /history
# this often: an event can be lost (a submission whose answer never came, a reconnect that
# raced it) and a job must not wait for its deadline because of that.
RECHECK_INTERVAL_S = 10.0


@dataclass(frozen=True)
class ServiceOptions:
    poll_interval_s: float = 1.0
    job_deadline_s: float = 3600.0
    max_attempts: int = 3
    retention_s: float = 7 * 86400.0
    sweep_interval_s: float = 60.0
    limits: CostLimits = field(default_factory=CostLimits)


def _image_names(
    template: Template, given: dict[str, Any], images: Mapping[str, CheckedImage]
) -> list[str]:
    """The gateway-made names of the job's input images. An image parameter's value must be
    the name of a checked image given with it: no other string (a path, a file already on
    ComfyUI) ever reaches a LoadImage node."""
    names: list[str] = []
    for name, param in template.parameters.items():
        if param.type != "image" or name not in given:
            continue
        checked = images.get(name)
        if checked is None or given[name] != checked.filename():
            raise ValidationFailed(
                f"'{name}' must be an image: a multipart file, a data: URI or an https URL",
                field=name,
            )
        if checked.filename() not in names:
            names.append(checked.filename())
    return names


class _OverLimit(Exception):
    """A job returned more, or larger, images than the cost limits allow."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


class JobService:
    def __init__(
        self,
        store: JobStore,
        pool: BackendPool,
        storage: LocalStorage,
        templates: TemplateRegistry,
        options: ServiceOptions | None = None,
        webhooks: WebhookOptions | None = None,
        metrics: Metrics | None = None,
        cache: ResultCache | None = None,
        inputs: LocalStorage | None = None,
        local_folders: Mapping[str, LocalFolders] | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.storage = storage
        # Input images of unfinished and kept jobs, beside the outputs (never in the job row).
        self.inputs = inputs or LocalStorage(storage.root.parent / "inputs")
        self.templates = templates
        self.options = options or ServiceOptions()
        self.events = JobEvents()
        self.metrics = metrics or Metrics()
        self.cache = cache
        # Backends on this host, by name: a job's files there are removed once collected.
        self.local_folders = dict(local_folders or {})
        self._by_key: dict[str, str] = {}  # cache key -> job id of the live job computing it
        self._lock = threading.RLock()
        self._live: dict[str, Job] = {}  # unfinished jobs (the store is the truth; this mirrors)
        self._by_prompt: dict[str, str] = {}  # prompt_id -> job id
        self._exec_errors: dict[str, dict[str, Any]] = {}
        self._finalizing: set[str] = set()
        self._progress_written: dict[str, float] = {}
        self._checked: dict[str, float] = {}  # job id -> last reconciliation (monotonic)
        self._submitting: set[str] = set()  # jobs whose POST /prompt has not answered yet
        self._returned: dict[str, int] = {}  # job id -> images reported so far (run-time limit)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="job-worker")
        self._thread: threading.Thread | None = None
        self.webhooks = WebhookOutbox(webhooks, store, self._record_webhook) if webhooks else None
        pool.set_handlers(self._on_event, self._on_connection, self._wake.set, self._on_down)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._recover()
        # Listeners connected before the recovered jobs were known: reconcile them now.
        for name in {job.backend for job in self._live.values() if job.backend}:
            self._workers.submit(self._reconcile_backend, name)
        self._thread = threading.Thread(target=self._loop, name="job-dispatcher", daemon=True)
        self._thread.start()
        if self.webhooks is not None:
            self.webhooks.start()  # pending deliveries, from before a restart too

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._workers.shutdown(wait=True, cancel_futures=True)
        if self.webhooks is not None:
            self.webhooks.stop()

    def _recover(self) -> None:
        """Take back every unfinished job after a (re)start; reconciliation finds their fate."""
        for job in self.store.unfinished():
            self._live[job.id] = job
            if job.prompt_id is not None:
                if self.pool.get(job.backend) is None:
                    self._requeue(job, "its backend is no longer configured", count=False)
                    continue
                self._by_prompt[job.prompt_id] = job.id
                self.pool.claim(job.backend)
        if self._live:
            log.info("recovered %d unfinished jobs", len(self._live))

    # --- the public operations ------------------------------------------------------------

    def create(
        self,
        template_name: str,
        raw_params: dict[str, Any],
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        cache: bool = True,
        owner: str | None = None,
        images: Mapping[str, CheckedImage] | None = None,
    ) -> Job:
        """Validate, fill in, bind and queue a job; or answer it from the result cache; or
        join an identical job already running. With an idempotency key, the same key and
        fingerprint (a hash of the request) return the job made the first time; the same
        key with another fingerprint is a conflict. Idempotency keys are per owner.

        ``images`` maps each image parameter given to its checked image, whose gateway-made
        name is the parameter's value; the bytes are kept under DATA_DIR/inputs/<job id>/."""
        job = self.prepare(
            template_name, raw_params, webhook_url=webhook_url, owner=owner, images=images
        )
        hit = self._cached(job) if cache else None
        if hit is None:
            self._bind(job)
        if idempotency_key is not None:
            # Scoped to the owner: another key's Idempotency-Key never finds this job.
            claim = idempotency_key if owner is None else f"{owner}:{idempotency_key}"
            bound_id, bound_fingerprint = self.store.claim_key(claim, fingerprint, job.id)
            if bound_id != job.id:
                if hit is not None:
                    self.storage.delete_job(job.id)  # the files the hit gave this job
                if bound_fingerprint != fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was used with a different request",
                        {"idempotency_key": idempotency_key},
                    )
                return self.get(bound_id)
        if hit is not None:
            return self._answer_from_cache(job, hit)
        for checked in (images or {}).values():
            self.inputs.save(job.id, checked.filename(), [checked.data])
        result = self.enqueue(job, cache=cache)
        if job.inputs and result.id != job.id:
            self.inputs.delete_job(job.id)  # answered by a twin: never uploaded
        return result

    def prepare(
        self,
        template_name: str,
        raw_params: dict[str, Any],
        *,
        webhook_url: str | None = None,
        owner: str | None = None,
        images: Mapping[str, CheckedImage] | None = None,
    ) -> Job:
        """Validate and fill in a request: everything that can refuse it as a 400 (or a 503
        with no backend up), before anything is stored or sent. The graph is not bound yet:
        a request the result cache answers never needs one (``_bind`` does it otherwise)."""
        template = self.templates.get(template_name)
        given = validate_params(template, raw_params)
        names = _image_names(template, given, images or {})
        # With no backend up, a request the cache can answer is still answered: its values
        # are resolved with what the backends offered when last seen. Anything else is a 503
        # (here, or in _bind for a cache miss).
        down = not self.pool.any_healthy()
        try:
            values = resolve_params(template, given, self.pool.model_choices(last_known=down))
            self._check_models(template, given, last_known=down)
        except ValidationFailed:
            if down:  # no model to default to, or none named: for want of a backend
                raise BackendUnavailable("no ComfyUI backend is available right now") from None
            raise
        self.options.limits.check(values)
        job = Job(
            id=uuid.uuid4().hex,
            template=template.name,
            params=values,
            graph={},
            webhook_url=webhook_url,
            owner=owner,
            inputs=names,
        )
        seed = template.seed_parameter
        drawn = seed is not None and seed not in given and template.parameters[seed].default is None
        if not drawn:  # the result is fully determined by the request
            job.cache_key = cache_key(template.digest, values)
        job.deadline_at = job.created_at + self.options.job_deadline_s
        return job

    def _bind(self, job: Job) -> None:
        """The job's own graph (a copy of its template's, with the values and its
        filename_prefix), and a 503 if no usable backend has what it needs."""
        template = self.templates.get(job.template)
        job.graph = bind(template, job.params, job_output_prefix(job.id))
        runnable, reason = self.pool.check(requirements(job.graph))
        if not runnable:
            raise BackendUnavailable(reason)

    def _cached(self, job: Job) -> CacheHit | None:
        """The cached result of a determined request, already given to ``job`` (its files
        linked under the job's id); None on a miss, or if the entry went away meanwhile."""
        if job.cache_key is None or self.cache is None:
            return None
        hit = self.cache.get(job.cache_key)
        if hit is not None:
            try:
                for output in hit.outputs:
                    self.storage.adopt(job.id, output.filename, hit.directory / output.filename)
            except OSError:  # evicted between the lookup and the links: run it after all
                self.storage.delete_job(job.id)
                hit = None
        self.metrics.cache.labels("hit" if hit else "miss").inc()
        return hit

    def enqueue(self, job: Job, *, cache: bool = True) -> Job:
        """Queue a bound job, or return the identical job already in flight (coalescing)."""
        with self._lock:
            # Coalesce: an identical job in flight answers this one too. Looking and
            # registering under one lock, so two identical requests cannot both miss.
            if job.cache_key is not None and cache and self.cache is not None:
                twin = self._live.get(self._by_key.get(job.cache_key, ""))
                if (
                    twin is not None
                    and twin.webhook_url == job.webhook_url
                    and twin.owner == job.owner
                ):
                    log.info("coalesced", extra={"job_id": twin.id})
                    return twin
            self.store.insert(job)
            self._live[job.id] = job
            if job.cache_key is not None and cache:
                self._by_key[job.cache_key] = job.id
        log.info("job created", extra={"job_id": job.id, "template": job.template})
        self.events.publish(job.id, "status", job.public())
        self._wake.set()
        return job

    def _answer_from_cache(self, job: Job, hit: CacheHit) -> Job:
        """Record ``job`` as answered by ``hit`` (whose files ``_cached`` gave it)."""
        job.outputs = list(hit.outputs)
        job.cached = True
        job.started_at = job.created_at
        job.move_to(JobStatus.SUCCEEDED)
        self.store.insert(job)
        self.metrics.jobs_finished.labels(job.template, JobStatus.SUCCEEDED.value).inc()
        log.info("answered from the cache", extra={"job_id": job.id, "template": job.template})
        delivery = self._delivery(job)
        if delivery is not None:
            self.store.update(job, delivery)
            self._wake_outbox()
        return job

    def _delivery(self, job: Job) -> Delivery | None:
        """The webhook delivery of a job that just ended (its state shown on the job)."""
        if not job.webhook_url or self.webhooks is None:
            return None
        delivery = self.webhooks.new(job.id, job.webhook_url, "")
        job.webhook = delivery.public()
        delivery.body = json.dumps(job.public(), separators=(",", ":"))
        return delivery

    def _wake_outbox(self) -> None:
        if self.webhooks is not None:
            self.webhooks.wake()

    def create_batch(
        self,
        template_name: str,
        items: list[dict[str, Any]],
        *,
        cache: bool = True,
        owner: str | None = None,
    ) -> tuple[str, list[Job]]:
        """Validate every item before any runs (a bad one: 400 naming its index), then queue
        them as separate jobs, which spread over the backends like any others."""
        prepared: list[Job] = []
        for index, item in enumerate(items):
            try:
                prepared.append(self.prepare(template_name, item, owner=owner))
            except ValidationFailed as exc:
                raise ValidationFailed(
                    f"item {index}: {exc.message}", {**exc.details, "index": index}
                ) from None
        hits: list[CacheHit | None] = []
        try:
            for job in prepared:
                hits.append(self._cached(job) if cache else None)
                if hits[-1] is None:
                    self._bind(job)
        except BackendUnavailable:
            for job in prepared:
                self.storage.delete_job(job.id)  # the files of the hits so far
            raise
        batch_id = uuid.uuid4().hex
        for index, job in enumerate(prepared):
            job.batch_id, job.batch_index = batch_id, index
        self.store.insert_batch(
            batch_id,
            {
                "id": batch_id,
                "template": template_name,
                "created_at": now(),
                "owner": owner,
                "jobs": [j.id for j in prepared],
            },
        )
        jobs = [
            self.enqueue(job, cache=cache) if hit is None else self._answer_from_cache(job, hit)
            for job, hit in zip(prepared, hits, strict=True)
        ]
        if any(j.id != p.id for j, p in zip(jobs, prepared, strict=True)):
            # A cache hit or a coalesced twin answered an item: record the job that did.
            self.store.insert_batch_jobs(batch_id, [j.id for j in jobs])
        return batch_id, jobs

    def create_raw(
        self,
        workflow: dict[str, dict[str, Any]],
        allowed: frozenset[str],
        *,
        owner: str | None = None,
        images: Sequence[CheckedImage] = (),
    ) -> Job:
        """Queue a raw API-format graph (``templates.raw``: shape checked by the caller)
        as a job of template ``workflow``: node types on ``allowed``, LoadImage only of the
        given images, the cost limits, the job's own filename_prefix. Never cached."""
        raw.check_nodes(workflow, allowed)
        raw.check_images(workflow, {i.filename() for i in images})
        graph_costs.check_graph(
            workflow,
            self.options.limits,
            image_sizes={i.filename(): (i.width, i.height) for i in images},
        )
        if not self.pool.any_healthy():
            raise BackendUnavailable("no ComfyUI backend is available right now")
        job_id = uuid.uuid4().hex
        job = Job(
            id=job_id,
            template=raw.RAW_TEMPLATE,
            params={},
            graph=apply_output_prefix(copy.deepcopy(workflow), job_output_prefix(job_id)),
            owner=owner,
            inputs=sorted({i.filename() for i in images}),
        )
        runnable, reason = self.pool.check(requirements(job.graph))
        if not runnable:
            raise BackendUnavailable(reason)
        job.deadline_at = job.created_at + self.options.job_deadline_s
        for checked in images:
            self.inputs.save(job.id, checked.filename(), [checked.data])
        return self.enqueue(job, cache=False)

    def _check_models(
        self, template: Template, given: dict[str, Any], *, last_known: bool = False
    ) -> None:
        """A model a request names must exist on some backend: a 400 naming the field is
        more use than a 503. One refresh first, for a file dropped in a moment ago."""
        for name, param in template.parameters.items():
            if not param.model_folder or name not in given:
                continue
            choices = self.pool.model_choices(last_known=last_known)
            if given[name] in choices.get(param.model_folder, []):
                continue
            self.pool.refresh_object_info()
            available = self.pool.model_choices(last_known=last_known).get(param.model_folder, [])
            if given[name] not in available:
                shown = ", ".join(available[:10]) or "none"
                raise ValidationFailed(
                    f"'{name}': no backend has {given[name]!r} in '{param.model_folder}' "
                    f"(available: {shown})",
                    field=name,
                )

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; with ``owner``, only if that owner made it (another's is a 404 too)."""
        with self._lock:
            job = self._live.get(job_id)
        job = job or self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise NotFound(f"no job with id '{job_id}'", {"job_id": job_id})
        return job

    def page(
        self, status: JobStatus | None, limit: int, cursor: int | None, owner: str | None = None
    ) -> tuple[list[Job], int | None]:
        jobs, next_cursor = self.store.page(status, limit, cursor, owner=owner)
        with self._lock:  # the live copy has the freshest progress
            return [self._live.get(j.id, j) for j in jobs], next_cursor

    def wait(self, job_id: str, timeout_s: float) -> Job | None:
        """Block until the job ends; None if ``timeout_s`` passes first. GatewayStopping
        (503) if the gateway stops meanwhile: the job itself goes on."""
        deadline = time.monotonic() + timeout_s
        with self.events.subscribe(job_id) as updates:
            job = self.get(job_id)
            while not job.status.terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    kind, _ = updates.get(timeout=remaining)
                except Exception:  # queue.Empty
                    return None
                if kind == "done":
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
        with self._lock:
            job = self.get(job_id, owner)
            if job.status.terminal:
                raise Conflict(
                    f"job '{job_id}' has already ended ({job.status.value})",
                    {"job_id": job_id, "status": job.status.value},
                )
            backend = self.pool.get(job.backend)
            prompt_id = job.prompt_id
            self._finish(
                job,
                status,
                error=error
                or {"code": "cancelled", "message": "cancelled by request", "details": {}},
            )
        if backend is not None and prompt_id is not None:
            # Written first, acted on after: take it out of ComfyUI's queue, and interrupt it
            # if it is the one running (the targeted interrupt never hits another prompt).
            try:
                backend.client.delete_from_queue([prompt_id])
                backend.client.interrupt(prompt_id)
            except BackendUnavailable as exc:
                log.warning("could not cancel on ComfyUI: %s", exc, extra={"job_id": job_id})
        return job

    # --- dispatching ----------------------------------------------------------------------

    def _loop(self) -> None:
        last_poll = 0.0
        last_sweep = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.options.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._dispatch()
                if time.monotonic() - last_poll >= self.options.poll_interval_s:
                    last_poll = time.monotonic()
                    self._poll_fallback()
                    self._expire()
                if time.monotonic() - last_sweep >= self.options.sweep_interval_s:
                    last_sweep = time.monotonic()
                    self.sweep()
            except Exception:
                log.exception("dispatcher iteration failed")

    def _dispatch(self) -> None:
        with self._lock:
            ready = sorted(
                (j for j in self._live.values() if j.prompt_id is None and not j.status.terminal),
                key=lambda j: j.created_at,
            )
        for job in ready:
            backend = self.pool.acquire(requirements(job.graph))
            if backend is None:
                continue  # no room on a backend that can run it; others may still fit
            with self._lock:
                if job.status.terminal or job.prompt_id is not None:
                    self.pool.release(backend.name)
                    continue
                job.prompt_id = str(uuid.uuid4())
                job.backend = backend.name
                job.attempts += 1
                job.submitted_at = now()
                self.store.update(job)  # the prompt id is on record before the POST leaves
                self._by_prompt[job.prompt_id] = job.id
                # Until its POST has answered, "in neither /queue nor /history" does not mean
                # ComfyUI lost it: reconciliation leaves it alone.
                self._submitting.add(job.id)
            self._workers.submit(self._submit, job, backend, job.prompt_id)

    def _upload_inputs(self, job: Job, backend: Backend) -> None:
        """Put the job's input images on the backend (again on every submission: another
        backend, or a restarted one, has not seen them)."""
        for name in job.inputs:
            path = self.inputs.open_path(job.id, name)
            if path is None:
                raise GenerationFailed(
                    "an input image of the job is no longer kept", {"input": name}
                )
            stored = backend.client.upload_image(name, path.read_bytes(), content_type(name))
            if stored != name:
                raise BackendUnavailable("ComfyUI stored the input image under another name")

    def _submit(self, job: Job, backend: Backend, prompt_id: str) -> None:
        uncertain = False
        try:
            uncertain = self._send(job, backend, prompt_id)
        finally:
            with self._lock:
                self._submitting.discard(job.id)
        if uncertain:
            # It may have reached ComfyUI: never send again blindly; ask /queue and /history.
            self._reconcile_job(job.id)

    def _send(self, job: Job, backend: Backend, prompt_id: str) -> bool:
        """POST the job; True when it is unknown whether ComfyUI got it."""
        sent = False
        try:
            self._upload_inputs(job, backend)
            sent = True
            backend.client.submit(job.graph, prompt_id)
            log.info("submitted", extra={"job_id": job.id, "backend": backend.name})
        except GenerationFailed as exc:
            with self._lock:
                self._finish(job, JobStatus.FAILED, error=exc.to_dict())
        except BackendUnreachable as exc:
            # Nothing reached ComfyUI: undo the submission and let the dispatcher try again.
            self.pool.report_failure(backend, exc)
            with self._lock:
                if job.prompt_id == prompt_id and not job.status.terminal:
                    self._by_prompt.pop(prompt_id, None)
                    job.prompt_id = job.backend = None
                    job.attempts -= 1
                    self.store.update(job)
                    self.pool.release(backend.name)
        except BackendUnavailable as exc:
            if not sent:
                # An input upload failed: the prompt itself was not sent. Again, counted.
                log.warning("input upload failed: %s", exc, extra={"job_id": job.id})
                with self._lock:
                    if job.prompt_id == prompt_id and not job.status.terminal:
                        self._requeue(job, f"uploading an input image failed: {exc.message}")
                return False
            log.warning("submission uncertain: %s", exc, extra={"job_id": job.id})
            return True
        return False

    # --- events from ComfyUI --------------------------------------------------------------

    def _on_event(self, backend: Backend, event: Event) -> None:
        with self._lock:
            job_id = self._by_prompt.get(event.prompt_id)
            job = self._live.get(job_id) if job_id else None
            if job is None or job.status.terminal:
                return
            match event:
                case ExecutionStart():
                    if job.status is JobStatus.QUEUED:
                        job.move_to(JobStatus.RUNNING)
                        self.store.update(job)
                        self.events.publish(job.id, "status", job.public())
                case Progress():
                    job.progress = {"value": event.value, "max": event.max, "node": event.node}
                    self._persist_progress(job, final=event.value >= event.max)
                    self.events.publish(job.id, "progress", job.progress)
                case ExecutionError():
                    self._exec_errors[job.id] = execution_error_details(
                        {
                            "node_id": event.node_id,
                            "node_type": event.node_type,
                            "exception_type": event.exception_type,
                            "exception_message": event.exception_message,
                        }
                    )
                case Executed():
                    self._count_returned(job, event)
                case Executing(node=None):
                    # Sent after ComfyUI wrote /history: the job's end, whatever it was.
                    self._workers.submit(self._finalize, job.id)
                case Executing(node=node) if node is not None:
                    if job.status is JobStatus.QUEUED:
                        job.move_to(JobStatus.RUNNING)
                        self.store.update(job)
                        self.events.publish(job.id, "status", job.public())

    def _count_returned(self, job: Job, event: Executed) -> None:
        """Run-time MAX_BATCH_SIZE: count the images an output node reports; past the limit,
        stop the job (on a worker: cancelling calls ComfyUI). The caller holds the lock."""
        refs = parse_history_entry(event.prompt_id, {"outputs": {event.node: event.output}})
        returned = self._collected(job, refs.outputs)
        count = self._returned.get(job.id, 0) + len(returned)
        self._returned[job.id] = count
        error = self.options.limits.outputs_error(count)
        backend = self.pool.get(job.backend)
        if error is not None:
            self._workers.submit(self._stop_over_limit, job.id, error)
        elif returned and backend is not None and self.options.limits.max_pixels is not None:
            self._workers.submit(self._check_pixels, job.id, backend, returned)

    def _check_pixels(self, job_id: str, backend: Backend, refs: list[OutputRef]) -> None:
        """Run-time MAX_PIXELS while the job runs: the size of each reported image, from the
        first bytes of the file (the download at the end checks the whole file again)."""
        for ref in refs:
            try:
                with backend.client.view(ref, chunk_size=64 * 1024) as chunks:
                    size = image_size(next(iter(chunks), b""))
            except ComfyGateError:
                return
            error = size and self.options.limits.pixels_error(ref.node_id, *size)
            if error:
                self._stop_over_limit(job_id, error)
                return

    def _stop_over_limit(self, job_id: str, error: dict[str, Any]) -> None:
        with contextlib.suppress(Conflict, NotFound):
            self.cancel(job_id, error=error, status=JobStatus.FAILED)

    def _persist_progress(self, job: Job, *, final: bool) -> None:
        last = self._progress_written.get(job.id, 0.0)
        if final or time.monotonic() - last >= PROGRESS_PERSIST_INTERVAL_S:
            self._progress_written[job.id] = time.monotonic()
            self.store.update(job)

    def _on_down(self, backend: Backend, queue_lost: bool) -> None:
        """Failover: a ComfyUI that refuses connections has lost its in-memory queue, so
        every job on it, queued or running, goes to another backend now. Other failures
        (timeouts) may be passing: those jobs wait for reconciliation or their deadline."""
        if not queue_lost:
            return
        with self._lock:
            for job in [j for j in self._live.values() if j.backend == backend.name]:
                if job.on_backend:
                    self._requeue(job, f"backend {backend.name} went down")

    def _on_connection(self, backend: Backend, connected: bool) -> None:
        if connected:
            # Events sent while we were away are lost: ask ComfyUI about every job we have there.
            self._workers.submit(self._reconcile_backend, backend.name)

    # --- reconciliation -------------------------------------------------------------------

    def _jobs_on(self, backend_name: str) -> list[str]:
        with self._lock:
            return [j.id for j in self._live.values() if j.backend == backend_name and j.on_backend]

    def _reconcile_backend(self, backend_name: str) -> None:
        for job_id in self._jobs_on(backend_name):
            self._reconcile_job(job_id)

    def _poll_fallback(self) -> None:
        """Websocket down: poll every job on that backend. Websocket up: recheck a job now
        and then, in case one of its events was lost."""
        current = time.monotonic()
        for backend in self.pool.backends.values():
            for job_id in self._jobs_on(backend.name):
                last = self._checked.get(job_id, current)
                self._checked.setdefault(job_id, current)
                if not backend.ws_connected or current - last >= RECHECK_INTERVAL_S:
                    self._checked[job_id] = current
                    self._reconcile_job(job_id)

    def _reconcile_job(self, job_id: str) -> None:
        with self._lock:
            job = self._live.get(job_id)
            if job is None or not job.on_backend or job_id in self._submitting:
                return
            backend = self.pool.get(job.backend)
            prompt_id = job.prompt_id
        if backend is None or prompt_id is None:
            return
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
                # Its execution_start may have been sent while we were not listening.
                with self._lock:
                    if job.status is JobStatus.QUEUED and job.prompt_id == prompt_id:
                        job.move_to(JobStatus.RUNNING)
                        self.store.update(job)
                        self.events.publish(job.id, "status", job.public())
            return
        if entry is not None:
            self._finalize(job_id, entry)
            return
        with self._lock:
            if job.prompt_id == prompt_id and not job.status.terminal:
                self._requeue(job, "ComfyUI no longer knows the job (was it restarted?)")

    def _requeue(self, job: Job, reason: str, *, count: bool = True) -> None:
        """Send a job ComfyUI lost again, up to max_attempts; the caller holds the lock."""
        if job.prompt_id:
            self._by_prompt.pop(job.prompt_id, None)
        if count:
            self.pool.release(job.backend)
        if job.attempts >= self.options.max_attempts:
            self._finish(
                job,
                JobStatus.FAILED,
                error={
                    "code": "backend_unavailable",
                    "message": f"{reason}; gave up after {job.attempts} attempts",
                    "details": {"attempts": job.attempts},
                },
                release=False,
            )
            return
        log.warning("resubmitting: %s", reason, extra={"job_id": job.id})
        self._returned.pop(job.id, None)  # the next attempt's images are counted afresh
        job.prompt_id = job.backend = None
        job.progress = None
        job.move_to(JobStatus.QUEUED)
        self.store.update(job)
        self.events.publish(job.id, "status", job.public())
        self._wake.set()

    def _expire(self) -> None:
        current = now()
        with self._lock:
            expired = [
                j
                for j in self._live.values()
                if j.deadline_at is not None and j.deadline_at < current
            ]
        for job in expired:
            with contextlib.suppress(Conflict):
                self.cancel(
                    job.id,
                    error={
                        "code": "timeout",
                        "message": "the job did not finish before its deadline",
                        "details": {"job_id": job.id},
                    },
                )

    def sweep(self) -> int:
        """Delete finished jobs (and their outputs) older than the retention time."""
        count = 0
        while ids := self.store.finished_before(now() - self.options.retention_s):
            for job_id in ids:
                self.storage.delete_job(job_id)
                self.inputs.delete_job(job_id)
                self.store.delete(job_id)
                for folders in self.local_folders.values():  # what the end of the job left
                    folders.remove_job_outputs(job_id)
                count += 1
        if count:
            log.info("retention sweep deleted %d jobs", count)
        return count

    def _record_webhook(self, delivery: Delivery) -> None:
        with self._lock:
            job = self.store.get(delivery.job_id)
            if job is not None:
                job.webhook = delivery.public()
                self.store.update(job)

    # --- the end of a job -----------------------------------------------------------------

    def _finalize(self, job_id: str, entry: HistoryEntry | None = None) -> None:
        with self._lock:
            job = self._live.get(job_id)
            if job is None or job.status.terminal or job_id in self._finalizing:
                return
            self._finalizing.add(job_id)
            backend = self.pool.get(job.backend)
            prompt_id = job.prompt_id
        try:
            if backend is None or prompt_id is None:
                return
            if entry is None:
                entry = self._read_history(backend, prompt_id)
                if entry is None:
                    return  # not written yet: the poller or reconciliation will come back
            if entry.status == "success" and entry.completed:
                executed_at = now()
                try:
                    outputs = self._store_outputs(job, backend, entry)
                except _OverLimit as over:
                    self.storage.delete_job(job.id)  # nothing of it is kept, or cached
                    with self._lock:
                        self._finish(job, JobStatus.FAILED, error=over.error)
                    return
                if job.cache_key is not None and self.cache is not None:
                    # Before the job is done: a caller who asks again right after its answer
                    # must find it in the cache.
                    self.cache.put(job.cache_key, outputs, self.storage.job_dir(job.id))
                with self._lock:
                    self._finish(job, JobStatus.SUCCEEDED, outputs=outputs)
                self._observe_timings(job, executed_at)
                return
            with self._lock:
                if entry.interrupted:
                    error = {
                        "code": "generation_failed",
                        "message": "the job was interrupted on ComfyUI",
                        "details": {},
                    }
                else:
                    detail = (
                        entry.error
                        or self._exec_errors.get(job.id)
                        or {"message": "execution failed"}
                    )
                    where = (
                        f"node {detail.get('node_id')} ({detail.get('node_type')})"
                        if detail.get("node_id")
                        else "the workflow"
                    )
                    error = GenerationFailed(
                        f"{where} failed: {detail.get('message')}", detail
                    ).to_dict()
                self._finish(job, JobStatus.FAILED, error=error)
        except ComfyGateError as exc:
            with self._lock:
                self._finish(
                    job,
                    JobStatus.FAILED,
                    error={
                        "code": exc.code,
                        "message": f"could not collect the outputs: {exc.message}",
                        "details": {},
                    },
                )
        finally:
            with self._lock:
                self._finalizing.discard(job_id)

    def _read_history(self, backend: Backend, prompt_id: str) -> HistoryEntry | None:
        delay = 0.05
        for _ in range(5):
            entry = backend.client.history(prompt_id)
            if entry is not None:
                return entry
            if self._stop.wait(delay):
                return None
            delay *= 2
        return None

    def _collected(self, job: Job, refs: Sequence[OutputRef]) -> list[OutputRef]:
        """The files of ``refs`` the job returns: saved outputs (previews too for a template
        that says so)."""
        template = self.templates.get(job.template) if job.template in self.templates else None
        include_temp = template is not None and template.include_temp_outputs
        return [r for r in refs if r.type == "output" or (include_temp and r.type == "temp")]

    def _store_outputs(self, job: Job, backend: Backend, entry: HistoryEntry) -> list[Output]:
        outputs: list[Output] = []
        counters: dict[str, int] = {}
        limits = self.options.limits
        refs = self._collected(job, entry.outputs)
        too_many = limits.outputs_error(len(refs))
        if too_many is not None:
            raise _OverLimit(too_many)
        for ref in refs:
            index = counters.get(ref.node_id, 0)
            counters[ref.node_id] = index + 1
            name = output_name(ref.node_id, index, ref.filename)
            with backend.client.view(ref) as chunks:
                size = self.storage.save(job.id, name, chunks)
            if limits.max_pixels is not None:
                dimensions = image_size(self.storage.open_path(job.id, name))
                too_large = dimensions and limits.pixels_error(ref.node_id, *dimensions)
                if too_large:
                    raise _OverLimit(too_large)
            output = Output(name, content_type(name), size, ref.node_id, ref.kind)
            outputs.append(output)
            self.events.publish(
                job.id,
                "output",
                {
                    "filename": name,
                    "url": f"/v1/outputs/{job.id}/{name}",
                    "content_type": output.content_type,
                    "size": size,
                },
            )
        return outputs

    def waiting(self) -> int:
        """Jobs in the gateway's own queue, not yet on a backend."""
        with self._lock:
            return sum(1 for j in self._live.values() if j.prompt_id is None)

    def _observe_timings(self, job: Job, executed_at: float) -> None:
        """A succeeded job's three durations, in the metrics and on one log line."""
        timings: dict[str, float] = {}
        if job.started_at is not None:
            timings["queue_wait_s"] = job.started_at - job.created_at
            timings["execution_s"] = max(0.0, executed_at - job.started_at)
            self.metrics.queue_wait.labels(job.template).observe(timings["queue_wait_s"])
            self.metrics.execution.labels(job.template).observe(timings["execution_s"])
        if job.finished_at is not None:
            timings["transfer_s"] = max(0.0, job.finished_at - executed_at)
            self.metrics.transfer.labels(job.template).observe(timings["transfer_s"])
        log.info(
            "job timings",
            extra={
                "job_id": job.id,
                "template": job.template,
                "backend": job.backend,
                **{name: round(value, 3) for name, value in timings.items()},
            },
        )

    def _finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        error: dict[str, Any] | None = None,
        outputs: list[Output] | None = None,
        release: bool = True,
    ) -> None:
        """Write a job's end state; the caller holds the lock."""
        if job.status.terminal:
            return
        was_on_backend = job.prompt_id is not None
        job.move_to(status)
        job.error = error
        if outputs is not None:
            job.outputs = outputs
        delivery = self._delivery(job)
        self.store.update(job, delivery)  # the end state and its webhook, in one commit
        self._live.pop(job.id, None)
        self._exec_errors.pop(job.id, None)
        self._returned.pop(job.id, None)
        self._progress_written.pop(job.id, None)
        self._checked.pop(job.id, None)
        if job.cache_key is not None and self._by_key.get(job.cache_key) == job.id:
            del self._by_key[job.cache_key]
        if job.prompt_id:
            self._by_prompt.pop(job.prompt_id, None)
        if release and was_on_backend:
            self.pool.release(job.backend)
        self.metrics.jobs_finished.labels(job.template, status.value).inc()
        took = {"duration_s": round(job.finished_at - job.created_at, 3)} if job.finished_at else {}
        log.info(
            "job %s",
            status.value,
            extra={"job_id": job.id, "template": job.template, "backend": job.backend, **took},
        )
        public = job.public()
        self.events.publish(job.id, "status", public)
        self.events.publish(job.id, "done", public)
        if delivery is not None:
            self._wake_outbox()
        if was_on_backend and job.backend in self.local_folders:
            with contextlib.suppress(RuntimeError):  # shutting down: the retention sweep will
                self._workers.submit(self._remove_backend_files, job)

    def _remove_backend_files(self, job: Job) -> None:
        """Delete an ended job's files on a ComfyUI on this host: its output folder (the
        outputs are in storage by now) and the input images no unfinished job also uses.
        Checked and deleted under the lock: a job that needs an image is in ``_live`` before
        it uploads it, so nothing it needs goes away."""
        folders = self.local_folders[job.backend or ""]
        folders.remove_job_outputs(job.id)
        if job.inputs:
            with self._lock:
                needed = {name for j in self._live.values() for name in j.inputs}
                folders.remove_inputs(n for n in job.inputs if n not in needed)
