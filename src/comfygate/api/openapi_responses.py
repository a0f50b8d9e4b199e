"""The answers of the OpenAPI document (``api/openapi_paths.py``): the error responses, each
with examples, the default error answer every operation has, the headers, and the media types of
files (outputs, the archive, the pages' files), named concretely so client generators know what
to do with each.
"""

from __future__ import annotations

from typing import Any

from comfygate.storage.local import CONTENT_TYPES

REF = "#/components/schemas/{model}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


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

ERRORS: dict[int, tuple[str, str, dict[str, dict[str, Any]]]] = {
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


# The name of the answer every operation has as `default`: any error status.
DEFAULT_ERROR = "Error"

BINARY = {"type": "string", "format": "binary"}
# What an output file can be (its content type follows its extension), and
# application/octet-stream: for a file of no known kind, and the name client generators know
# binary answers by (openapi-python-client reads only it, JSON and text/*).
OUTPUT_MEDIA_TYPES = [*dict.fromkeys(CONTENT_TYPES.values()), "application/octet-stream"]


def error_responses() -> dict[str, Any]:
    """``components.responses``: one per error status, the default error, the file answers."""
    responses: dict[str, Any] = {}
    for status, (name, description, examples) in ERRORS.items():
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
            response["headers"] = {"Retry-After": header("Retry-After")}
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": "`Bearer`.",
                    "schema": {"type": "string"},
                }
            }
        responses[name] = response
    responses[DEFAULT_ERROR] = {
        "description": "Any other error: the one error body of every route (`error.code` says "
        "which; 405 `method_not_allowed`, 406 `not_acceptable`, 500 `internal_error`...).",
        "content": {"application/json": {"schema": ref("ErrorBody")}},
    }
    responses["GenerateResult"] = {
        "description": "The job succeeded. With one output and an Accept header that admits it "
        "(absent, `*/*`, its type, `image/*`, `application/octet-stream`): the file, with its "
        "content type; with `Accept: application/json`, or several outputs: the job object.",
        "headers": {"X-Job-Id": header("X-Job-Id"), "X-Seed": header("X-Seed")},
        "content": {
            **{media: {"schema": BINARY} for media in OUTPUT_MEDIA_TYPES},
            "application/json": {"schema": ref("Job")},
        },
    }
    responses["OutputFile"] = {
        "description": "The file, streamed, with the content type of its kind.",
        "content": {media: {"schema": BINARY} for media in OUTPUT_MEDIA_TYPES},
    }
    return responses


def errors(*statuses: int) -> dict[str, Any]:
    """Responses of an operation: these error statuses, and the default error answer."""
    return {
        **{str(status): response_ref(ERRORS[status][0]) for status in statuses},
        "default": response_ref(DEFAULT_ERROR),
    }


def response_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def json_response(schema_name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": ref(schema_name)}},
        **extra,
    }


def header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def path_param(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
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


def file_response(description: str, *media_types: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {media: {"schema": BINARY} for media in media_types},
    }
