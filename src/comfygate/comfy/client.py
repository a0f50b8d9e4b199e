"""HTTP client for one ComfyUI server: one connection pool, explicit timeouts on every call.

urllib3 directly, not requests (which is built on it): requests' session layer (merging
settings, environment proxies, .netrc, hooks, cookies) cost about half of each call's CPU
time, three calls per job, with nothing in it the gateway uses on a backend.

Errors come out as the gateway's domain errors: ``BackendUnreachable`` when nothing reached
ComfyUI (connection refused: safe to send elsewhere now), ``BackendConnectionLost`` when the
request may have reached it (ask ``/queue`` and ``/history`` before sending again), and
``GenerationFailed`` when ComfyUI refused the graph, with its node errors as evidence.
The gateway never forwards a browser's ``Origin``: ComfyUI answers 403 when it does not
match ``Host``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from comfygate.errors import (
    BackendConnectionLost,
    BackendUnavailable,
    BackendUnreachable,
    GenerationFailed,
    scrub,
)


@dataclass(frozen=True)
class OutputRef:
    """One file an output node reported: where ComfyUI keeps it (for ``/view``)."""

    node_id: str
    filename: str
    subfolder: str
    type: str  # "output" | "temp" | "input"
    kind: str  # the key it came under: "images", "gifs", "audio", "video"...


@dataclass(frozen=True)
class HistoryEntry:
    prompt_id: str
    status: str  # "success" | "error" | other ComfyUI status_str
    completed: bool
    outputs: list[OutputRef] = field(default_factory=list)
    error: dict[str, Any] | None = None  # node_id, node_type, message (scrubbed)
    interrupted: bool = False


@dataclass(frozen=True)
class QueueState:
    running: list[str]
    pending: list[str]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending

    def __len__(self) -> int:
        return len(self.running) + len(self.pending)


class ComfyClient:
    """Talks to one ComfyUI base URL. Thread-safe: requests' pooled session is shared."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        pool_size: int = 16,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._http = urllib3.PoolManager(
            num_pools=1,
            maxsize=pool_size,
            retries=False,  # never sent twice behind the gateway's back
            timeout=self.timeout,
            headers={"User-Agent": "comfygate"},
        )

    def close(self) -> None:
        self._http.clear()

    # --- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        try:
            return self._http.request(method, self.base_url + path, **kwargs)
        except HTTPError as exc:
            raise _domain_error(exc) from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, **kwargs)
        if resp.status >= 500:
            raise BackendUnavailable(f"ComfyUI answered {resp.status} on {path}")
        try:
            return json.loads(resp.data)
        except ValueError as exc:
            raise BackendUnavailable(f"ComfyUI answered non-JSON on {path}") from exc

    # --- routes ---------------------------------------------------------------------------

    def system_stats(self, timeout_s: float | None = None) -> dict[str, Any]:
        timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s) if timeout_s else None
        data = self._json("GET", "/system_stats", timeout=timeout or self.timeout)
        return data if isinstance(data, dict) else {}

    def object_info(self) -> dict[str, Any]:
        data = self._json("GET", "/object_info")
        return data if isinstance(data, dict) else {}

    def submit(self, graph: dict[str, Any], prompt_id: str) -> int:
        """POST /prompt with our client id and prompt id; returns ComfyUI's queue number."""
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        resp = self._request("POST", "/prompt", json=body)
        if resp.status >= 500:
            # ComfyUI answers 500 text/plain for graphs it cannot even parse.
            raise GenerationFailed("ComfyUI could not parse the workflow", {"status": resp.status})
        try:
            data = json.loads(resp.data)
        except ValueError as exc:
            raise BackendUnavailable("ComfyUI answered /prompt with non-JSON") from exc
        if resp.status != 200 or (isinstance(data, dict) and data.get("node_errors")):
            raise rejection(data)
        return int(data.get("number", 0)) if isinstance(data, dict) else 0

    def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt, or None while it is queued, running or unknown."""
        data = self._json("GET", f"/history/{prompt_id}")
        if not isinstance(data, dict) or prompt_id not in data:
            return None
        return parse_history_entry(prompt_id, data[prompt_id])

    def queue(self) -> QueueState:
        data = self._json("GET", "/queue")
        return QueueState(
            running=[str(item[1]) for item in data.get("queue_running", [])],
            pending=[str(item[1]) for item in data.get("queue_pending", [])],
        )

    def delete_from_queue(self, prompt_ids: list[str]) -> None:
        self._request("POST", "/queue", json={"delete": prompt_ids})

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt this prompt only if it is the one running (never someone else's)."""
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    def delete_history(self, prompt_ids: list[str]) -> None:
        self._request("POST", "/history", json={"delete": prompt_ids})

    @contextlib.contextmanager
    def view(self, ref: OutputRef, chunk_size: int = 256 * 1024) -> Iterator[Iterator[bytes]]:
        """Stream one output file from ``/view``."""
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        resp = self._request("GET", "/view", fields=params, preload_content=False)
        try:
            if resp.status != 200:
                raise BackendUnavailable(
                    f"ComfyUI answered {resp.status} for an output file of the job"
                )
            yield _chunks(resp, chunk_size)
            resp.release_conn()
        finally:
            resp.close()

    def upload_image(self, name: str, data: bytes, content_type: str) -> str:
        """Upload an input image; returns the name ComfyUI stored it under."""
        form = {"image": (name, data, content_type), "type": "input", "overwrite": "true"}
        result = self._json("POST", "/upload/image", fields=form)
        if not isinstance(result, dict) or "name" not in result:
            raise BackendUnavailable("ComfyUI did not accept the uploaded image")
        sub = str(result.get("subfolder") or "")
        return f"{sub}/{result['name']}" if sub else str(result["name"])


def _chunks(resp: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
    """A streamed body; a connection lost mid-file is the gateway's error, not urllib3's."""
    try:
        yield from resp.stream(chunk_size)
    except HTTPError as exc:
        raise _domain_error(exc) from exc


def _domain_error(exc: HTTPError) -> BackendUnreachable | BackendConnectionLost:
    """Whether the request never reached ComfyUI: the connection itself failed (refused, no
    route, a name that does not resolve, a connect timeout); decided by urllib3's exception
    types, never by message text. Anything else (reset, broken pipe, a read timeout) may
    have reached it."""
    cause: BaseException = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    if isinstance(cause, ConnectTimeoutError):
        return BackendUnreachable("ComfyUI did not accept the connection in time")
    if isinstance(cause, NewConnectionError):  # NameResolutionError is one too
        return BackendUnreachable("ComfyUI cannot be reached")
    if isinstance(cause, Urllib3Timeout):
        return BackendConnectionLost("ComfyUI did not answer in time")
    return BackendConnectionLost("the connection to ComfyUI was lost")


def rejection(data: Any) -> GenerationFailed:
    """Turn ComfyUI's answer to a refused /prompt into GenerationFailed with its evidence."""
    if not isinstance(data, dict):
        return GenerationFailed("ComfyUI refused the workflow", {})
    raw_error = data.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    nodes: list[dict[str, Any]] = []
    for node_id, info in (data.get("node_errors") or {}).items():
        for err in info.get("errors", []) if isinstance(info, dict) else []:
            item = {
                "node_id": str(node_id),
                "node_type": info.get("class_type"),
                "message": scrub(str(err.get("message", ""))),
            }
            if err.get("details"):
                item["input"] = scrub(str(err["details"]))
            nodes.append(item)
    message = scrub(str(error.get("message") or "ComfyUI refused the workflow"))
    details: dict[str, Any] = {"type": error.get("type")}
    if nodes:
        first = nodes[0]
        details.update(node_id=first["node_id"], node_type=first["node_type"])
        details["message"] = first["message"] + (f" ({first['input']})" if "input" in first else "")
        details["node_errors"] = nodes
        message = f"{message}: node {first['node_id']} ({first['node_type']}): {details['message']}"
    elif error.get("details"):
        details["message"] = scrub(str(error["details"]))
    return GenerationFailed(message, details)


def parse_history_entry(prompt_id: str, entry: Any) -> HistoryEntry:
    if not isinstance(entry, dict):
        return HistoryEntry(prompt_id, "error", False, error={"message": "malformed history"})
    status = entry.get("status") or {}
    outputs: list[OutputRef] = []
    for node_id, node_out in (entry.get("outputs") or {}).items():
        if not isinstance(node_out, dict):
            continue
        for kind, items in node_out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    outputs.append(
                        OutputRef(
                            str(node_id),
                            item["filename"],
                            str(item.get("subfolder") or ""),
                            str(item.get("type") or "output"),
                            str(kind),
                        )
                    )
    error: dict[str, Any] | None = None
    interrupted = False
    for message in status.get("messages") or []:
        if not (isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)):
            continue
        name, data = message
        if name == "execution_error":
            error = execution_error_details(data)
        elif name == "execution_interrupted":
            interrupted = True
    return HistoryEntry(
        prompt_id,
        str(status.get("status_str") or ("success" if status.get("completed") else "error")),
        bool(status.get("completed")),
        outputs,
        error,
        interrupted,
    )


def execution_error_details(data: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's execution_error, reduced to what a user may see (no traceback, no paths)."""
    message = scrub(str(data.get("exception_message") or "execution failed")).strip()
    return {
        "node_id": None if data.get("node_id") is None else str(data.get("node_id")),
        "node_type": data.get("node_type"),
        "exception_type": data.get("exception_type"),
        "message": message,
    }
