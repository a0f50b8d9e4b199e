"""Typed events parsed from ComfyUI's websocket messages.

ComfyUI sends a job's messages only to the ``client_id`` that submitted it. Message types the
gateway acts on become small frozen dataclasses; everything else (``status`` aside) is ignored.
Order, as recorded from ComfyUI 0.3.75: execution_start, execution_cached, (executing,
progress*, executed?)*, execution_success | execution_error | execution_interrupted, then
``executing`` with ``node: null`` once ``/history`` has been written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    prompt_id: str


@dataclass(frozen=True)
class ExecutionStart(Event):
    pass


@dataclass(frozen=True)
class ExecutionCached(Event):
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Executing(Event):
    node: str | None = None


@dataclass(frozen=True)
class Progress(Event):
    value: int = 0
    max: int = 0
    node: str | None = None


@dataclass(frozen=True)
class Executed(Event):
    node: str = ""
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionSuccess(Event):
    pass


@dataclass(frozen=True)
class ExecutionError(Event):
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str = ""
    exception_message: str = ""


@dataclass(frozen=True)
class ExecutionInterrupted(Event):
    node_id: str | None = None


@dataclass(frozen=True)
class QueueStatus:
    """Not tied to a prompt: ComfyUI's queue length, sent on connect and on every change."""

    queue_remaining: int


def parse_message(msg: Any) -> Event | QueueStatus | None:
    """Turn one decoded JSON websocket message into an event, or None if not ours to handle."""
    if not isinstance(msg, dict):
        return None
    kind = msg.get("type")
    data = msg.get("data")
    if not isinstance(data, dict):
        return None
    if kind == "status":
        try:
            return QueueStatus(int(data["status"]["exec_info"]["queue_remaining"]))
        except (KeyError, TypeError, ValueError):
            return None
    prompt_id = data.get("prompt_id")
    if not isinstance(prompt_id, str):
        return None
    match kind:
        case "execution_start":
            return ExecutionStart(prompt_id)
        case "execution_cached":
            return ExecutionCached(prompt_id, tuple(str(n) for n in data.get("nodes") or ()))
        case "executing":
            node = data.get("node")
            return Executing(prompt_id, None if node is None else str(node))
        case "progress":
            return Progress(
                prompt_id,
                int(data.get("value") or 0),
                int(data.get("max") or 0),
                None if data.get("node") is None else str(data.get("node")),
            )
        case "executed":
            output = data.get("output")
            return Executed(
                prompt_id, str(data.get("node")), output if isinstance(output, dict) else {}
            )
        case "execution_success":
            return ExecutionSuccess(prompt_id)
        case "execution_error":
            return ExecutionError(
                prompt_id,
                None if data.get("node_id") is None else str(data.get("node_id")),
                data.get("node_type"),
                str(data.get("exception_type") or ""),
                str(data.get("exception_message") or ""),
            )
        case "execution_interrupted":
            node = data.get("node_id")
            return ExecutionInterrupted(prompt_id, None if node is None else str(node))
    return None
