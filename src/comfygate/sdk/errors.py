"""The SDK's errors, one tree (drawn in ``comfygate.sdk``'s docstring), and how an error
answer of the gateway becomes one of them."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from comfygate.sdk.models import Job

# --- errors -------------------------------------------------------------------------------


class ComfyGateError(Exception):
    """The root of every error this client raises on purpose."""


class ComfyGateAPIError(ComfyGateError):
    """The gateway answered with the error body of API.md: ``{"error": {code, message,
    details}}``. ``request_id`` is the gateway's ``X-Request-Id``, to find it in its log."""

    code: str

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.status = status or 0
        self.retry_after = retry_after
        self.request_id = request_id

    @property
    def job_id(self) -> str | None:
        value = self.details.get("job_id")
        return value if isinstance(value, str) else None


class BadRequestError(ComfyGateAPIError):
    """400 bad_request: the body is not a JSON object, or the content type is wrong."""


class ValidationError(ComfyGateAPIError):
    """400 validation_error: a parameter is missing, mistyped, out of range or unknown."""

    @property
    def field(self) -> str | None:
        value = self.details.get("field")
        return value if isinstance(value, str) else None


class UnauthorizedError(ComfyGateAPIError):
    """401 unauthorized: no API key, or a wrong one."""


class NotFoundError(ComfyGateAPIError):
    """404 not_found: no such template, job or output."""


class ConflictError(ComfyGateAPIError):
    """409 conflict: e.g. cancelling a job that has ended."""


class PayloadTooLargeError(ComfyGateAPIError):
    """413 payload_too_large."""


class RateLimitedError(ComfyGateAPIError):
    """429 rate_limited; ``retry_after``: seconds the gateway asked to wait, if it said."""


class GenerationFailedError(ComfyGateAPIError):
    """502 generation_failed: ComfyUI refused the workflow or failed running it; ``details``
    carry its evidence."""

    @property
    def node_id(self) -> str | None:
        value = self.details.get("node_id")
        return None if value is None else str(value)

    @property
    def node_type(self) -> str | None:
        value = self.details.get("node_type")
        return value if isinstance(value, str) else None


class BackendUnavailableError(ComfyGateAPIError):
    """503 backend_unavailable: no healthy ComfyUI; ``retry_after`` says when to try again."""


class GatewayTimeoutError(ComfyGateAPIError):
    """504 timeout: a synchronous wait ran out on the gateway; ``job_id`` names the job."""


class ComfyGateConnectionError(ComfyGateError, builtins.ConnectionError):
    """The gateway could not be reached (refused, DNS, TLS, reset); names its base URL."""

    def __init__(self, message: str, base_url: str) -> None:
        super().__init__(message)
        self.base_url = base_url


class ClientTimeoutError(ComfyGateError, builtins.TimeoutError):
    """No answer within the client's timeout, or ``wait()`` ran out (``job_id`` set: the job
    goes on, on the gateway)."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class MultipleOutputsError(ComfyGateError):
    """``generate()`` returns one file, but the job made several: they are on ``job``."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"job {job.id} made {len(job.outputs)} outputs; use generate_job() to get them all"
        )
        self.job = job


# code -> (class, the status the gateway sends it with)
ERROR_CLASSES: dict[str, tuple[type[ComfyGateAPIError], int]] = {
    "bad_request": (BadRequestError, 400),
    "validation_error": (ValidationError, 400),
    "unauthorized": (UnauthorizedError, 401),
    "not_found": (NotFoundError, 404),
    "conflict": (ConflictError, 409),
    "payload_too_large": (PayloadTooLargeError, 413),
    "rate_limited": (RateLimitedError, 429),
    "generation_failed": (GenerationFailedError, 502),
    "backend_unavailable": (BackendUnavailableError, 503),
    "timeout": (GatewayTimeoutError, 504),
}
# For an answer that is not the gateway's error body (a proxy's own error page).
_CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    502: "bad_gateway",
    503: "backend_unavailable",
    504: "timeout",
}


def api_error(
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    status: int | None = None,
    *,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> ComfyGateAPIError:
    """The typed error for an error code; the base class for codes it does not know."""
    cls, default_status = ERROR_CLASSES.get(code, (ComfyGateAPIError, 0))
    return cls(
        code,
        message,
        details,
        status if status is not None else default_status,
        retry_after=retry_after,
        request_id=request_id,
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough not to parse


def _error_from_response(resp: requests.Response) -> ComfyGateAPIError:
    status = resp.status_code
    retry_after = _retry_after(resp.headers.get("Retry-After"))
    request_id = resp.headers.get("X-Request-Id")
    try:
        data = resp.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = error.get("details")
        return api_error(
            error["code"],
            str(error.get("message") or error["code"]),
            details if isinstance(details, dict) else {},
            status,
            retry_after=retry_after,
            request_id=request_id,
        )
    # Not the gateway's error body: a proxy in between answered.
    text = " ".join(resp.text.split())[:200] if resp.text else ""
    message = f"HTTP {status} {resp.reason or ''}".strip() + (f": {text}" if text else "")
    code = _CODE_BY_STATUS.get(status, "http_error")
    return api_error(code, message, {}, status, retry_after=retry_after, request_id=request_id)
