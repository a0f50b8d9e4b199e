"""GET /v1/templates and /v1/templates/{name}: names, descriptions, parameter schemas."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("templates", __name__)


@bp.get("/v1/templates")
def list_templates() -> Response:
    registry = current_app.extensions["comfygate"].templates
    return jsonify({"templates": [t.public() for t in registry.all()]})


@bp.get("/v1/templates/<name>")
def get_template(name: str) -> Response:
    return jsonify(current_app.extensions["comfygate"].templates.get(name).public())
