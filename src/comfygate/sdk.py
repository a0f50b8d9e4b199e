"""The public Python client of a ComfyGate gateway: ``comfygate.Client``.

It speaks only the public HTTP API of docs/API.md, with ``requests`` (one pooled session,
explicit timeouts), and imports nothing of the server: a client application needs this module
and ``requests``, not Flask. (The ComfyUI protocol client is ``comfygate.comfy.client``; it
talks to ComfyUI, this one talks to a ComfyGate.)

::

    from comfygate import Client

    with Client("http://127.0.0.1:8288") as gate:
        png = gate.generate(prompt="a cat", width=64, height=64, steps=2)
        job = gate.submit("txt2img", prompt="a lighthouse")
        for event in gate.events(job.id):
            print(event.type, event.data)

Errors, one tree (every class is also exported from this module)::

    ComfyGateError                       anything this client raises on purpose
    ├── ComfyGateAPIError                the gateway answered with an error body
    │   ├── BadRequestError              400 bad_request
    │   ├── ValidationError              400 validation_error    (.field)
    │   ├── UnauthorizedError            401 unauthorized
    │   ├── NotFoundError                404 not_found
    │   ├── ConflictError                409 conflict
    │   ├── PayloadTooLargeError         413 payload_too_large
    │   ├── RateLimitedError             429 rate_limited        (.retry_after)
    │   ├── GenerationFailedError        502 generation_failed   (.node_id, .node_type)
    │   ├── BackendUnavailableError      503 backend_unavailable (.retry_after)
    │   └── GatewayTimeoutError          504 timeout             (.job_id)
    ├── ComfyGateConnectionError         the gateway could not be reached (also a ConnectionError)
    ├── ClientTimeoutError               no answer in time, or wait() ran out (also a TimeoutError)
    └── MultipleOutputsError             generate() made several files: use generate_job()
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
import urllib3

__all__ = [
    "DEFAULT_SERVER",
    "BackendUnavailableError",
    "BadRequestError",
    "Client",
    "ClientTimeoutError",
    "ComfyGateAPIError",
    "ComfyGateConnectionError",
    "ComfyGateError",
    "ConflictError",
    "Event",
    "GatewayTimeoutError",
    "GenerationFailedError",
    "Job",
    "JobError",
    "MultipleOutputsError",
    "NotFoundError",
    "Output",
    "PayloadTooLargeError",
    "Progress",
    "RateLimitedError",
    "UnauthorizedError",
    "ValidationError",
]

DEFAULT_SERVER = "http://127.0.0.1:8288"
# Ordinary calls: connecting should be quick; a read may wait on a busy gateway.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 60.0
# A synchronous generate without timeout_s waits up to the gateway's REQUEST_TIMEOUT_S
# (300 s by default), so the read must be allowed at least that long.
DEFAULT_GENERATE_WAIT_S = 300.0
# Slack on top of a server-side wait, so the gateway's own 504 arrives before our timeout.
WAIT_MARGIN_S = 15.0
# Reconnecting an event stream that dropped before `done` (a restart, a proxy cutting idle
# connections): the delay doubles up to the cap.
RECONNECT_DELAY_S = 0.5
RECONNECT_MAX_DELAY_S = 8.0
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
_CONNECTION_PREFIX = re.compile(
    r"^\w*Connection\([^)]*\): (?:Failed to establish a new connection: )?"
)


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


# --- the job object -----------------------------------------------------------------------


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Output:
    """A file a job produced; ``url`` is relative to the gateway (``/v1/outputs/...``)."""

    filename: str
    url: str
    content_type: str = "application/octet-stream"
    size: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Output:
        return cls(
            filename=str(data.get("filename", "")),
            url=str(data.get("url", "")),
            content_type=str(data.get("content_type") or "application/octet-stream"),
            size=int(data.get("size") or 0),
        )


@dataclass(frozen=True)
class Progress:
    """Sampler steps and the like: ``value`` of ``max`` on ComfyUI node ``node``."""

    value: int
    max: int
    node: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        node = data.get("node")
        return cls(
            value=int(data.get("value") or 0),
            max=int(data.get("max") or 0),
            node=None if node is None else str(node),
        )


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobError:
        details = data.get("details")
        return cls(
            code=str(data.get("code") or "error"),
            message=str(data.get("message") or ""),
            details=dict(details) if isinstance(details, Mapping) else {},
        )


@dataclass(frozen=True)
class Job:
    """The job object of API.md. ``raw`` keeps the JSON as received (fields a newer gateway
    adds are there)."""

    id: str
    status: str
    template: str
    params: dict[str, Any]
    progress: Progress | None
    outputs: list[Output]
    error: JobError | None
    cached: bool
    attempts: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    webhook: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        progress = data.get("progress")
        error = data.get("error")
        webhook = data.get("webhook")
        return cls(
            id=str(data["id"]),
            status=str(data.get("status", "")),
            template=str(data.get("template", "")),
            params=dict(data.get("params") or {}),
            progress=Progress.from_dict(progress) if isinstance(progress, Mapping) else None,
            outputs=[Output.from_dict(o) for o in data.get("outputs") or []],
            error=JobError.from_dict(error) if isinstance(error, Mapping) else None,
            cached=bool(data.get("cached", False)),
            attempts=int(data.get("attempts") or 0),
            created_at=_timestamp(data.get("created_at")),
            started_at=_timestamp(data.get("started_at")),
            finished_at=_timestamp(data.get("finished_at")),
            webhook=dict(webhook) if isinstance(webhook, Mapping) else None,
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> Self:
        """Raise the typed error recorded on a job that ended without success."""
        if self.terminal and not self.succeeded:
            err = self.error or JobError("generation_failed", f"the job ended {self.status}")
            raise api_error(err.code, err.message, {**err.details, "job_id": self.id})
        return self


@dataclass(frozen=True)
class Event:
    """One server-sent event of ``GET /v1/jobs/{id}/events``: ``type`` is ``status``,
    ``progress``, ``output`` or ``done``; ``data`` its decoded JSON."""

    type: str
    data: dict[str, Any]

    @property
    def job(self) -> Job | None:
        """The job object carried by ``status`` and ``done``."""
        return Job.from_dict(self.data) if self.type in ("status", "done") else None

    @property
    def progress(self) -> Progress | None:
        return Progress.from_dict(self.data) if self.type == "progress" else None

    @property
    def output(self) -> Output | None:
        return Output.from_dict(self.data) if self.type == "output" else None


def parse_sse(lines: Iterator[str]) -> Iterator[Event | None]:
    """Server-sent events from decoded lines (without their line ends). Yields None for a
    comment line (the gateway's keep-alive), so a caller can check a deadline on it."""
    name = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                try:
                    decoded = json.loads("\n".join(data))
                except ValueError:
                    decoded = {"text": "\n".join(data)}
                yield Event(name or "message", decoded if isinstance(decoded, dict) else {})
            name, data = "", []
            continue
        if line.startswith(":"):
            yield None
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
        # "id" and "retry" are not used by the gateway.


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            yield raw.removesuffix(b"\r").decode("utf-8", "replace")
    if buffer:
        yield buffer.removesuffix(b"\r").decode("utf-8", "replace")


# --- the client ---------------------------------------------------------------------------


class Client:
    """A client of one ComfyGate gateway.

    ``timeout`` is the read timeout of ordinary calls (seconds); ``connect_timeout`` that of
    opening a connection. Calls that wait on the gateway (``generate``, ``wait``) get longer
    read timeouts derived from what they wait for. Close it (or use ``with``) when done.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL such as {DEFAULT_SERVER}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "comfygate-sdk"
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # --- transport ------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _send(
        self,
        method: str,
        path: str,
        *,
        read_timeout: float | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """One request; an error status becomes the typed error (the response is closed)."""
        timeout = (self.connect_timeout, read_timeout if read_timeout is not None else self.timeout)
        try:
            resp = self._session.request(
                method, self._url(path), timeout=timeout, stream=stream, **kwargs
            )
        except requests.Timeout as exc:
            if isinstance(exc, requests.ConnectTimeout):
                raise self._unreachable(exc) from exc
            raise ClientTimeoutError(
                f"the gateway at {self.base_url} did not answer {method} {path} "
                f"within {timeout[1]:g} s"
            ) from exc
        except requests.ConnectionError as exc:
            raise self._unreachable(exc) from exc
        except requests.RequestException as exc:  # e.g. a body cut short
            raise self._lost(exc, f"the answer to {method} {path}", timeout[1]) from exc
        if resp.status_code >= 400:
            with resp:
                raise _error_from_response(resp)
        return resp

    def _unreachable(self, exc: Exception) -> ComfyGateConnectionError:
        reason = exc.__class__.__name__
        inner = exc.args[0] if exc.args else None
        if inner is not None and getattr(inner, "reason", None) is not None:
            # urllib3 says "HTTPConnection(host=..., port=...): Failed to establish a new
            # connection: [Errno 111] Connection refused": the URL is named already.
            reason = _CONNECTION_PREFIX.sub("", str(inner.reason))
        return ComfyGateConnectionError(
            f"cannot reach the ComfyGate gateway at {self.base_url} ({reason}); is it running?",
            self.base_url,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._send(method, path, **kwargs) as resp:
            try:
                return resp.json()
            except ValueError as exc:
                raise ComfyGateAPIError(
                    "bad_response",
                    f"{method} {path} answered {resp.status_code} with a body that is not JSON",
                    status=resp.status_code,
                ) from exc

    @staticmethod
    def _body(
        template: str | None, params: Mapping[str, Any] | None, extra: Mapping[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {**(params or {}), **extra}
        if template is not None:
            body["template"] = template
        return body

    @staticmethod
    def _job_path(job_id: str) -> str:
        return f"/v1/jobs/{quote(job_id, safe='')}"

    # --- generate -------------------------------------------------------------------------

    def generate(
        self,
        template: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        cache: bool = True,
        **kwargs: Any,
    ) -> bytes:
        """Run a template and return its one output file's bytes. Parameters come as
        keywords (``prompt="a cat"``) or as a mapping (for names that are not identifiers).
        Raises :class:`MultipleOutputsError` when the job made several files.

        If the gateway stops while this waits (a restart: 503 naming the job), the job goes
        on, and so does this call: it follows the job (reconnecting while the gateway
        restarts) and returns its file."""
        started = time.monotonic()
        try:
            resp = self._send(
                "POST",
                "/v1/generate",
                **self._generate_args(template, params, timeout_s, cache, kwargs),
            )
        except BackendUnavailableError as exc:
            job = self._follow(exc, timeout_s, started)
            if len(job.outputs) != 1:
                raise MultipleOutputsError(job) from None
            with self._send("GET", self._own_path(job.outputs[0].url)) as resp:
                return resp.content
        with resp:
            if resp.headers.get("Content-Type", "").startswith("application/json"):
                raise MultipleOutputsError(Job.from_dict(resp.json()))
            return resp.content

    def generate_job(
        self,
        template: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        cache: bool = True,
        **kwargs: Any,
    ) -> Job:
        """Run a template, wait for it, and return the job object (outputs as URLs). Like
        :meth:`generate`, follows the job if the gateway stops meanwhile."""
        started = time.monotonic()
        args = self._generate_args(template, params, timeout_s, cache, kwargs)
        args["headers"] = {"Accept": "application/json"}
        try:
            return Job.from_dict(self._json("POST", "/v1/generate", **args))
        except BackendUnavailableError as exc:
            return self._follow(exc, timeout_s, started)

    def _follow(self, exc: BackendUnavailableError, timeout_s: float | None, started: float) -> Job:
        """The end of the job a 503 names (the gateway stopped while the request waited), as
        the synchronous call would have given it; ``exc`` itself if it names none."""
        if exc.job_id is None:
            raise exc
        limit = timeout_s if timeout_s is not None else DEFAULT_GENERATE_WAIT_S
        remaining = max(0.0, limit - (time.monotonic() - started))
        return self.wait(exc.job_id, timeout_s=remaining).raise_for_status()

    def _generate_args(
        self,
        template: str | None,
        params: Mapping[str, Any] | None,
        timeout_s: float | None,
        cache: bool,
        kwargs: Mapping[str, Any],
    ) -> dict[str, Any]:
        extra: dict[str, Any] = dict(kwargs)
        if timeout_s is not None:
            extra["timeout_s"] = timeout_s
        if not cache:
            extra["cache"] = False
        wait = (timeout_s if timeout_s is not None else DEFAULT_GENERATE_WAIT_S) + WAIT_MARGIN_S
        return {
            "json": self._body(template, params, extra),
            # Anything: one output comes back as its bytes, several as the job object.
            "headers": {"Accept": "*/*"},
            "read_timeout": max(self.timeout, wait),
        }

    # --- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        template: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Job:
        """Queue a job (``POST /v1/jobs``) and return it at once. The same
        ``idempotency_key`` with the same parameters returns the same job."""
        extra: dict[str, Any] = dict(kwargs)
        if webhook_url is not None:
            extra["webhook_url"] = webhook_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        data = self._json(
            "POST", "/v1/jobs", json=self._body(template, params, extra), headers=headers
        )
        return Job.from_dict(data)

    def get(self, job_id: str) -> Job:
        return Job.from_dict(self._json("GET", self._job_path(job_id)))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; :class:`ConflictError` if it had already ended."""
        return Job.from_dict(self._json("DELETE", self._job_path(job_id)))

    def jobs(self, status: str | None = None, limit: int = 50) -> Iterator[Job]:
        """Every job, newest first, fetched ``limit`` at a time (following ``next_cursor``)."""
        cursor: str | None = None
        while True:
            query: dict[str, Any] = {"limit": limit}
            if status:
                query["status"] = status
            if cursor:
                query["cursor"] = cursor
            page = self._json("GET", "/v1/jobs", params=query)
            for item in page.get("jobs") or []:
                yield Job.from_dict(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def events(self, job_id: str) -> Iterator[Event]:
        """Follow a job as server-sent events until ``done`` (inclusive). The first event is
        the job's current ``status``. Exhaust or close the iterator to free the connection."""
        with contextlib.closing(self._stream(job_id, self.timeout)) as stream:
            for event in stream:
                if event is not None:
                    yield event

    def _stream(self, job_id: str, read_timeout: float) -> Generator[Event | None]:
        resp = self._send(
            "GET",
            f"{self._job_path(job_id)}/events",
            headers={"Accept": "text/event-stream"},
            stream=True,
            read_timeout=read_timeout,
        )
        with resp:
            # chunk_size=None: hand over each chunk as it arrives, not once 512 bytes are in.
            chunks = resp.iter_content(chunk_size=None)
            try:
                for event in parse_sse(_lines(chunks)):
                    yield event
                    if event is not None and event.type == "done":
                        return
            except requests.RequestException as exc:
                raise self._lost(exc, f"the event stream of job {job_id}", read_timeout) from exc

    def _lost(
        self, exc: requests.RequestException, what: str, read_timeout: float
    ) -> ComfyGateError:
        """An error while reading a streamed body (requests reports a read timeout there as
        a ConnectionError, and a cut connection as a ChunkedEncodingError)."""
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, urllib3.exceptions.ReadTimeoutError):
            return ClientTimeoutError(
                f"{what} sent nothing for {read_timeout:g} s (gateway at {self.base_url})"
            )
        return ComfyGateConnectionError(
            f"lost the connection to the gateway at {self.base_url} while reading {what}",
            self.base_url,
        )

    def wait(
        self,
        job_id: str,
        timeout_s: float | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> Job:
        """Block until the job ends and return it (whatever the end state: check
        ``job.succeeded`` or call ``job.raise_for_status()``). Follows the event stream, not
        polling, and hands every event to ``on_event`` (a progress bar); reconnects with
        backoff if the stream drops. :class:`ClientTimeoutError` after ``timeout_s``
        (honoured to within the gateway's keep-alive interval, 15 s)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def expired() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        delay = RECONNECT_DELAY_S
        while True:
            if expired():
                raise self._wait_timeout(job_id, timeout_s)
            read = self.timeout
            if deadline is not None:
                read = max(0.05, min(read, deadline - time.monotonic()))
            try:
                with contextlib.closing(self._stream(job_id, read)) as stream:
                    for event in stream:
                        if event is not None and on_event is not None:
                            on_event(event)
                        if event is not None and event.type == "done":
                            return Job.from_dict(event.data)
                        if expired():
                            break
            except (ComfyGateConnectionError, ClientTimeoutError, BackendUnavailableError):
                pass  # dropped, or a proxy saying the gateway is restarting: look, then retry
            if expired():
                raise self._wait_timeout(job_id, timeout_s)
            # The stream ended before `done`: the job may have ended meanwhile.
            with contextlib.suppress(ComfyGateConnectionError, ClientTimeoutError):
                job = self.get(job_id)
                if job.terminal:
                    return job
            pause = delay if deadline is None else min(delay, deadline - time.monotonic())
            if pause > 0:
                time.sleep(pause)
            delay = min(delay * 2, RECONNECT_MAX_DELAY_S)

    @staticmethod
    def _wait_timeout(job_id: str, timeout_s: float | None) -> ClientTimeoutError:
        return ClientTimeoutError(
            f"job {job_id} did not finish within {timeout_s:g} s (it goes on)", job_id
        )

    # --- templates, operations ------------------------------------------------------------

    def templates(self) -> list[dict[str, Any]]:
        """Every template: name, description and parameters as JSON Schema."""
        return list(self._json("GET", "/v1/templates").get("templates") or [])

    def template(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/templates/{quote(name, safe='')}"))

    def default_template(self) -> str:
        """The template a request without ``template`` runs (the gateway's DEFAULT_TEMPLATE)."""
        listing = self._json("GET", "/v1/templates")
        return str(listing.get("default_template") or "txt2img")

    def check_templates(self) -> dict[str, Any]:
        """Each template against each backend's node list: what is missing (node types,
        inputs, model files). ``{"backends": [{"name", "status", "templates": [...]}]}``."""
        return dict(self._json("GET", "/v1/templates/check"))

    def backends(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/backends").get("backends") or [])

    # --- outputs --------------------------------------------------------------------------

    def download(
        self, output: Output | Mapping[str, Any] | str, path: str | os.PathLike[str]
    ) -> Path:
        """Stream an output (an :class:`Output`, its dict, or its URL) to ``path``; returns the
        path. Written to a temporary name first, so a failure leaves no half file; a path that
        cannot be written fails before anything is asked of the gateway."""
        url = output.url if isinstance(output, Output) else output
        if isinstance(url, Mapping):
            url = str(url.get("url", ""))
        request_path = self._own_path(url)
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        with partial.open("wb") as fh:
            try:
                with self._send("GET", request_path, stream=True) as resp:
                    for chunk in resp.iter_content(chunk_size=64 * 1024):
                        fh.write(chunk)
            except requests.RequestException as exc:
                fh.close()
                partial.unlink(missing_ok=True)
                raise self._lost(exc, request_path, self.timeout) from exc
            except BaseException:
                fh.close()
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
        return target

    def _own_path(self, url: str) -> str:
        """The path of an output URL on this gateway. A URL naming another host is refused:
        following it would send our API key there."""
        if url.startswith("/"):
            return url
        if url.startswith(self.base_url + "/"):
            return url[len(self.base_url) :]
        raise ValueError(f"{url!r} is not an output URL of the gateway at {self.base_url}")
