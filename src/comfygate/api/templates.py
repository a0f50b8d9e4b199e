"""GET /v1/templates and /v1/templates/{name}: names, descriptions, parameter schemas; and
GET /v1/templates/check: every template against every backend's node list.

A parameter naming a model file (``x-model-folder``) also carries ``x-models``: the files of
that folder the backends offer now (the usable ones; while none is, what they offered when
last seen), so a form can offer them as a list. It is a hint, not an ``enum``: which files
exist changes while the gateway runs, and a request is checked against them when it comes.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from comfygate.api import engine
from comfygate.templates.check import check_template
from comfygate.templates.model import Template

bp = Blueprint("templates", __name__)


@bp.get("/v1/templates")
def list_templates() -> Response:
    gateway = engine.gateway()
    return jsonify(
        {
            "templates": [_public(t) for t in gateway.templates.all()],
            "default_template": gateway.settings.default_template,
        }
    )


# Registered before /v1/templates/<name>, which it would otherwise be taken for: a template
# named "check" is therefore not reachable by name on this route.
@bp.get("/v1/templates/check")
def check_templates() -> Response:
    """Uses each backend's cached /object_info (refreshed by the health probe), so it costs
    ComfyUI nothing. Backend URLs are never shown."""
    gateway = engine.gateway()
    pool = gateway.pool
    backends: list[dict[str, Any]] = []
    for backend in pool.backends.values() if pool else []:
        entry: dict[str, Any] = {
            "name": backend.name,
            "status": "healthy" if backend.healthy else "unhealthy",
            "checked": bool(backend.object_info),
            "templates": [],
        }
        if not backend.object_info:
            entry["error"] = "no node list from this backend yet (it has not been reachable)"
        else:
            for template in gateway.templates.all():
                problems = check_template(template, backend.object_info)
                entry["templates"].append(
                    {
                        "name": template.name,
                        "ok": not problems,
                        "optional": template.optional,
                        "problems": [p.to_dict() for p in problems],
                    }
                )
        backends.append(entry)
    return jsonify({"backends": backends})


@bp.get("/v1/templates/<name>")
def get_template(name: str) -> Response:
    return jsonify(_public(engine.templates().get(name)))


def _public(template: Template) -> dict[str, Any]:
    """The template's public form, with the model files its model parameters can name."""
    public = template.public()
    folders = {n: p.model_folder for n, p in template.parameters.items() if p.model_folder}
    pool = engine.pool()
    if not folders or pool is None:
        return public
    choices = pool.model_choices()
    if not any(choices.values()):
        choices = pool.model_choices(last_known=True)
    properties = public["parameters"]["properties"]
    for name, folder in folders.items():
        properties[name] = {**properties[name], "x-models": choices.get(folder, [])}
    return public
