"""The public Python client of a ComfyGate gateway: ``comfygate.Client``.

It speaks only the public HTTP API of docs/API.md, with ``requests`` (one pooled session,
explicit timeouts), and imports nothing of the server: a client application needs this module
and ``requests``, not Flask. (The ComfyUI protocol client is ``comfygate.comfy.client``; it
talks to ComfyUI, this one talks to a ComfyGate.)

::

    from comfygate import Client

    with Client("http://127.0.0.1:8288") as gate:
        png = gate.generate("a cat", width=64, height=64, steps=2)
        job = gate.submit("a lighthouse", template="txt2img", steps=4)
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

import contextlib
import os
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
import urllib3

from comfygate.sdk.errors import (
    BackendUnavailableError,
    BadRequestError,
    ClientTimeoutError,
    ComfyGateAPIError,
    ComfyGateConnectionError,
    ComfyGateError,
    ConflictError,
    GatewayTimeoutError,
    GenerationFailedError,
    MultipleOutputsError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthorizedError,
    ValidationError,
    _error_from_response,
)
from comfygate.sdk.models import Event, Job, JobError, Output, Progress, _lines, parse_sse

# A presigned S3 url (SigV4 query authentication): what the gateway gives as an output's url
# with OUTPUT_URLS=presigned.
_PRESIGNED = re.compile(r"https?://[^?#]+\?(?:[^#]*&)?X-Amz-Signature=")


def _presigned(url: str) -> bool:
    return _PRESIGNED.match(url) is not None


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
_CONNECTION_PREFIX = re.compile(
    r"^\w*Connection\([^)]*\): (?:Failed to establish a new connection: )?"
)


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
        template: str | None,
        prompt: str | None,
        params: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {**(params or {}), **extra}
        if prompt is not None:
            if "prompt" in body:
                raise TypeError("the prompt is given twice (as the first argument and in params)")
            body["prompt"] = prompt
        if template is not None:
            body["template"] = template
        return body

    @staticmethod
    def _job_path(job_id: str) -> str:
        return f"/v1/jobs/{quote(job_id, safe='')}"

    # --- generate -------------------------------------------------------------------------

    def generate(
        self,
        prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        template: str | None = None,
        timeout_s: float | None = None,
        cache: bool = True,
        **kwargs: Any,
    ) -> bytes:
        """Run a template and return its one output file's bytes: ``generate("a cat")`` runs
        the default template with that prompt; ``template="solid"`` names another. Parameters
        come as keywords (``steps=4``) or as a mapping (for names that are not identifiers).
        Raises :class:`MultipleOutputsError` when the job made several files.

        If the gateway stops while this waits (a restart: 503 naming the job), the job goes
        on, and so does this call: it follows the job (reconnecting while the gateway
        restarts) and returns its file."""
        started = time.monotonic()
        try:
            resp = self._send(
                "POST",
                "/v1/generate",
                **self._generate_args(template, prompt, params, timeout_s, cache, kwargs),
            )
        except BackendUnavailableError as exc:
            job = self._follow(exc, timeout_s, started)
            if len(job.outputs) != 1:
                raise MultipleOutputsError(job) from None
            with self._get_output(job.outputs[0].url) as resp:
                return resp.content
        with resp:
            if resp.headers.get("Content-Type", "").startswith("application/json"):
                raise MultipleOutputsError(Job.from_dict(resp.json()))
            return resp.content

    def generate_job(
        self,
        prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        template: str | None = None,
        timeout_s: float | None = None,
        cache: bool = True,
        **kwargs: Any,
    ) -> Job:
        """Run a template, wait for it, and return the job object (outputs as URLs). Like
        :meth:`generate`, follows the job if the gateway stops meanwhile."""
        started = time.monotonic()
        args = self._generate_args(template, prompt, params, timeout_s, cache, kwargs)
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
        prompt: str | None,
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
            "json": self._body(template, prompt, params, extra),
            # Anything: one output comes back as its bytes, several as the job object.
            "headers": {"Accept": "*/*"},
            "read_timeout": max(self.timeout, wait),
        }

    # --- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        template: str | None = None,
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
            "POST", "/v1/jobs", json=self._body(template, prompt, params, extra), headers=headers
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
        request_path = url if _presigned(url) else self._own_path(url)
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        with partial.open("wb") as fh:
            try:
                with self._get_output(url, stream=True) as resp:
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

    def _get_output(self, url: str, *, stream: bool = False) -> requests.Response:
        """GET an output: through the gateway, or (the gateway set OUTPUT_URLS=presigned) its
        presigned storage url, which is its own authority: sent without the API key, so the
        storage's host never sees it."""
        if not _presigned(url):
            return self._send("GET", self._own_path(url), stream=stream)
        timeout = (self.connect_timeout, self.timeout)
        headers = {"User-Agent": "comfygate-sdk"}
        try:
            resp = requests.get(url, timeout=timeout, stream=stream, headers=headers)
        except requests.RequestException as exc:
            raise ComfyGateConnectionError(
                f"cannot fetch the output from its presigned url ({type(exc).__name__})",
                self.base_url,
            ) from exc
        if resp.status_code >= 400:
            with resp:
                raise ComfyGateError(
                    f"the storage refused the output's presigned url ({resp.status_code}): "
                    "it may have expired; get the job again for a fresh one"
                )
        return resp

    def _own_path(self, url: str) -> str:
        """The path of an output URL on this gateway. A URL naming another host is refused:
        following it would send our API key there."""
        if url.startswith("/"):
            return url
        if url.startswith(self.base_url + "/"):
            return url[len(self.base_url) :]
        raise ValueError(f"{url!r} is not an output URL of the gateway at {self.base_url}")
