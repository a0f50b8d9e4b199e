"""GET /openapi.json, generated; GET /docs, Swagger UI served from the installed package.

Nothing here is a hand-written copy of a schema. The document is built, once per app, from:

- the pydantic models of ``api/schemas.py`` (job, output, progress, error body, job list,
  templates, backends, health, readiness, and the options a body takes beside parameters);
- each loaded template's ``request_model`` (through ``Template.public()``, the same JSON
  Schema that GET /v1/templates/{name} shows), which gives every template its own typed
  body: components ``{name}.Parameters``, ``{name}.GenerateRequest``, ``{name}.JobRequest``
  and the concrete routes POST /v1/templates/{name}/generate and /jobs;
- the app's ``url_map``: an operation is listed only if the app registers its route, and a
  test checks the converse (every registered route is described here).

What is written by hand is the part no model holds, in ``api/openapi_paths.py`` (the route
table), ``api/openapi_runs.py`` (the run routes' bodies and examples) and
``api/openapi_responses.py`` (errors, files, headers): which route answers what, with which
status codes, media types, headers and examples. The document is checked by generating a
client from it with openapi-python-client (``tests/test_generated_client.py``).
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from comfygate import __version__
from comfygate.api import auth, schemas, web
from comfygate.api.openapi_paths import SWAGGER_FILES, operations
from comfygate.api.openapi_responses import HEADERS, REF, error_responses, ref
from comfygate.errors import NotFound
from comfygate.templates.model import Template

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
_EXTENSION = "comfygate.openapi"


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document(current_app))


@bp.get("/docs")
def docs() -> Response:
    return web.page("docs.html")


@bp.get("/docs/<path:filename>")
def docs_asset(filename: str) -> Response:
    if filename not in SWAGGER_FILES:
        raise NotFound("no such file", {"file": filename})
    return send_from_directory(_swagger_dir(), filename, max_age=86400)


def _swagger_dir() -> Path:
    return Path(str(resources.files("flask_swagger_ui") / "dist"))


def document(app: Flask) -> dict[str, Any]:
    """The app's OpenAPI document (built at the first call; templates do not change)."""
    doc: dict[str, Any] | None = app.extensions.get(_EXTENSION)
    if doc is None:
        doc = build(app)
        app.extensions[_EXTENSION] = doc
    return doc


def rule_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: ``/v1/jobs/<job_id>`` -> ``/v1/jobs/{job_id}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def registered_operations(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every route the app registers.

    Flask's own ``/static/<filename>`` is left out while the app has no static folder (it
    then answers nothing but 404): it is no part of the API.
    """
    no_static = not (app.static_folder and Path(app.static_folder).is_dir())
    return {
        (rule_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if not (rule.endpoint == "static" and no_static)
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }


def build(app: Flask) -> dict[str, Any]:
    gateway = app.extensions["comfygate"]
    keys_on = bool(app.extensions.get(auth.EXTENSION))
    templates: list[Template] = gateway.templates.all()
    default = gateway.settings.default_template
    schemas_ = _model_schemas()
    for template in templates:
        schemas_.update(_template_schemas(template))
    schemas_["GenerateRequest"] = _any_template_body(templates, default, "GenerateRequest")
    schemas_["JobRequest"] = _any_template_body(templates, default, "JobRequest")
    registered = registered_operations(app)
    paths: dict[str, dict[str, Any]] = {}
    for route, path, method, operation in operations(templates, default):
        if (route, method) in registered:
            paths.setdefault(path, {})[method] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ComfyGate",
            "version": __version__,
            "summary": "An HTTP API gateway for ComfyUI workflows.",
            "description": DESCRIPTION,
            "license": {"name": "MIT"},
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas_,
            "responses": error_responses(),
            "headers": HEADERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
        # With API keys on, a key is needed (public operations say `security: []`).
        **({"security": [{"bearerAuth": []}, {"apiKeyHeader": []}]} if keys_on else {}),
    }


# --- the document's head -------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (API_KEYS / API_KEYS_FILE) as a bearer token.",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


TAGS = [
    {"name": "generate", "description": "Run a template and wait for the result."},
    {"name": "jobs", "description": "Asynchronous jobs: submit, follow, list, cancel."},
    {"name": "batches", "description": "Many parameter sets in one call; an archive."},
    {"name": "templates", "description": "The templates and their parameters."},
    {"name": "workflows", "description": "Raw API-format workflows (a scope of their own)."},
    {"name": "outputs", "description": "Files the jobs produced."},
    {"name": "operations", "description": "Health, readiness, backends, metrics."},
    {"name": "documentation", "description": "This document, the docs and the playground."},
]

DESCRIPTION = """\
ComfyGate fills a stored workflow *template* with typed, validated parameters, runs it on
ComfyUI, and answers with the result, or lets you follow the job.

- `POST /v1/generate` waits and answers with the image (or the job object);
  `POST /v1/jobs` answers at once with a job to follow (`GET /v1/jobs/{job_id}/events`).
- Each template has typed routes, `POST /v1/templates/{name}/generate` and `/jobs`, whose
  bodies are that template's parameters (`{name}.GenerateRequest`, `{name}.JobRequest`);
  templates with image parameters also `.../generate/upload` and `.../jobs/upload`, which
  document the `multipart/form-data` form (images as file fields).
- Files come back with their own media type (`image/png`...); `application/octet-stream` is
  listed beside them for client generators.
- Every error has one shape, `ErrorBody`: `{"error": {"code", "message", "details"}}`.
- Every answer carries `X-Request-Id` (yours, if you sent a valid one).
"""


# --- schemas --------------------------------------------------------------------------------


def _model_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [
        (m, "serialization") for m in schemas.RESPONSE_MODELS
    ]
    _, top = models_json_schema(models, ref_template=REF)
    result: dict[str, Any] = top.get("$defs", {})
    return result


def _hoist_defs(schema: dict[str, Any], prefix: str, into: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's local ``$defs`` into the components under ``prefix``, fixing refs."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = REF.format(model=prefix + ref.removeprefix("#/$defs/"))
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)
        return node

    for name, definition in defs.items():
        into[prefix + name] = fix(definition)
    return dict(fix(schema))


def _template_schemas(template: Template) -> dict[str, Any]:
    name = template.name
    out: dict[str, Any] = {}
    params = _hoist_defs(template.public()["parameters"], f"{name}.", out)
    params["title"] = f"{name}.Parameters"
    if template.description:
        params["description"] = template.description
    out[f"{name}.Parameters"] = params
    for kind, options, what in (
        ("GenerateRequest", schemas.RunOptions, "POST /v1/templates/{name}/generate"),
        ("JobRequest", schemas.JobOptions, "POST /v1/templates/{name}/jobs"),
    ):
        option_props = options.model_json_schema(ref_template=REF)["properties"]
        out[f"{name}.{kind}"] = {
            "title": f"{name}.{kind}",
            "description": f"Body of {what.replace('{name}', name)} (and of the "
            f"{'/v1/generate' if kind == 'GenerateRequest' else '/v1/jobs'} route with "
            f"`template` {name!r}): the template's parameters, at the top level, and the "
            "options. Unknown keys are refused.",
            "type": "object",
            "properties": {
                "template": {
                    "const": name,
                    # A default, so a generated client's model of this body names its
                    # template by itself (on /v1/generate and /v1/jobs it must be named).
                    "default": name,
                    "description": "The template; on /v1/templates/{name}/... the path names it.",
                },
                **params.get("properties", {}),
                **option_props,
            },
            **({"required": params["required"]} if params.get("required") else {}),
            "additionalProperties": False,
        }
    return out


def _any_template_body(templates: list[Template], default: str, kind: str) -> dict[str, Any]:
    variants: list[dict[str, Any]] = []
    for template in templates:
        body = ref(f"{template.name}.{kind}")
        # The default template may go unnamed; any other must be named in `template`.
        variants.append(
            body if template.name == default else {"allOf": [body], "required": ["template"]}
        )
    return {
        "title": kind,
        "description": f"One template's body; `template` names it (default: {default!r}).",
        "anyOf": variants,
    }
