"""POST /v1/templates/{name}/generate and /v1/templates/{name}/jobs: the same runs as
/v1/generate and /v1/jobs with the template named by the path, so each template has its own
typed body in the OpenAPI document (``api/openapi.py``). ``.../upload`` is the same route
again, for the document: there it is the ``multipart/form-data`` form (images as file
fields), since client generators make one function per operation and body type."""

from __future__ import annotations

import dataclasses

from flask import Blueprint, Response

from comfygate.api import engine
from comfygate.api.body import Body, read_body
from comfygate.api.generate import generate_from
from comfygate.api.jobs import submit_from
from comfygate.errors import ValidationFailed

bp = Blueprint("template_routes", __name__)


def _body_for(name: str) -> Body:
    engine.templates().get(name)  # 404 for an unknown template
    body = read_body()
    if body.data.get("template", name) != name:
        raise ValidationFailed(
            f"'template' is {name!r} on this route (given by the path)", field="template"
        )
    return dataclasses.replace(body, data={**body.data, "template": name})


@bp.post("/v1/templates/<name>/generate")
@bp.post("/v1/templates/<name>/generate/upload")
def generate(name: str) -> Response:
    return generate_from(_body_for(name))


@bp.post("/v1/templates/<name>/jobs")
@bp.post("/v1/templates/<name>/jobs/upload")
def submit(name: str) -> Response:
    return submit_from(_body_for(name))
