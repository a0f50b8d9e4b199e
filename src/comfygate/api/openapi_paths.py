"""The route table of the OpenAPI document: what each route takes and answers, with which
status codes and headers. The schemas it points at are generated (``api/openapi.py`` from
``api/schemas.py`` and the templates); the run routes are in ``api/openapi_runs.py``, the shared
answers (errors, files) in ``api/openapi_responses.py``; only what no model holds is written
here. Every operation has a ``default`` answer, the error body.

An operation of a route the app does not register is left out of the document, so one can be
described here before its route lands.
"""

from __future__ import annotations

from typing import Any

from comfygate.api.jobs import MAX_CURSOR_CHARS, MAX_PAGE
from comfygate.api.openapi_responses import (
    DEFAULT_ERROR,
    errors,
    file_response,
    header,
    json_response,
    path_param,
    ref,
    response_ref,
)
from comfygate.api.openapi_runs import Operation, run_operations
from comfygate.api.schemas import JobStatus as PublicStatus
from comfygate.templates.model import Template

# The Swagger UI files /docs needs, from the flask-swagger-ui package (no CDN).
SWAGGER_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-16x16.png", "favicon-32x32.png"}
)
_JOB_ID = path_param("job_id", "The job's id.")


def operations(templates: list[Template], default: str) -> list[Operation]:
    names = [t.name for t in templates]
    ops: list[Operation] = run_operations(templates, default)

    def add(route: str, method: str, operation: dict[str, Any], path: str | None = None) -> None:
        ops.append((route, path or route, method, operation))

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
                    "schema": {"type": "string", "enum": [s.value for s in PublicStatus]},
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
                    "description": "`next_cursor` of the previous page (opaque).",
                    "schema": {"type": "string", "maxLength": MAX_CURSOR_CHARS},
                },
            ],
            "responses": {"200": json_response("JobList", "A page of jobs."), **errors(400)},
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
            "responses": {"200": json_response("Job", "The job object."), **errors(404)},
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
            "responses": {"200": json_response("Job", "The cancelled job."), **errors(404, 409)},
        },
    )
    batch_id = path_param("batch_id", "The batch's id.")
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
                "202": json_response(
                    "BatchCreated",
                    "The batch and its jobs.",
                    headers={"Location": header("Location")},
                ),
                **errors(400, 404, 413, 503),
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
            "responses": {
                "200": json_response("Batch", "Counts by state and the jobs."),
                **errors(404),
            },
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
            "responses": {
                "200": json_response("Batch", "The batch after cancelling."),
                **errors(404),
            },
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
            "responses": {
                "200": file_response(
                    "The archive (`application/zip`; `application/octet-stream` names the same "
                    "bytes for generators that know binary answers only by that name).",
                    "application/zip",
                    "application/octet-stream",
                ),
                **errors(404),
            },
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
                **errors(404),
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
            "parameters": [_JOB_ID, path_param("filename", "The output's file name.")],
            "responses": {"200": response_ref("OutputFile"), **errors(404)},
        },
    )
    add(
        "/v1/templates",
        "get",
        {
            "tags": ["templates"],
            "operationId": "listTemplates",
            "summary": "List the templates",
            "responses": {
                "200": json_response("TemplateList", "Every template with its parameters.")
            },
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
            "responses": {"200": json_response("TemplateCheck", "The problems, per backend.")},
        },
    )
    template_name = path_param("name", "The template.", names)
    add(
        "/v1/templates/{name}",
        "get",
        {
            "tags": ["templates"],
            "operationId": "getTemplate",
            "summary": "Get a template and the JSON Schema of its parameters",
            "parameters": [template_name],
            "responses": {"200": json_response("Template", "The template."), **errors(404)},
        },
    )
    add(
        "/healthz",
        "get",
        {
            "tags": ["operations"],
            "operationId": "health",
            "summary": "Liveness: 200 while the process serves",
            "responses": {"200": json_response("Health", "Serving.")},
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
                "200": json_response("Readiness", "Ready."),
                "503": json_response(
                    "Readiness",
                    "No backend can take jobs, or too many jobs wait (`reason` says which).",
                    headers={"Retry-After": header("Retry-After")},
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
            "responses": {"200": json_response("BackendList", "Every backend (never its URL).")},
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
            "responses": {"200": file_response("The page.", "text/html")},
        },
    )
    add(
        "/docs/{filename}",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "docsAsset",
            "summary": "A file of the documentation page",
            "parameters": [path_param("filename", "The file.", sorted(SWAGGER_FILES))],
            "responses": {
                "200": file_response("The file.", "text/css", "text/javascript", "image/png"),
                **errors(404),
            },
        },
    )
    add(
        "/",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "playground",
            "summary": "The playground: a page to try the templates",
            "responses": {"200": file_response("The page.", "text/html")},
        },
    )
    add(
        "/web/{filename}",
        "get",
        {
            "tags": ["documentation"],
            "operationId": "webAsset",
            "summary": "A file of the playground or documentation page",
            "parameters": [path_param("filename", "The file.")],
            "responses": {
                "200": file_response(
                    "The file.", "text/javascript", "text/css", "text/html", "image/svg+xml"
                ),
                **errors(404),
            },
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
                "200": response_ref("GenerateResult"),
                "202": json_response(
                    "Job", "The job, queued.", headers={"Location": header("Location")}
                ),
                **errors(400, 403, 413, 415, 502, 503, 504),
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
    operations routes 403 for a key without the admin scope. Every operation may answer the
    error body (``default``)."""
    for _, _, _, operation in ops:
        op_id = operation["operationId"]
        operation["responses"].setdefault("default", response_ref(DEFAULT_ERROR))
        if op_id in PUBLIC_OPERATIONS:
            operation["security"] = []
            continue
        extra = (401, 403, 429) if op_id in ADMIN_OPERATIONS else (401, 429)
        operation["responses"].update(
            {k: v for k, v in errors(*extra).items() if k not in operation["responses"]}
        )
