"""Structured logging: every line carries the request id (and job id, backend when known).

``LOG_FORMAT=json`` gives one JSON object per line; ``text`` gives the same fields as
``key=value``. The request id comes from a context variable set per HTTP request, so code
deep in the stack logs it without passing it around. Never log an API key or a full prompt.

Request threads only put records on a queue (the standard library's QueueHandler, without
its lock); one thread formats and writes them, every record waiting in one write. A stream
handler writing from every thread holds its lock across the write, and under load hundreds of
request threads queued on it.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import re
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import QueueHandler
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
REQUEST_ID = "comfygate.request_id"  # the WSGI environ key of the request's id (app.py)

# Attributes every LogRecord has; anything else was passed with extra= and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # unless given with extra=
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


# Control characters (C0, DEL, C1) and Unicode line breaks: in a text log, each is written as
# an escape, so a value echoed from a request cannot end a line and start a forged one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` on one line: control characters as ``\\n``, ``\\r``, ``\\t``, ``\\x1b``..."""
    if text.isprintable():  # the common case, without the regex (no control character)
        return text
    return _CONTROL.sub(lambda m: _NAMED.get(m[0]) or f"\\x{ord(m[0]):02x}", text)


_QUOTED = re.compile(r'[ "=]')


def _value(value: object) -> str:
    """A ``key=value`` field's value, escaped, and quoted (logfmt) if it has a space."""
    text = escape(value if type(value) is str else str(value))
    if not text or _QUOTED.search(text):
        return '"' + text.replace('"', '\\"') + '"'
    return text


class TextFormatter(logging.Formatter):
    """One line per record: ``time LEVEL logger: message request_id=... key=value...``.

    Message and values are escaped (``escape``); a traceback follows on lines indented by two
    spaces, so a line that starts at the margin is always a record's first line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter``'s time, the date and clock made once per second (the log
        writer formats every request's line: ``localtime`` and ``strftime`` for each were a
        third of the line's cost)."""
        if datefmt or not self.default_msec_format:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        kept, text = self._second
        if kept != second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        record.message = message = escape(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        # The format string of __init__, written out: the one line every request makes.
        parts = [
            f"{record.asctime} {record.levelname:<7} {record.name}: {message} "
            f"request_id={_value(getattr(record, 'request_id', '-'))}"
        ]
        parts.extend(f"{k}={_value(v)}" for k, v in record.__dict__.items() if k not in _STANDARD)
        line = " ".join(parts)
        trailer = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            trailer.append(record.exc_text)
        if record.stack_info:
            trailer.append(self.formatStack(record.stack_info))
        for block in trailer:
            line += "".join(f"\n  {escape(part)}" for part in block.splitlines())
        return line


class _Handoff(QueueHandler):
    """Hands records to the writer thread as they are (one process: nothing to pickle),
    with the message made now, in the thread whose values it names."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        """``Handler.handle`` without the handler's lock: putting on a ``SimpleQueue`` is
        thread-safe already, and a lock every request thread takes (the access log's line
        is one per request) is a lock they queue on under load."""
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return rv


class _Writer:
    """The one thread that writes log lines. Each round takes every record waiting and writes
    them with one ``write`` and one ``flush``: a write per line gave up the GIL per line, and
    under load (an access-log line per request) taking it back after each one waited behind
    every request thread, the logging thread's share of a cheap route (docs/BENCHMARKS.md §4)."""

    MAX_BATCH = 1000  # records per write, at most
    GATHER_S = 0.02  # between writes: how late a line may be

    def __init__(
        self,
        records: queue.SimpleQueue[logging.LogRecord | None],
        handler: logging.StreamHandler[Any],
    ) -> None:
        self._records = records
        self._handler = handler
        self._stopping = threading.Event()  # cuts the gathering pause short
        self._thread = threading.Thread(target=self._run, name="comfygate-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self._stopping.set()
        self._records.put(None)
        self._thread.join()

    def _run(self) -> None:
        handler = self._handler
        while True:
            batch = [self._records.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._records.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for record in batch:
                if record is None:
                    continue
                try:
                    lines.append(handler.format(record) + handler.terminator)
                except Exception:
                    handler.handleError(record)
            if lines:
                try:
                    handler.stream.write("".join(lines))
                    handler.flush()
                except Exception:
                    handler.handleError(next(r for r in reversed(batch) if r is not None))
            if None in batch:
                return
            # Let the next records gather: woken for each one, this thread took the GIL from
            # a request thread once per request (and gave it back, and took it again).
            self._stopping.wait(self.GATHER_S)


_listener: _Writer | None = None


def finish() -> None:
    """Write every line queued, then stop the writer thread: at exit, and before a last
    message of the process's own (``comfygate: cannot start: ...``), which must come after
    the log lines that led to it, not between them."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(finish)


def configure(log_format: str = "text", level: str = "INFO") -> None:
    global _listener
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    handler = _Handoff(records)  # puts records; None comes only from _Writer.stop
    handler.addFilter(_ContextFilter())  # in the logging thread: its request id
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_comfygate", False):
            root.removeHandler(old)
    finish()
    _listener = _Writer(records, stream)
    _listener.start()
    handler._comfygate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "websocket", "waitress.queue"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
