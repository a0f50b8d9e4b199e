"""POST /v1/generate: create a job, wait for it, answer with the file or the job object."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

from comfygate.api import auth, engine, stored, urls, waits
from comfygate.api.body import Body, read_body
from comfygate.api.images import run_request_with_images
from comfygate.errors import Conflict, Timeout, ValidationFailed, from_code
from comfygate.jobs.model import Job, JobStatus

bp = Blueprint("generate", __name__)


@bp.post("/v1/generate")
def generate() -> Response:
    return generate_from(read_body())


def generate_from(body: Body) -> Response:
    """The synchronous run of a body (also POST /v1/templates/{name}/generate's)."""
    gateway = engine.gateway()
    req, images = run_request_with_images(body)
    if req.webhook_url is not None:
        raise ValidationFailed(
            "'webhook_url' is for POST /v1/jobs; a synchronous request gets its answer directly",
            field="webhook_url",
        )
    limit = gateway.settings.request_timeout_s
    timeout = min(req.timeout_s, limit) if req.timeout_s else limit
    # The slot before the job exists: a refused wait leaves nothing behind. The job is sent
    # to ComfyUI by this thread, which waits for it anyway.
    with waits.slot(), engine.jobs().submitting_here():
        job = engine.jobs().create(
            req.template, req.params, cache=req.cache, owner=auth.creating_owner(), images=images
        )
        return wait_and_answer(job, timeout)


def wait_and_answer(job: Job, timeout: float) -> Response:
    """Wait for a job; answer with its file or job object, or its error (504 on timeout).
    The end's bookkeeping of the job runs once the answer is sent (its response closed)."""
    with engine.jobs().answering() as after_answer:
        try:
            return _wait_and_answer(job, timeout, after_answer)
        except BaseException:
            after_answer()
            raise


def _wait_and_answer(job: Job, timeout: float, after_answer: Callable[[], None]) -> Response:
    done = job if job.status.terminal else engine.jobs().wait(job.id, timeout)  # a cache hit
    if done is None:
        # The caller gave up: interrupt the job so it does not keep the GPU, unless an
        # identical request joined it and still waits for it.
        if engine.jobs().events.subscribers(job.id) == 0:
            with contextlib.suppress(Conflict):
                engine.jobs().cancel(
                    job.id,
                    error={
                        "code": "timeout",
                        "message": f"no result within {timeout:g} s",
                        "details": {"job_id": job.id},
                    },
                )
        raise Timeout(
            f"the job did not finish within {timeout:g} s and was cancelled",
            {"job_id": job.id, "timeout_s": timeout},
        )
    if done.status is not JobStatus.SUCCEEDED:
        error = done.error or {}
        raise from_code(
            error.get("code", "generation_failed"),
            error.get("message", f"the job ended {done.status.value}"),
            {**(error.get("details") or {}), "job_id": done.id},
        )
    return _answer(done, after_answer)


def _answer(job: Job, after_answer: Callable[[], None]) -> Response:
    gateway = engine.gateway()
    headers = {"X-Job-Id": job.id}
    template = gateway.templates.get(job.template) if job.template in gateway.templates else None
    seed_param = template.seed_parameter if template else None
    if seed_param and seed_param in job.params:
        headers["X-Seed"] = str(job.params[seed_param])
    if len(job.outputs) == 1:
        output = job.outputs[0]
        best = request.accept_mimetypes.best_match(
            [output.content_type, "application/json"], default=output.content_type
        )
        if best != "application/json":
            opened = engine.storage().open(job.id, output.filename)
            if opened is not None:
                resp = stored.answer(opened, download_name=output.filename, on_close=after_answer)
                resp.headers.update(headers)
                return resp
    resp = jsonify(urls.job(job))
    resp.headers.update(headers)
    resp.call_on_close(after_answer)
    return resp
