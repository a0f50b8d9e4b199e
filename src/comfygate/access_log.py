"""The access log: one line per HTTP request, written when its answer is over (an image sent,
an event stream ended), so ``duration_ms`` is what the client waited.

Fields: ``method``, ``path`` (without the query string), ``status``, ``duration_ms``,
``key_id`` (the hash recorded as a job's owner, never the key; ``-`` with keys off) and
``client`` (the address: the proxy's, unless ``TRUSTED_PROXIES`` says otherwise). The request
id is on every line already (logs.py). ``ACCESS_LOG=false`` turns it off (a proxy in front
may log the same).

A WSGI middleware, not a Flask hook: Flask's ``call_on_close`` is lost when a file is handed
to the server's ``wsgi.file_wrapper`` (outputs, cache hits), and the server's own file path
must stay (it sends files without reading them through Python).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from werkzeug.wsgi import ClosingIterator

from comfygate.api import auth

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("comfygate.access")
_FIELDS = "comfygate.access"  # the environ key where the app leaves what only it knows


def init_app(app: Flask) -> None:
    app.after_request(_note)
    app.wsgi_app = AccessLog(app.wsgi_app)  # type: ignore[method-assign]


def _note(resp: Response) -> Response:
    owner = auth.principal().owner
    request.environ[_FIELDS] = {
        "path": request.path,
        "key_id": owner if owner not in (None, "-") else "-",
        "request_id": g.get("request_id", "-"),
    }
    return resp


class AccessLog:
    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        status: list[int] = []

        def _start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(int(code.split(" ", 1)[0]))
            return start_response(code, headers, exc_info)

        def _write() -> None:
            noted = environ.get(_FIELDS) or {}
            log.info(
                "request",
                extra={
                    "method": environ.get("REQUEST_METHOD", "-"),
                    "path": noted.get("path", environ.get("PATH_INFO", "-")),
                    "status": status[-1] if status else 0,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "key_id": noted.get("key_id", "-"),
                    "client": environ.get("REMOTE_ADDR") or "-",
                    # Explicit: by the time a stream ends, this thread may log for another.
                    "request_id": noted.get("request_id", "-"),
                },
            )

        body = self.app(environ, _start)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            _chain_close(body, _write)  # keep the server's file path: no wrapping iterator
            return body
        return ClosingIterator(body, _write)


def _chain_close(body: Any, after: Callable[[], None]) -> None:
    close = getattr(body, "close", None)

    def _close() -> None:
        try:
            if close is not None:
                close()
        finally:
            after()

    body.close = _close
