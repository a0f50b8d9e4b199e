"""The job: its fields, its status enum and every allowed transition, in one module.

    queued ──> running ──> succeeded
      │  ^        │──────> failed
      │  └────────┘ (resubmitted after its backend lost it)
      └──────────────────> cancelled / failed  (also from running)

A queued job may already be on a ComfyUI backend (``prompt_id`` set, in ComfyUI's queue);
it becomes ``running`` when ComfyUI starts executing it.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"  # prompt id recorded, POST /prompt sent; users see "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def public(self) -> str:
        """The status users see: ``submitted`` is still ``queued`` to them."""
        return JobStatus.QUEUED.value if self is JobStatus.SUBMITTED else self.value


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
        }
    ),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
        }
    ),
    JobStatus.SUBMITTED: frozenset(),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def now() -> float:
    return datetime.now(UTC).timestamp()


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Output:
    filename: str
    content_type: str
    size: int
    node_id: str = ""
    kind: str = "images"


@dataclass
class Job:
    template: str
    params: dict[str, Any]
    graph: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: JobStatus = JobStatus.QUEUED
    progress: dict[str, Any] | None = None
    outputs: list[Output] = field(default_factory=list)
    error: dict[str, Any] | None = None
    cached: bool = False
    attempts: int = 0
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    deadline_at: float | None = None
    webhook_url: str | None = None
    webhook: dict[str, Any] | None = None  # delivery state: delivered, attempts, last_error
    # Where it runs: never shown to users.
    backend: str | None = None
    prompt_id: str | None = None
    submitted_at: float | None = None
    # Who made it: a hash of the API key (keys.owner_id), never the key; None with keys off.
    owner: str | None = None
    # Input images (gateway-made names), kept under DATA_DIR/inputs/<id>/, uploaded to the
    # backend before each submission.
    inputs: list[str] = field(default_factory=list)
    cache_key: str | None = None  # set when the result is determined (cacheable)
    batch_id: str | None = None
    batch_index: int | None = None
    # Kept by the store, not in the record: every write bumps ``version`` (the ledger's
    # compare-and-set), ``holder`` is the process holding the job's lease.
    version: int = 0
    holder: str | None = None

    def move_to(self, status: JobStatus) -> None:
        """The one place a status changes; the caller writes the job to the store next."""
        if status not in _ALLOWED[self.status]:
            raise IllegalTransition(f"job {self.id}: {self.status} -> {status}")
        self.status = status
        if status is JobStatus.RUNNING and self.started_at is None:
            self.started_at = now()
        if status.terminal:
            self.finished_at = now()

    @property
    def on_backend(self) -> bool:
        return self.prompt_id is not None and not self.status.terminal

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict. Shallow: ``dataclasses.asdict`` deep-copied the whole graph on
        every write (a sixth of a cache hit's time, and of every progress update)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _STORE_KEPT}
        data["status"] = self.status.value
        data["outputs"] = [asdict(o) for o in self.outputs]
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any], version: int = 0, holder: str | None = None) -> Job:
        data = {k: v for k, v in data.items() if k not in _STORE_KEPT}
        data["version"], data["holder"] = version, holder
        data["status"] = JobStatus(data["status"])
        data["outputs"] = [Output(**o) for o in data.get("outputs") or []]
        return cls(**data)

    def public(self, prefix: str = "") -> dict[str, Any]:
        """The job object of API.md (no backend URL, no graph). ``prefix``: the path the
        gateway is served under behind a proxy (output urls carry it)."""
        return {
            "id": self.id,
            "status": self.status.public,
            "template": self.template,
            "params": self.params,
            "progress": self.progress,
            "outputs": [
                {
                    "filename": o.filename,
                    "url": f"{prefix}/v1/outputs/{self.id}/{o.filename}",
                    "content_type": o.content_type,
                    "size": o.size,
                }
                for o in self.outputs
            ],
            "error": self.error,
            "cached": self.cached,
            "attempts": self.attempts,
            **({"webhook": self.webhook} if self.webhook_url else {}),
            **(
                {"batch_id": self.batch_id, "batch_index": self.batch_index}
                if self.batch_id
                else {}
            ),
            "created_at": rfc3339(self.created_at),
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
        }


_STORE_KEPT = frozenset({"version", "holder"})


@dataclass
class Delivery:
    """One webhook delivery: the job object as it was when the job ended, and how its
    sending goes. A record in the store (the outbox), so a restart neither loses nor
    restarts it; its id is the same on every attempt (receivers drop duplicates by it)."""

    job_id: str
    url: str
    body: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "pending"  # pending, delivered, failed
    attempts: int = 0
    next_attempt_at: float | None = 0.0
    last_error: str | None = None

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Delivery:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def public(self) -> dict[str, Any]:
        """What the job shows as ``webhook``."""
        return {
            "delivery_id": self.id,
            "delivered": self.state == "delivered",
            "attempts": self.attempts,
            "last_error": self.last_error,
        }
