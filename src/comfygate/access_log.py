"""The access log: one line per HTTP request, written when its answer is over (an image sent,
an event stream ended), so ``duration_ms`` is what the client waited.

Fields: ``method``, ``path`` (without the query string), ``status``, ``duration_ms``,
``key_id`` (the hash recorded as a job's owner, never the key; ``-`` with keys off) and
``client`` (the address: the proxy's, unless ``TRUSTED_PROXIES`` says otherwise). The request
id is on every line already (logs.py). ``ACCESS_LOG=false`` turns it off (a proxy in front
may log the same).

A WSGI middleware, not a Flask hook: Flask's ``call_on_close`` is lost when a file is handed
to the server's ``wsgi.file_wrapper``, and the server's own file path must stay (it sends
files without reading them through Python). What only the app knows it leaves in the environ
as it goes (the request id: app.py's first hook; the caller's key id: api/auth.py), so no
Flask hook runs for the log: an ``after_request`` hook and its ``request``/``g`` look-ups
were a tenth of a job read (docs/BENCHMARKS.md §4).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.wsgi import ClosingIterator

from comfygate.api.auth import KEY_ID
from comfygate.logs import REQUEST_ID

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("comfygate.access")
_INFO = logging.INFO


def init_app(app: Flask) -> None:
    app.wsgi_app = AccessLog(app.wsgi_app)  # type: ignore[method-assign]


def _path(environ: WSGIEnvironment) -> str:
    """``request.path``: the WSGI path (latin-1 text of the raw bytes) as UTF-8, one slash
    first, without the query string."""
    raw = environ.get("PATH_INFO") or ""
    return "/" + raw.encode("latin1").decode(errors="replace").lstrip("/")


def _write(environ: WSGIEnvironment, status: int, started: float) -> None:
    """The line, as ``log.info("request", extra=...)`` writes it, without looking for the
    caller in the stack (the record names this function, as that look-up would)."""
    if not log.isEnabledFor(_INFO):
        return
    key_id = environ.get(KEY_ID)
    record = log.makeRecord(
        log.name,
        _INFO,
        __file__,
        _LINE,
        "request",
        (),
        None,
        "_write",
        {
            "method": environ.get("REQUEST_METHOD", "-"),
            "path": _path(environ),
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "key_id": key_id if key_id not in (None, "-") else "-",
            "client": environ.get("REMOTE_ADDR") or "-",
            # Explicit: by the time a stream ends, this thread may log for another.
            "request_id": environ.get(REQUEST_ID, "-"),
        },
    )
    log.handle(record)


_LINE = _write.__code__.co_firstlineno


class AccessLog:
    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        status = [0]

        def _start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(code[:3])
            return start_response(code, headers, exc_info)

        def _done() -> None:
            _write(environ, status[0], started)

        body = self.app(environ, _start)
        # The line when the server closes the body: chained to the body's own close (no
        # iterator around it, which would cost a Python call per chunk and hide a file
        # handed to the server's file path), or around a body that has none.
        if _chain_close(body, _done):
            return body
        return ClosingIterator(body, _done)


def _chain_close(body: Any, after: Callable[[], None]) -> bool:
    """Make ``body.close()`` call ``after`` when it is done; False if it cannot be."""
    close = getattr(body, "close", None)
    if close is None:
        return False

    def _close() -> None:
        try:
            close()
        finally:
            after()

    try:
        body.close = _close
    except AttributeError:  # a type whose attributes cannot be set (slots, built-ins)
        return False
    return True
