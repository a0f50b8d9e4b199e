"""Asynchronous jobs: submit, read, list, cancel, and follow as server-sent events."""

from __future__ import annotations

import hashlib
import json
import queue
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from comfygate.api import answers, auth, engine, urls, waits
from comfygate.api.body import Body, read_body
from comfygate.api.images import RESOLVER, run_request_with_images
from comfygate.api.schemas import JobStatus as PublicStatus
from comfygate.errors import BadRequest, ValidationFailed
from comfygate.jobs.bus import CLOSING
from comfygate.jobs.ledger import VERSION
from comfygate.jobs.model import JobStatus
from comfygate.jobs.webhooks import check_target

bp = Blueprint("jobs", __name__)

MAX_PAGE = 200
MAX_CURSOR_CHARS = 200  # cursors are opaque strings the store makes


def _webhook_url(value: str | None) -> str | None:
    """The webhook target, checked by the egress policy now (and at every delivery)."""
    if value is None:
        return None
    sender = engine.jobs().webhooks
    if sender is None:
        return value
    return check_target(
        value,
        sender.options.policy,
        timeout_s=sender.options.timeout_s,
        resolver=current_app.extensions.get(RESOLVER),
    )


@bp.post("/v1/jobs")
def submit() -> Response:
    return submit_from(read_body())


def submit_from(body: Body) -> Response:
    """Create a job from a body (also POST /v1/templates/{name}/jobs's): 202 + Location."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 255):
        raise BadRequest("Idempotency-Key must be 1 to 255 characters")
    req, images = run_request_with_images(body)
    # Of what the job runs (images by their content hash), not of how it was sent.
    fingerprint = hashlib.sha256(
        json.dumps(
            {**body.data, **req.params, "template": req.template},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        ).encode()
    ).hexdigest()
    job = engine.jobs().create(
        req.template,
        req.params,
        webhook_url=_webhook_url(req.webhook_url),
        idempotency_key=key,
        fingerprint=fingerprint,
        cache=req.cache,
        owner=auth.creating_owner(),
        images=images,
    )
    resp = jsonify(urls.job(job))
    resp.status_code = 202
    resp.headers["Location"] = f"/v1/jobs/{job.id}"
    return resp


@bp.get("/v1/jobs/<job_id>")
def get(job_id: str) -> Response:
    return answers.job(job_id, auth.visible_owner())


@bp.delete("/v1/jobs/<job_id>")
def cancel(job_id: str) -> Response:
    jobs = engine.jobs()
    return jsonify(urls.job(jobs.cancel(job_id, owner=auth.visible_owner())))


@bp.get("/v1/jobs")
def list_jobs() -> Response:
    args = request.args
    status: JobStatus | None = None
    if args.get("status"):
        try:
            status = JobStatus(PublicStatus(args["status"]).value)
        except ValueError:
            allowed = ", ".join(s.value for s in PublicStatus)
            raise ValidationFailed(f"'status' must be one of: {allowed}", field="status") from None
    limit = _int_arg("limit", 50, 1, MAX_PAGE)
    cursor = args.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR_CHARS:
        raise ValidationFailed("'cursor' is not a cursor this gateway made", field="cursor")
    # Digits were the cursor before it was opaque; -1 or 0 never was one.
    try:
        jobs, next_cursor = engine.jobs().page(status, limit, cursor, owner=auth.visible_owner())
    except ValueError:
        raise ValidationFailed(
            "'cursor' is not a cursor this gateway made", field="cursor"
        ) from None
    return jsonify(
        {
            "jobs": [urls.job(j) for j in jobs],
            "next_cursor": None if next_cursor is None else str(next_cursor),
        }
    )


def _int_arg(name: str, default: int | None, low: int, high: int | None) -> Any:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"'{name}' must be an integer", field=name) from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValidationFailed(f"'{name}' must be {bounds}", field=name)
    return value


def _sse(event: str, data: dict[str, Any] | None) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/v1/jobs/<job_id>/events")
def events(job_id: str) -> Response:
    service = engine.jobs()
    heartbeat = engine.settings().sse_heartbeat_s
    service.get(job_id, auth.visible_owner())  # 404 before the stream starts, not an empty one
    release = waits.acquire()  # given back when the server closes the response
    base = urls.links()  # the stream runs outside the request

    def stream() -> Iterator[str]:
        with service.events.subscribe(job_id) as updates:
            # Subscribed first, then the current state: nothing falls between the two.
            job = service.get(job_id)
            sent = urls.job(job, base)
            seen = job.version  # events of this version or older say nothing new
            yield _sse("status", sent)
            if job.progress:
                yield _sse("progress", job.progress)
            if job.status.terminal:
                for output in sent["outputs"]:
                    yield _sse("output", output)
                yield _sse("done", sent)
                return
            while True:
                try:
                    kind, data = updates.get(timeout=heartbeat)
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                if kind == CLOSING:
                    return  # the gateway is stopping: the client reconnects to the next one
                version = data.get(VERSION) if kind in ("status", "done") else None
                if version is not None and version <= seen and kind == "status":
                    continue  # the bus's replay of the state just read from the store
                seen = max(seen, version or 0)
                yield _sse(kind, urls.event(kind, data, base))
                if kind == "done":
                    return

    resp = Response(
        stream(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    resp.call_on_close(release)
    return resp
