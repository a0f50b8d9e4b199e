"""The SDK's view of the gateway's objects: the job object, its outputs, progress and error,
and the server-sent events of a job's stream."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from comfygate.sdk.errors import api_error

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

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
