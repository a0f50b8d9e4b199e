"""The public API's shapes as pydantic models: the job object, its outputs and progress, the
error body, the job list page, templates, backends, health and readiness, and the options a
generate or job body takes beside the template's parameters.

These models are what ``api/openapi.py`` turns into the OpenAPI document (with each
template's own ``request_model`` for the parameters), and the tests check the routes' real
answers against them, so the document cannot drift from what the gateway sends. Response
models allow extra fields: a client must accept fields added later.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from comfygate.errors import ComfyGateError


def _error_codes() -> list[str]:
    """Every ``code`` an error body can carry: the domain errors' and the HTTP layer's."""
    codes: list[str] = []
    pending: list[type[ComfyGateError]] = [ComfyGateError]
    while pending:
        cls = pending.pop(0)
        if cls.code not in codes:
            codes.append(cls.code)
        pending.extend(cls.__subclasses__())
    # The HTTP layer's, and a job cancelled by request.
    codes += ["method_not_allowed", "not_acceptable", "unsupported_media_type", "cancelled"]
    return sorted(set(codes))


ERROR_CODES = _error_codes()
_CODE_ENUM: list[JsonValue] = list(ERROR_CODES)


# A parameter's value: what a template parameter can hold (an image is kept by name).
ParamValue = str | int | float | bool | None


class JobStatus(StrEnum):
    """A job's status as users see it (the engine's ``submitted`` is ``queued`` here)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorInfo(_Response):
    """What went wrong: a stable code, a message for people, and the evidence."""

    # A str (a gateway may add codes), documented as the enum of the codes it has today.
    code: str = Field(
        description="A stable code: one of the enum's.",
        json_schema_extra={"enum": _CODE_ENUM},
    )
    message: str = Field(description="For people; names the field, node or job concerned.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Machine-readable evidence: `field` (validation_error); `node_id`, "
        "`node_type`, `exception_type`, `message` (generation_failed); `job_id` (timeout and "
        "failed jobs).",
    )


class ErrorBody(_Response):
    """The one shape of every error answer, on every route."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "'steps': Input should be greater than or equal to 1",
                        "details": {"field": "steps"},
                    }
                }
            ]
        }
    )
    error: ErrorInfo


class Progress(_Response):
    """Sampling progress of the node running now."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"value": 3, "max": 20, "node": "3"}]}
    )
    value: float = Field(description="Steps done.")
    max: float = Field(description="Steps in all.")
    node: str | None = Field(None, description="The workflow node reporting.")


class Output(_Response):
    """A file a job produced, kept by the gateway."""

    filename: str
    url: str = Field(description="Where to fetch it: `/v1/outputs/{job_id}/{filename}`.")
    content_type: str = Field(examples=["image/png"])
    size: int = Field(ge=0, description="Bytes.")


class WebhookDelivery(_Response):
    """Delivery state of a job's webhook."""

    delivery_id: str | None = Field(None, description="Sent as X-ComfyGate-Delivery.")
    delivered: bool
    attempts: int = Field(ge=0)
    last_error: str | None = None


class Job(_Response):
    """One run of one template with one set of parameter values."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c0b9e2d6a4c1f9a7e3b5d8c2f4a10",
                    "status": "succeeded",
                    "template": "solid",
                    "params": {"width": 64, "height": 64, "color": 16711680, "batch_size": 1},
                    "progress": None,
                    "outputs": [
                        {
                            "filename": "3-0.png",
                            "url": "/v1/outputs/6f1c0b9e2d6a4c1f9a7e3b5d8c2f4a10/3-0.png",
                            "content_type": "image/png",
                            "size": 480,
                        }
                    ],
                    "error": None,
                    "cached": False,
                    "attempts": 1,
                    "created_at": "2026-11-26T23:43:45.574Z",
                    "started_at": "2026-11-26T23:43:45.601Z",
                    "finished_at": "2026-11-26T23:43:45.712Z",
                }
            ]
        }
    )
    id: str
    status: JobStatus
    template: str
    params: dict[str, ParamValue] = Field(
        description="The values actually used (defaults and a drawn random seed filled in), "
        "so the job can be replayed exactly: the template's `{template}.Parameters`. A seed "
        "may exceed 2^53: read it as a 64-bit integer, not a double."
    )
    progress: Progress | None
    outputs: list[Output]
    error: ErrorInfo | None = Field(description="Why the job failed or was cancelled.")
    cached: bool = Field(description="The result came from the cache.")
    attempts: int = Field(ge=0, description="Submissions to ComfyUI so far.")
    batch_id: str | None = Field(None, description="The batch the job belongs to.")
    batch_index: int | None = Field(None, description="Its item's index in the batch.")
    webhook: WebhookDelivery | None = Field(
        None, description="Present when the job has a `webhook_url`."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(_Response):
    """A page of jobs, newest first."""

    jobs: list[Job]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class Template(_Response):
    """A template: its name, what it does, and its parameters as a JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(
        description="JSON Schema of the parameters (types, defaults, bounds, enums, which are "
        "required). `x-seed`: random when omitted; `x-model-folder`: a model file name, and "
        "`x-models`: the files of that folder the backends offer now."
    )


class TemplateList(_Response):
    templates: list[Template]
    default_template: str = Field(description="The template a body that names none runs.")


class TemplateProblem(_Response):
    """Something a backend would refuse in a template."""

    kind: Literal["node_type", "input", "model"]
    node_id: str
    class_type: str
    detail: str


class TemplateCheckResult(_Response):
    name: str
    ok: bool
    optional: bool = Field(
        False,
        description="The template needs models many backends lack (built-in SDXL, Flux): "
        "missing node types or models make it unavailable there, not a failure.",
    )
    problems: list[TemplateProblem]


class BackendTemplateCheck(_Response):
    """Every template checked against one backend's node list."""

    name: str
    status: Literal["healthy", "unhealthy", "recovering"]
    checked: bool = Field(description="False until the backend has sent its node list.")
    templates: list[TemplateCheckResult]
    error: str | None = Field(None, description="Why nothing was checked.")


class TemplateCheck(_Response):
    backends: list[BackendTemplateCheck]


class Backend(_Response):
    """One ComfyUI backend as the gateway sees it (never its URL)."""

    name: str
    status: Literal["healthy", "unhealthy", "recovering"] = Field(
        description="`recovering`: failing recently, given a trial job now and then."
    )
    websocket: Literal["connected", "disconnected"]
    jobs_in_flight: int = Field(ge=0, description="Jobs the gateway has handed to it.")
    queue_length: int = Field(ge=0, description="ComfyUI's own queue (running + pending).")
    last_error: str | None
    latency_ms: float | None = Field(description="Of the last health probe.")
    node_types: int = Field(ge=0, description="Node types it offers.")
    models: int | None = Field(None, ge=0, description="Model files it offers.")
    url: str | None = Field(None, description="Only when EXPOSE_BACKEND_URLS is set.")


class BackendList(_Response):
    backends: list[Backend]


class Health(_Response):
    status: Literal["ok"]


class Readiness(_Response):
    status: Literal["ready", "unavailable"]
    reason: str | None = Field(description="Why the gateway is not ready.")
    usable_backends: list[str] = Field(description="Names of the backends that can take jobs.")
    jobs_waiting: int = Field(ge=0, description="Jobs waiting in the gateway for a backend.")


class RunOptions(BaseModel):
    """Keys of a generate body besides the template's parameters."""

    timeout_s: float | None = Field(
        None,
        gt=0,
        description="Longest wait in seconds (capped by the gateway's REQUEST_TIMEOUT_S); on "
        "expiry the answer is 504 and the job is cancelled.",
    )
    cache: bool = Field(True, description="Reuse the result of an identical earlier job.")


class JobOptions(BaseModel):
    """Keys of a job body besides the template's parameters."""

    cache: bool = Field(True, description="Reuse the result of an identical earlier job.")
    webhook_url: str | None = Field(
        None,
        max_length=2048,
        json_schema_extra={"format": "uri"},
        description="http(s) URL the job object is POSTed to when the job ends, signed in "
        "X-ComfyGate-Signature (HMAC-SHA256 of the body).",
    )


class BatchCreated(_Response):
    """A batch was accepted: every item is a job of its own."""

    id: str
    jobs: list[str] = Field(description="The items' job ids, in item order.")


class Batch(_Response):
    """A batch's progress: counts by state and the job objects."""

    id: str
    template: str
    total: int = Field(ge=0)
    counts: dict[str, int] = Field(description="Jobs by status.")
    done: bool = Field(description="Every job has ended.")
    jobs: list[Job]
    archive_url: str = Field(description="A zip of the outputs so far.")


class WorkflowRequest(BaseModel):
    """Body of POST /v1/workflows/run: a raw API-format graph (ComfyUI's *Save (API
    format)*) and options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "workflow": {
                        "1": {
                            "class_type": "EmptyImage",
                            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 255},
                        },
                        "2": {
                            "class_type": "SaveImage",
                            "inputs": {"images": ["1", 0], "filename_prefix": "x"},
                        },
                    }
                }
            ]
        },
    )
    workflow: dict[str, dict[str, Any]] = Field(
        description="Node id -> {class_type, inputs}; links are [node_id, output_index]."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Longest wait (capped by REQUEST_TIMEOUT_S)."
    )
    wait: bool = Field(
        True, description="Wait for the result (like /v1/generate), or answer 202 at once."
    )


# Documented in the OpenAPI document's components (requests beside the answers).
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    WorkflowRequest,
    ErrorBody,
    BatchCreated,
    Batch,
    Job,
    JobList,
    TemplateList,
    Template,
    TemplateCheck,
    BackendList,
    Health,
    Readiness,
)
