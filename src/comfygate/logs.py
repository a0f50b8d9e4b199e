"""Structured logging: every line carries the request id (and job id, backend when known).

``LOG_FORMAT=json`` gives one JSON object per line; ``text`` gives the same fields as
``key=value``. The request id comes from a context variable set per HTTP request, so code
deep in the stack logs it without passing it around. Never log an API key or a full prompt.

Request threads only put records on a queue; one thread writes them (the standard library's
QueueHandler and QueueListener). A stream handler writing from every thread holds its lock
across the write, and under load hundreds of request threads queued on it.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else was passed with extra= and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        rid = getattr(record, "request_id", "-")
        return f"{line} request_id={rid}" + (f" {extra}" if extra else "")


class _Handoff(QueueHandler):
    """Hands records to the writer thread as they are (one process: nothing to pickle),
    with the message made now, in the thread whose values it names."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        return record


_listener: QueueListener | None = None


def _stop_listener() -> None:
    """Write what is queued, then stop the writer thread (also at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(_stop_listener)


def configure(log_format: str = "text", level: str = "INFO") -> None:
    global _listener
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _Handoff(records)
    handler.addFilter(_ContextFilter())  # in the logging thread: its request id
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_comfygate", False):
            root.removeHandler(old)
    _stop_listener()
    _listener = QueueListener(records, stream)
    _listener.start()
    handler._comfygate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "websocket", "waitress.queue"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
