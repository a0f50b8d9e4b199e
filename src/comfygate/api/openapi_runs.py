"""The run operations of the OpenAPI document: POST /v1/generate and /v1/jobs, each template's
typed routes, and the multipart upload routes, with bodies and examples that work.

One request media type per operation: client generators build one function per operation and
cannot choose between a JSON and a multipart body (openapi-python-client's module does not even
import). JSON bodies are on the run routes; the multipart form, for uploading images, is on the
``.../upload`` routes (the run routes take it too, as they always did).
"""

from __future__ import annotations

from typing import Any

from comfygate.api.openapi_responses import (
    errors,
    header,
    json_response,
    path_param,
    ref,
    response_ref,
)
from comfygate.templates.model import Parameter, Template

Operation = tuple[str, str, str, dict[str, Any]]  # (route, path, method, operation)

# An 8x8 PNG: image parameters' example value (a real image, so the example runs).
EXAMPLE_IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8UaHBgA0"
    "wMeAAg1MCAB4nAXgllso1AAAAAElFTkSuQmCC"
)


def _sample(name: str, param: Parameter) -> Any:
    if param.type == "image":
        return EXAMPLE_IMAGE
    if param.enum:
        return param.enum[0]
    if param.default is not None:
        return param.default
    match param.type:
        case "string":
            return "a lighthouse at dusk" if "prompt" in name else "example"
        case "integer":
            return int(param.minimum) if param.minimum is not None else 1
        case "number":
            return float(param.minimum) if param.minimum is not None else 1.0
        case _:
            return True


def example_body(template: Template) -> dict[str, Any]:
    """A body that works: the required parameters and a fixed seed where there is one; for a
    template that needs neither, its defaults spelled out."""
    body = {n: _sample(n, p) for n, p in template.parameters.items() if p.required}
    if template.seed_parameter:
        body[template.seed_parameter] = 42
    if not body:
        body = {n: p.default for n, p in template.parameters.items() if p.default is not None}
    return body


def _multipart(images: list[str]) -> dict[str, Any]:
    """The multipart/form-data form of a run body: for uploading image parameters."""
    return {
        "schema": {
            "type": "object",
            "description": "The JSON body in `params` and/or each key as a form field of its own "
            "(typed as the template declares), and each image parameter as a file field.",
            "properties": {
                "params": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "description": "The JSON body (a JSON object).",
                },
                **{
                    name: {"type": "string", "format": "binary", "description": "An image file."}
                    for name in images
                },
            },
        },
        "encoding": {name: {"contentType": "image/png, image/jpeg, image/webp"} for name in images},
    }


def _json_body(body_schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": body_schema, "examples": examples}}


_UPLOAD_NOTE = (
    " The same route takes `multipart/form-data` (images as file fields), as the `.../upload` "
    "route documents."
)


def _generate_op(
    operation_id: str, summary: str, content: dict[str, Any], params: list[Any], note: str = ""
) -> dict[str, Any]:
    return {
        "tags": ["generate"],
        "operationId": operation_id,
        "summary": summary,
        "description": "Creates a job and waits for it (at most `timeout_s`, capped by "
        "REQUEST_TIMEOUT_S). With one output and an Accept header that admits it (absent, "
        "`*/*`, `image/*`, `application/octet-stream`) the answer is the file itself; otherwise "
        "(`Accept: application/json`, or several outputs) the job object." + note,
        "parameters": params,
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": response_ref("GenerateResult"),
            **errors(400, 404, 413, 415, 502, 503, 504),
        },
    }


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key with the same body returns the same job; with another body, 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _submit_op(
    operation_id: str, summary: str, content: dict[str, Any], params: list[Any], note: str = ""
) -> dict[str, Any]:
    return {
        "tags": ["jobs"],
        "operationId": operation_id,
        "summary": summary,
        "description": "Creates a job and answers at once; follow it with "
        "GET /v1/jobs/{job_id}/events or GET /v1/jobs/{job_id}." + note,
        "parameters": [*params, _IDEMPOTENCY_KEY],
        "requestBody": {"required": True, "content": content},
        "responses": {
            "202": json_response(
                "Job", "The job, queued.", headers={"Location": header("Location")}
            ),
            **errors(400, 404, 409, 413, 415, 503),
        },
    }


def run_operations(templates: list[Template], default: str) -> list[Operation]:
    names = [t.name for t in templates]
    by_name = {t.name: example_body(t) for t in templates}
    named = {
        n: {"summary": n, "value": {"template": n, **ex} if n != default else ex}
        for n, ex in by_name.items()
    }
    image_params = {
        t.name: [n for n, p in t.parameters.items() if p.type == "image"] for t in templates
    }
    all_images = sorted({n for names_ in image_params.values() for n in names_})
    ops: list[Operation] = []

    def add(route: str, method: str, operation: dict[str, Any], path: str | None = None) -> None:
        ops.append((route, path or route, method, operation))

    generic_note = _UPLOAD_NOTE.replace(
        "the `.../upload` route", "POST /v1/templates/{name}/generate/upload"
    )
    add(
        "/v1/generate",
        "post",
        _generate_op(
            "generate",
            "Generate and wait for the result",
            _json_body(ref("GenerateRequest"), named),
            [],
            generic_note,
        ),
    )
    add(
        "/v1/jobs",
        "post",
        _submit_op(
            "submitJob",
            "Submit a job",
            _json_body(ref("JobRequest"), named),
            [],
            generic_note.replace("generate/upload", "jobs/upload"),
        ),
    )
    template_name = path_param("name", "The template.", names)
    per_template = {n: {"summary": n, "value": ex} for n, ex in by_name.items()}
    any_generate = {"anyOf": [ref(f"{n}.GenerateRequest") for n in names]}
    any_job = {"anyOf": [ref(f"{n}.JobRequest") for n in names]}
    upload = {"multipart/form-data": _multipart(all_images)}
    generic: list[tuple[str, str, dict[str, Any]]] = [
        ("generate", "generateWithTemplate", _json_body(any_generate, per_template)),
        ("jobs", "submitJobWithTemplate", _json_body(any_job, per_template)),
        ("generate/upload", "generateWithTemplateUpload", upload),
        ("jobs/upload", "submitJobWithTemplateUpload", upload),
    ]
    for suffix, operation_id, content in generic:
        make = _generate_op if suffix.startswith("generate") else _submit_op
        what = "Generate with" if make is _generate_op else "Submit a job of"
        how = ", images uploaded as files" if suffix.endswith("upload") else ""
        note = "" if suffix.endswith("upload") else _UPLOAD_NOTE
        route = f"/v1/templates/{{name}}/{suffix}"
        add(
            route,
            "post",
            make(
                operation_id,
                f"{what} the template named in the path{how}",
                content,
                [template_name],
                note,
            ),
        )
    for template in templates:
        n = template.name
        example = {n: {"summary": n, "value": by_name[n]}}
        images = image_params[n]
        note = _UPLOAD_NOTE if images else ""
        for suffix, kind in (("generate", "GenerateRequest"), ("jobs", "JobRequest")):
            body = _json_body(ref(f"{n}.{kind}"), example)
            if suffix == "generate":
                op = _generate_op(f"generate_{n}", f"Generate with {n}", body, [], note)
            else:
                op = _submit_op(f"submitJob_{n}", f"Submit a {n} job", body, [], note)
            add(f"/v1/templates/{{name}}/{suffix}", "post", op, path=f"/v1/templates/{n}/{suffix}")
            if not images:
                continue  # an upload route only where there is an image to upload
            form = {"multipart/form-data": _multipart(images)}
            if suffix == "generate":
                op = _generate_op(
                    f"generate_{n}_upload", f"Generate with {n}, images uploaded as files", form, []
                )
            else:
                op = _submit_op(
                    f"submitJob_{n}_upload", f"Submit a {n} job, images uploaded as files", form, []
                )
            add(
                f"/v1/templates/{{name}}/{suffix}/upload",
                "post",
                op,
                path=f"/v1/templates/{n}/{suffix}/upload",
            )
    return ops
