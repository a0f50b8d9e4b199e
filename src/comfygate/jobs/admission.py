"""Admission: everything between a request and a job in the store.

Checks (parameters, models, cost limits, a backend that can run it), the result cache (a
hit is a job recorded as succeeded, with copies of the cached files), idempotency keys, and
coalescing (an identical job in flight answers this one too). What it admits is queued in
the store, and a dispatcher on any process claims it from there; or, for a synchronous
request with nobody queued before it, written submitted by the dispatcher of the request's
own thread, which sends it (``Dispatcher.create``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from comfygate import ids
from comfygate.backends.pool import BackendPool
from comfygate.backends.requirements import requirements
from comfygate.comfy.folders import job_output_prefix
from comfygate.errors import (
    BackendUnavailable,
    Conflict,
    NotFound,
    StorageFailed,
    ValidationFailed,
)
from comfygate.inputs.images import CheckedImage
from comfygate.jobs.bus import Empty
from comfygate.jobs.cache import CacheHit, ResultCache, cache_key
from comfygate.jobs.ledger import Ledger
from comfygate.jobs.model import Job, JobStatus
from comfygate.metrics import Metrics
from comfygate.storage.base import OutputStorage
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

TWIN_WAIT_S = 1.0  # at most, for a twin that never got written (its process died)


@dataclass(frozen=True)
class AdmissionOptions:
    job_deadline_s: float = 3600.0
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


class Admission:
    def __init__(
        self,
        ledger: Ledger,
        pool: BackendPool,
        templates: TemplateRegistry,
        outputs: OutputStorage,
        inputs: OutputStorage,
        cache: ResultCache | None,
        metrics: Metrics,
        options: AdmissionOptions,
    ) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.pool = pool
        self.templates = templates
        self.outputs = outputs
        self.inputs = inputs
        self.cache = cache
        self.metrics = metrics
        self.options = options
        # How a new job is written: queued by the ledger, or (the engine sets it to
        # Dispatcher.create) straight to submitted when its thread sends it.
        self.create_job: Callable[[Job], Job] = ledger.create

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; with ``owner``, only if that owner made it (another's is a 404 too)."""
        job = self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise NotFound(f"no job with id '{job_id}'", {"job_id": job_id})
        return job

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
        name is the parameter's value; the bytes are kept in the inputs storage."""
        job = self.prepare(
            template_name, raw_params, webhook_url=webhook_url, owner=owner, images=images
        )
        hit = self.cached(job) if cache else None
        if hit is None:
            self.bind(job)
        if idempotency_key is not None:
            # Scoped to the owner: another key's Idempotency-Key never finds this job.
            claim = idempotency_key if owner is None else f"{owner}:{idempotency_key}"
            bound_id, bound_fingerprint = self.store.claim_key(claim, fingerprint, job.id)
            if bound_id != job.id:
                if hit is not None:
                    self.outputs.delete_group(job.id)  # the files the hit gave this job
                if bound_fingerprint != fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was used with a different request",
                        {"idempotency_key": idempotency_key},
                    )
                return self.get(bound_id)
        if hit is not None:
            return self.answer_from_cache(job, hit)
        for checked in (images or {}).values():
            self.inputs.save(job.id, checked.filename(), [checked.data])
        result = self.enqueue(job, cache=cache)
        if job.inputs and result.id != job.id:
            self.inputs.delete_group(job.id)  # answered by a twin: never uploaded
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
        a request the result cache answers never needs one (``bind`` does it otherwise)."""
        template = self.templates.get(template_name)
        given = validate_params(template, raw_params)
        names = _image_names(template, given, images or {})
        # With no backend up, a request the cache can answer is still answered: its values
        # are resolved with what the backends offered when last seen. Anything else is a 503
        # (here, or in bind for a cache miss).
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
            id=ids.job_id(),
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

    def bind(self, job: Job) -> None:
        """The job's own graph (a copy of its template's, with the values and its
        filename_prefix), and a 503 if no usable backend has what it needs."""
        template = self.templates.get(job.template)
        job.graph = bind(template, job.params, job_output_prefix(job.id))
        runnable, reason = self.pool.check(requirements(job.graph))
        if not runnable:
            raise BackendUnavailable(reason)

    def cached(self, job: Job) -> CacheHit | None:
        """The cached result of a determined request, already given to ``job`` (copies of
        its files under the job's id); None on a miss, or if the entry went away meanwhile."""
        if job.cache_key is None or self.cache is None:
            return None
        hit = self.cache.get(job.cache_key)
        if hit is not None and not self.cache.give(hit, job.id):
            hit = None  # evicted between the lookup and the copies: run it after all
        if hit is not None:  # a miss is counted when the request is not answered after all
            self.metrics.cache_hit()
        return hit

    def enqueue(self, job: Job, *, cache: bool = True) -> Job:
        """Queue a bound job, or return the identical job already in flight (coalescing,
        through the store: the twin may be on another replica)."""
        key = self.in_flight_key(job) if cache and self.cache is not None else None
        if key is not None:
            bound = self.store.join_in_flight(key, job.id)
            if bound != job.id:
                twin = self._twin(bound)
                if twin is not None and not twin.status.terminal:
                    log.info("coalesced", extra={"job_id": twin.id})
                    self.metrics.cache.labels("miss").inc()
                    return twin
                if twin is not None and twin.status is JobStatus.SUCCEEDED and twin.outputs:
                    # It succeeded a moment ago and its result is going into the cache
                    # (the key is left after that): answered from its files, as a hit.
                    answered = self._answer_from_twin(job, twin)
                    if answered is not None:
                        return answered
                # Its twin ended meanwhile, or never got written (a crash): take its place.
                self.store.leave_in_flight(key, bound)
                self.store.join_in_flight(key, job.id)
            # A twin that left the key just now had put its result in the cache first.
            hit = self.cached(job)
            if hit is not None:
                self.store.leave_in_flight(key, job.id)
                return self._answered(job, hit)
            self.metrics.cache.labels("miss").inc()
        self.create_job(job)
        log.info("job created", extra={"job_id": job.id, "template": job.template})
        return job

    def _answer_from_twin(self, job: Job, twin: Job) -> Job | None:
        try:
            for output in twin.outputs:
                self.outputs.copy(twin.id, output.filename, job.id)
        except (OSError, StorageFailed):
            self.outputs.delete_group(job.id)
            return None  # gone meanwhile: run it after all
        self.metrics.cache.labels("hit").inc()
        assert job.cache_key is not None
        return self._answered(job, CacheHit(job.cache_key, list(twin.outputs)))

    def _answered(self, job: Job, hit: CacheHit) -> Job:
        if job.inputs:
            self.inputs.delete_group(job.id)  # never uploaded: not needed
        return self.answer_from_cache(job, hit)

    def _twin(self, job_id: str) -> Job | None:
        """The job bound to a key. A twin bound a moment ago is written a moment later (it
        joins, then inserts, then publishes its first status): wait for that event, briefly."""
        with self.ledger.bus.subscribe(job_id) as events:
            twin = self.store.get(job_id)
            if twin is None:
                with contextlib.suppress(Empty):
                    events.get(timeout=TWIN_WAIT_S)
                twin = self.store.get(job_id)
        return twin

    @staticmethod
    def in_flight_key(job: Job) -> str | None:
        """Identical jobs of one owner and one webhook coalesce (another owner's never). A
        cache hit never joined any (so its end leaves none: no write per hit)."""
        if job.cache_key is None or job.cached:
            return None
        return f"{job.cache_key}:{job.owner or ''}:{job.webhook_url or ''}"

    def answer_from_cache(self, job: Job, hit: CacheHit) -> Job:
        """Record ``job`` as answered by ``hit`` (whose files ``cached`` gave it)."""
        job.outputs = list(hit.outputs)
        job.cached = True
        job.started_at = job.created_at
        job.status = JobStatus.SUCCEEDED
        job.finished_at = job.created_at
        self.ledger.create(job)
        # Debug: the job's own end is logged (engine), and hits are counted in the metrics.
        log.debug("answered from the cache", extra={"job_id": job.id, "template": job.template})
        return job

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
        job_id = ids.job_id()
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
