"""The route table of the OpenAPI document: what each route takes and answers, with which
status codes, headers and examples. The schemas it points at are generated (``api/openapi.py``
from ``api/schemas.py`` and the templates); only what no model holds is written here.

An operation of a route the app does not register is left out of the document, so one can be
described here before its route lands.
"""

from __future__ import annotations

from typing import Any

from comfygate.api.jobs import MAX_CURSOR, MAX_PAGE
from comfygate.jobs.model import JobStatus
from comfygate.templates.model import Parameter, Template

REF = "#/components/schemas/{model}"
# The Swagger UI files /docs needs, from the flask-swagger-ui package (no CDN).
SWAGGER_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-16x16.png", "favicon-32x32.png"}
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


# --- examples -------------------------------------------------------------------------------


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


# --- responses ------------------------------------------------------------------------------

HEADERS: dict[str, Any] = {
    "X-Job-Id": {"description": "The job's id.", "schema": {"type": "string"}},
    "X-Seed": {
        "description": "The seed used (templates with a seed parameter).",
        "schema": {"type": "string"},
    },
    "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    },
}

_ERRORS: dict[int, tuple[str, str, dict[str, dict[str, Any]]]] = {
    400: (
        "BadRequest",
        "The body is not a JSON object (`bad_request`), or a field is missing, of the wrong "
        "type, out of range or unknown (`validation_error`, `details.field` names it).",
        {
            "validation_error": {
                "code": "validation_error",
                "message": "'steps': Input should be greater than or equal to 1",
                "details": {"field": "steps"},
            },
            "bad_request": {
                "code": "bad_request",
                "message": "the body is not valid JSON",
                "details": {},
            },
        },
    ),
    401: (
        "Unauthorized",
        "API keys are configured and the request has none or a wrong one (send it as "
        "`Authorization: Bearer <key>` or `X-API-Key`).",
        {
            "unauthorized": {
                "code": "unauthorized",
                "message": "the API key is not valid",
                "details": {},
            }
        },
    ),
    403: (
        "Forbidden",
        "The API key lacks the scope this route needs (`admin` for operations routes, "
        "`workflows` for raw workflows), or raw workflows are off.",
        {
            "forbidden": {
                "code": "forbidden",
                "message": "this route needs an API key with the 'admin' scope",
                "details": {},
            }
        },
    ),
    404: (
        "NotFound",
        "No such template, job or output.",
        {
            "not_found": {
                "code": "not_found",
                "message": "no template named 'nope'",
                "details": {"template": "nope"},
            }
        },
    ),
    409: (
        "Conflict",
        "The job has already ended, or the Idempotency-Key was used with another body.",
        {
            "conflict": {
                "code": "conflict",
                "message": "the job has already ended (succeeded)",
                "details": {"job_id": "6f1c0b9e2d6a4c1f9a7e3b5d8c2f4a10"},
            }
        },
    ),
    413: (
        "PayloadTooLarge",
        "The body is over MAX_BODY_MB.",
        {
            "payload_too_large": {
                "code": "payload_too_large",
                "message": "request body too large",
                "details": {},
            }
        },
    ),
    415: (
        "UnsupportedMediaType",
        "The body is not `application/json` (or, on the routes that take image uploads, "
        "`multipart/form-data`).",
        {
            "unsupported_media_type": {
                "code": "unsupported_media_type",
                "message": "the body must be JSON with Content-Type: application/json",
                "details": {"content_type": "text/plain"},
            }
        },
    ),
    429: (
        "RateLimited",
        "Over RATE_LIMIT for this API key (or client address); `Retry-After` says when to "
        "try again.",
        {
            "rate_limited": {
                "code": "rate_limited",
                "message": "rate limit exceeded (60 per 1 minute); retry after 12 s",
                "details": {"limit": "60 per 1 minute", "retry_after_s": 12},
            }
        },
    ),
    502: (
        "GenerationFailed",
        "ComfyUI refused the workflow or its execution failed; `details` names the node.",
        {
            "generation_failed": {
                "code": "generation_failed",
                "message": "node 4 (CheckpointLoaderSimple): Value not in list",
                "details": {
                    "node_id": "4",
                    "node_type": "CheckpointLoaderSimple",
                    "message": "Value not in list: ckpt_name: 'missing.safetensors'",
                    "job_id": "6f1c0b9e2d6a4c1f9a7e3b5d8c2f4a10",
                },
            }
        },
    ),
    503: (
        "BackendUnavailable",
        "No healthy ComfyUI backend can take the job.",
        {
            "backend_unavailable": {
                "code": "backend_unavailable",
                "message": "no ComfyUI backend is available right now",
                "details": {},
            }
        },
    ),
    504: (
        "Timeout",
        "The synchronous wait ran out; the job was cancelled (`details.job_id`).",
        {
            "timeout": {
                "code": "timeout",
                "message": "the job did not finish within 1 s and was cancelled",
                "details": {"job_id": "6f1c0b9e2d6a4c1f9a7e3b5d8c2f4a10", "timeout_s": 1},
            }
        },
    ),
}


def error_responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (name, description, examples) in _ERRORS.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {
                "application/json": {
                    "schema": ref("ErrorBody"),
                    "examples": {k: {"value": {"error": v}} for k, v in examples.items()},
                }
            },
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": "`Bearer`.",
                    "schema": {"type": "string"},
                }
            }
        responses[name] = response
    return responses


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"$ref": f"#/components/responses/{_ERRORS[status][0]}"} for status in statuses
    }


def _json(schema_name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": ref(schema_name)}},
        **extra,
    }


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _path_param(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _file(description: str, media: str = "*/*") -> dict[str, Any]:
    return {
        "description": description,
        "content": {media: {"schema": {"type": "string", "format": "binary"}}},
    }


_JOB_ID = _path_param("job_id", "The job's id.")


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


# --- operations -----------------------------------------------------------------------------


def _request_content(
    body_schema: str, examples: dict[str, Any], images: list[str] | None
) -> dict[str, Any]:
    """A JSON body, and a multipart one for templates with image parameters."""
    content: dict[str, Any] = {
        "application/json": {"schema": ref(body_schema), "examples": examples}
    }
    if images is not None:
        content["multipart/form-data"] = _multipart(images)
    return content


def _generate_op(
    operation_id: str,
    summary: str,
    body_schema: str,
    examples: dict[str, Any],
    *,
    params: list[Any],
    images: list[str] | None = None,
) -> dict[str, Any]:
    content = _request_content(body_schema, examples, images)
    return {
        "tags": ["generate"],
        "operationId": operation_id,
        "summary": summary,
        "description": "Creates a job and waits for it (at most `timeout_s`, capped by "
        "REQUEST_TIMEOUT_S). With one output and an Accept header that admits it (absent, "
        "`*/*`, `image/*`) the answer is the file itself; otherwise the job object.",
        "parameters": params,
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {
                "description": "The job succeeded: its one output, or the job object.",
                "headers": {"X-Job-Id": _header("X-Job-Id"), "X-Seed": _header("X-Seed")},
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": ref("Job")},
                },
            },
            **_errors(400, 404, 413, 415, 502, 503, 504),
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
    operation_id: str,
    summary: str,
    body_schema: str,
    examples: dict[str, Any],
    *,
    params: list[Any],
    images: list[str] | None = None,
) -> dict[str, Any]:
    content = _request_content(body_schema, examples, images)
    return {
        "tags": ["jobs"],
        "operationId": operation_id,
        "summary": summary,
        "description": "Creates a job and answers at once; follow it with "
        "GET /v1/jobs/{job_id}/events or GET /v1/jobs/{job_id}.",
        "parameters": [*params, _IDEMPOTENCY_KEY],
        "requestBody": {"required": True, "content": content},
        "responses": {
            "202": _json("Job", "The job, queued.", headers={"Location": _header("Location")}),
            **_errors(400, 404, 409, 413, 415, 503),
        },
    }


Operation = tuple[str, str, str, dict[str, Any]]  # (route, path, method, operation)


def operations(templates: list[Template], default: str) -> list[Operation]:
    names = [t.name for t in templates]
    by_name = {t.name: example_body(t) for t in templates}
    named = {
        n: {"summary": n, "value": {"template": n, **ex} if n != default else ex}
        for n, ex in by_name.items()
    }
    ops: list[Operation] = []
    image_params = {
        t.name: [n for n, p in t.parameters.items() if p.type == "image"] for t in templates
    }
    all_images = sorted({n for names_ in image_params.values() for n in names_})

    def add(route: str, method: str, operation: dict[str, Any], path: str | None = None) -> None:
        ops.append((route, path or route, method, operation))

    add(
        "/v1/generate",
        "post",
        _generate_op(
            "generate",
            "Generate and wait for the result",
            "GenerateRequest",
            named,
            params=[],
            images=all_images,
        ),
    )
    add(
        "/v1/jobs",
        "post",
        _submit_op("submitJob", "Submit a job", "JobRequest", named, params=[], images=all_images),
    )
    add(
        "/v1/jobs",
        "get",
        {
            "tags": ["jobs"],
            "operationId": "listJobs",
            "summary": "List jobs, newest first",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": [s.value for s in JobStatus]},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "`next_cursor` of the previous page.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_CURSOR},
                },
            ],
            "responses": {"200": _json("JobList", "A page of jobs."), **_errors(400)},
        },
    )
    add(
        "/v1/jobs/{job_id}",
        "get",
        {
            "tags": ["jobs"],
            "operationId": "getJob",
            "summary": "Get a job",
            "parameters": [_JOB_ID],
            "responses": {"200": _json("Job", "The job object."), **_errors(404)},
        },
    )
    add(
        "/v1/jobs/{job_id}",
        "delete",
        {
            "tags": ["jobs"],
            "operationId": "cancelJob",
            "summary": "Cancel a job",
            "description": "A queued job leaves ComfyUI's queue; a running one is interrupted.",
            "parameters": [_JOB_ID],
            "responses": {"200": _json("Job", "The cancelled job."), **_errors(404, 409)},
        },
    )
    batch_id = _path_param("batch_id", "The batch's id.")
    add(
        "/v1/batches",
        "post",
        {
            "tags": ["batches"],
            "operationId": "createBatch",
            "summary": "Submit a batch",
            "description": "`items` (a list of parameter objects) or `prompts` (a list of "
            "prompts), plus parameters shared by every item and optionally `template` and "
            "`cache`. Every item is validated before any runs: one bad item is a 400 whose "
            "`details.index` names it, and nothing is submitted.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "template": {"type": "string"},
                                "items": {"type": "array", "items": {"type": "object"}},
                                "prompts": {"type": "array", "items": {"type": "string"}},
                                "cache": {"type": "boolean", "default": True},
                            },
                            "additionalProperties": True,
                        },
                        "example": {"template": "solid", "items": [{"color": 0}, {"color": 255}]},
                    }
                },
            },
            "responses": {
                "202": _json(
                    "BatchCreated",
                    "The batch and its jobs.",
                    headers={"Location": _header("Location")},
                ),
                **_errors(400, 404, 413, 503),
            },
        },
    )
    add(
        "/v1/batches/{batch_id}",
        "get",
        {
            "tags": ["batches"],
            "operationId": "getBatch",
            "summary": "Get a batch",
            "parameters": [batch_id],
            "responses": {"200": _json("Batch", "Counts by state and the jobs."), **_errors(404)},
        },
    )
    add(
        "/v1/batches/{batch_id}",
        "delete",
        {
            "tags": ["batches"],
            "operationId": "cancelBatch",
            "summary": "Cancel a batch's unfinished jobs",
            "parameters": [batch_id],
            "responses": {"200": _json("Batch", "The batch after cancelling."), **_errors(404)},
        },
    )
    add(
        "/v1/batches/{batch_id}/archive",
        "get",
        {
            "tags": ["batches"],
            "operationId": "batchArchive",
            "summary": "A zip of the batch's outputs so far",
            "description": "Streamed; each file is named `<item index>-<output name>`.",
            "parameters": [batch_id],
            "responses": {"200": _file("The archive.", "application/zip"), **_errors(404)},
        },
    )
    add(
        "/v1/jobs/{job_id}/events",
        "get",
        {
            "tags": ["jobs"],
            "operationId": "jobEvents",
            "summary": "Follow a job as server-sent events",
            "description": "Events, each with one JSON `data` line: `status` (a Job, first the "
            "current state), `progress` (a Progress), `output` (an Output, one per file), and a "
            "final `done` (a Job, whatever the end state), after which the stream ends. Idle "
            "streams get a `: keep-alive` comment every 15 s.",
            "parameters": [_JOB_ID],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": {
                        "text/event-stream": {
                            "schema": {"type": "string"},
                            "example": 'event: progress\ndata: {"value":1,"max":4,"node":"3"}\n\n',
                        }
                    },
                },
                **_errors(404),
            },
        },
    )
    add(
        "/v1/outputs/{job_id}/{filename}",
        "get",
        {
            "tags": ["outputs"],
            "operationId": "getOutput",
            "summary": "Download an output file",
            "parameters": [_JOB_ID, _path_param("filename", "The output's file name.")],
            "responses": {"200": _file("The file, with its content type."), **_errors(404)},
        },
    )
    add(
        "/v1/templates",
        "get",
        {
            "tags": ["templates"],
            "operationId": "listTemplates",
            "summary": "List the templates",
            "responses": {"200": _json("TemplateList", "Every template with its parameters.")},
        },
    )
    add(
        "/v1/templates/check",
        "get",
        {
            "tags": ["templates"],
            "operationId": "checkTemplates",
            "summary": "Check every template against every backend's node list",
            "description": "Unknown node types, undeclared or missing inputs, combo values "
            "and model files a backend does not offer. Uses each backend's cached node list.",
            "responses": {"200": _json("TemplateCheck", "The problems, per backend.")},
        },
    )
    template_name = _path_param("name", "The template.", names)
    add(
        "/v1/templates/{name}",
        "get",
        {
            "tags": ["templates"],
            "operationId": "getTemplate",
            "summary": "Get a template and the JSON Schema of its parameters",
            "parameters": [template_name],
            "responses": {"200": _json("Template", "The template."), **_errors(404)},
        },
    )
    per_template = {n: {"summary": n, "value": ex} for n, ex in by_name.items()}
    any_generate = {"anyOf": [ref(f"{n}.GenerateRequest") for n in names]}
    op = _generate_op(
        "generateWithTemplate",
        "Generate with the template named in the path",
        "GenerateRequest",
        per_template,
        params=[template_name],
        images=all_images,
    )
    op["requestBody"]["content"]["application/json"]["schema"] = any_generate
    add("/v1/templates/{name}/generate", "post", op)
    any_job = {"anyOf": [ref(f"{n}.JobRequest") for n in names]}
    op = _submit_op(
        "submitJobWithTemplate",
        "Submit a job of the template named in the path",
        "JobRequest",
        per_template,
        params=[template_name],
        images=all_images,
    )
    op["requestBody"]["content"]["application/json"]["schema"] = any_job
    add("/v1/templates/{name}/jobs", "post", op)
    for template in templates:
        n = template.name
        example = {n: {"summary": n, "value": by_name[n]}}
        images = image_params[n] or None  # multipart only where there is an image to upload
        add(
            "/v1/templates/{name}/generate",
            "post",
            _generate_op(
                f"generate_{n}",
                f"Generate with {n}",
                f"{n}.GenerateRequest",
                example,
                params=[],
                images=images,
            ),
            path=f"/v1/templates/{n}/generate",
        )
        add(
            "/v1/templates/{name}/jobs",
            "post",
            _submit_op(
                f"submitJob_{n}",
                f"Submit a {n} job",
                f"{n}.JobRequest",
                example,
                params=[],
                images=images,
            ),
            path=f"/v1/templates/{n}/jobs",
        )
    add(
        "/healthz",
        "get",
        {
            "tags": ["operations"],
            "operationId": "health",
            "summary": "Liveness: 200 while the process serves",
            "responses": {"200": _json("Health", "Serving.")},
        },
    )
    add(
        "/readyz",
        "get",
        {
            "tags": ["operations"],
            "operationId": "readiness",
            "summary": "Readiness: 200 while a backend can take jobs and few enough wait",
            "responses": {
                "200": _json("Readiness", "Ready."),
                "503": _json(
                    "Readiness",
                    "No backend can take jobs, or too many jobs wait (`reason` says which).",
                    headers={"Retry-After": _header("Retry-After")},
                ),
            },
        },
    )
    add(
        "/v1/backends",
        "get",
        {
            "tags": ["operations"],
            "operationId": "listBackends",
            "summary": "The backends: health, queue, jobs in flight, latency",
            "responses": {"200": _json("BackendList", "Every backend (never its URL).")},
        },
    )
    add(
        "/metrics",
        "get",
        {
            "tags": ["operations"],
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        },
    )
    add(
        "/openapi.json",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
    )
    add(
        "/docs",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "docs",
            "summary": "Interactive documentation (Swagger UI, served by the gateway)",
            "responses": {"200": _file("The page.", "text/html")},
        },
    )
    add(
        "/docs/{filename}",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "docsAsset",
            "summary": "A file of the documentation page",
            "parameters": [_path_param("filename", "The file.", sorted(SWAGGER_FILES))],
            "responses": {"200": _file("The file."), **_errors(404)},
        },
    )
    add(
        "/",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "playground",
            "summary": "The playground: a page to try the templates",
            "responses": {"200": _file("The page.", "text/html")},
        },
    )
    add(
        "/web/{filename}",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "webAsset",
            "summary": "A file of the playground or documentation page",
            "parameters": [_path_param("filename", "The file.")],
            "responses": {"200": _file("The file."), **_errors(404)},
        },
    )
    add(
        "/v1/workflows/run",
        "post",
        {
            "tags": ["workflows"],
            "operationId": "runWorkflow",
            "summary": "Run a raw API-format workflow and wait for the result",
            "description": "For API keys with the `workflows` scope (or, with keys off, when "
            "ALLOW_RAW_WORKFLOWS is set). Every node type must be on the allowlist "
            "(RAW_WORKFLOW_NODES; the default leaves out nodes that read or write files by "
            "name or reach the network); a LoadImage node's `image` is a data: URI or an https "
            "URL, checked like an image parameter. Output nodes get the job's own "
            "filename_prefix. Runs as a job (template `workflow`); answers like "
            'POST /v1/generate, or with `"wait": false` like POST /v1/jobs (202).',
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("WorkflowRequest")}},
            },
            "responses": {
                "200": {
                    "description": "The job succeeded: its one output, or the job object.",
                    "headers": {"X-Job-Id": _header("X-Job-Id")},
                    "content": {
                        "image/*": {"schema": {"type": "string", "format": "binary"}},
                        "application/json": {"schema": ref("Job")},
                    },
                },
                "202": _json("Job", "The job, queued.", headers={"Location": _header("Location")}),
                **_errors(400, 403, 413, 415, 502, 503, 504),
            },
        },
    )
    _secure(ops)
    return ops


PUBLIC_OPERATIONS = frozenset(
    {"health", "readiness", "openapi", "docs", "docsAsset", "playground", "webAsset"}
)
ADMIN_OPERATIONS = frozenset({"listBackends", "metrics", "checkTemplates"})


def _secure(ops: list[Operation]) -> None:
    """With API keys on, every operation but the public ones may answer 401 and 429; the
    operations routes 403 for a key without the admin scope."""
    for _, _, _, operation in ops:
        op_id = operation["operationId"]
        if op_id in PUBLIC_OPERATIONS:
            operation["security"] = []
            continue
        extra = (401, 403, 429) if op_id in ADMIN_OPERATIONS else (401, 429)
        operation["responses"].update(
            {k: v for k, v in _errors(*extra).items() if k not in operation["responses"]}
        )


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
  bodies are that template's parameters (`{name}.GenerateRequest`, `{name}.JobRequest`).
- Every error has one shape, `ErrorBody`: `{"error": {"code", "message", "details"}}`.
- Every answer carries `X-Request-Id` (yours, if you sent a valid one).
"""
