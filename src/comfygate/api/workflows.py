"""POST /v1/workflows/run: a raw API-format workflow, for keys with the ``workflows`` scope.

With API keys on, only a key with the ``workflows`` scope may; with keys off, everyone may
once ``ALLOW_RAW_WORKFLOWS`` is set, else 403 ``forbidden``. The graph is checked by
``templates/raw.py`` (shape, node allowlist), each LoadImage's ``image`` (a data: URI or an
https URL) is fetched and checked like an image parameter, and it runs as a job of template
``workflow`` on the same path as every other job.
"""

from __future__ import annotations

import contextlib

from flask import Blueprint, Response, jsonify

from comfygate.api import auth, engine, urls, waits
from comfygate.api.body import bool_field, json_object, timeout_field
from comfygate.api.generate import wait_and_answer
from comfygate.api.images import image_bytes
from comfygate.errors import Forbidden, ValidationFailed
from comfygate.inputs.images import CheckedImage, check_image
from comfygate.templates import raw

bp = Blueprint("workflows", __name__)

_KEYS = frozenset({"workflow", "timeout_s", "wait"})


def _allowed() -> None:
    settings = engine.settings()
    if auth.keys_enabled():
        if not auth.principal().allows("workflows"):
            raise Forbidden("raw workflows need an API key with the 'workflows' scope")
    elif not settings.allow_raw_workflows:
        raise Forbidden("raw workflows are off on this gateway (ALLOW_RAW_WORKFLOWS)")


@bp.post("/v1/workflows/run")
def run() -> Response:
    _allowed()
    gateway = engine.gateway()
    settings = gateway.settings
    data = json_object()
    for key in data:
        if key not in _KEYS:
            raise ValidationFailed(
                f"unknown key '{key[:64]}' (known: {', '.join(sorted(_KEYS))})", field=key[:64]
            )
    timeout = timeout_field(data)
    wait = bool_field(data, "wait", True)
    graph = raw.check_shape(data.get("workflow"))
    allowed = raw.allowed_nodes(settings.raw_workflow_nodes)
    raw.check_nodes(graph, allowed)  # before fetching anything a refused graph names
    max_bytes = int(settings.max_image_mb * 1024 * 1024)
    max_pixels = settings.max_image_pixels
    if settings.max_pixels is not None:
        max_pixels = min(max_pixels, settings.max_pixels)
    images: dict[str, CheckedImage] = {}
    for node_id, value in raw.image_inputs(graph):
        field = f"workflow.{node_id}.inputs.image"
        checked = check_image(
            image_bytes(value, field, max_bytes),
            field=field,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
        )
        graph[node_id]["inputs"]["image"] = checked.filename()
        images[checked.filename()] = checked
    # A waiting request takes its slot before the job exists (api/waits.py).
    with (
        waits.slot() if wait else contextlib.nullcontext(),
        engine.jobs().submitting_here() if wait else contextlib.nullcontext(),
    ):
        job = engine.jobs().create_raw(
            graph, allowed, owner=auth.creating_owner(), images=list(images.values())
        )
        if not wait:
            resp = jsonify(urls.job(job))
            resp.status_code = 202
            resp.headers["Location"] = f"/v1/jobs/{job.id}"
            return resp
        limit = settings.request_timeout_s
        return wait_and_answer(job, min(timeout, limit) if timeout else limit)
