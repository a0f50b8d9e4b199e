"""One error hierarchy for the whole gateway, with the HTTP mapping data on each class.

Parts raise these domain errors; only ``api/`` turns them into responses (one Flask error
handler renders the JSON body of API.md). Messages and details must never carry a ComfyUI
URL, a filesystem path of the gateway or a traceback.

    ComfyGateError                      500 internal_error
    ├── BadRequest                      400 bad_request
    ├── ValidationFailed                400 validation_error   (details.field)
    ├── Unauthorized                    401 unauthorized       (WWW-Authenticate: Bearer)
    ├── Forbidden                       403 forbidden
    ├── NotFound                        404 not_found
    ├── Conflict                        409 conflict
    ├── PayloadTooLarge                 413 payload_too_large
    ├── UnsupportedMediaType            415 unsupported_media_type
    ├── RateLimited                     429 rate_limited       (Retry-After)
    ├── GenerationFailed                502 generation_failed  (node_id, node_type, message)
    ├── BackendUnavailable              503 backend_unavailable (Retry-After)
    │   ├── BackendUnreachable          (no connection: nothing sent, safe to send elsewhere)
    │   ├── BackendConnectionLost       (lost after sending: ComfyUI may have the request)
    │   └── GatewayStopping             (this gateway is stopping; the job goes on)
    └── Timeout                         504 timeout            (details.job_id)
"""

from __future__ import annotations

import re
from typing import Any, ClassVar


class ComfyGateError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.headers: dict[str, str] = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(ComfyGateError):
    status = 400
    code = "bad_request"


class ValidationFailed(ComfyGateError):
    status = 400
    code = "validation_error"

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, field: str | None = None
    ) -> None:
        if field is not None:
            details = {"field": field, **(details or {})}
        super().__init__(message, details)


class Unauthorized(ComfyGateError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ComfyGateError):
    """The caller is known but may not do this (a scope it lacks, a feature turned off)."""

    status = 403
    code = "forbidden"


class NotFound(ComfyGateError):
    status = 404
    code = "not_found"


class Conflict(ComfyGateError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ComfyGateError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ComfyGateError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(ComfyGateError):
    status = 429
    code = "rate_limited"


class GenerationFailed(ComfyGateError):
    """ComfyUI refused the graph or its execution failed; carries ComfyUI's evidence."""

    status = 502
    code = "generation_failed"


class BackendUnavailable(ComfyGateError):
    status = 503
    code = "backend_unavailable"

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, retry_after_s: int = 5
    ) -> None:
        super().__init__(message, details, headers={"Retry-After": str(retry_after_s)})


class BackendUnreachable(BackendUnavailable):
    """The connection was refused or never made: the request did not reach ComfyUI."""


class BackendConnectionLost(BackendUnavailable):
    """The connection failed after the request was sent: ComfyUI may have acted on it."""


class GatewayStopping(BackendUnavailable):
    """The gateway is stopping (SIGTERM) while a request waits on a job: the job is kept and
    goes on after the restart, or on another replica."""


class StorageFailed(BackendUnavailable):
    """The output storage (a directory, S3) or the shared state (Redis) could not be read
    or written: a 503 with ``Retry-After`` to a request; a job's collection is retried."""


class Timeout(ComfyGateError):
    status = 504
    code = "timeout"


# Absolute POSIX paths of two or more components, and Windows drive paths: what ComfyUI's
# messages leak (its output folder, the Python files in a traceback).
_PATH = re.compile(r"(?:[A-Za-z]:\\|/)(?:[^\s/\\'\"]+[/\\])+[^\s/\\'\",:)]*")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove URLs and filesystem paths from a message that came from ComfyUI."""
    text = _URL.sub("<url>", text)
    return _PATH.sub("<path>", text)


def from_code(code: str, message: str, details: dict[str, Any] | None = None) -> ComfyGateError:
    """Rebuild the domain error recorded on a job (its ``error.code``)."""
    if code == "cancelled":  # a job cancelled while a request waited on it: not a failure
        return Conflict(message, details)
    classes: tuple[type[ComfyGateError], ...] = (
        BadRequest,
        ValidationFailed,
        NotFound,
        Conflict,
        GenerationFailed,
        BackendUnavailable,
        Timeout,
    )
    for cls in classes:
        if cls.code == code:
            return cls(message, details)
    return GenerationFailed(message, details)
