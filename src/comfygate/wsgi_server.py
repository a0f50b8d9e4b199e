"""The production WSGI server (waitress), built one way for ``comfygate serve`` and the
benchmarks alike.

What the settings are for (docs/SECURITY.md, docs/BENCHMARKS.md):

* ``threads``: every waiting request and event stream holds one;
* ``connection_limit``: waitress's default of 100 left connections unseen in the backlog;
  ``poll()`` instead of ``select()``, which cannot watch descriptors past 1023;
* ``channel_timeout`` = ``IDLE_TIMEOUT_S``: waitress closes a connection that has no request
  in progress after this (checked every ``cleanup_interval``). A connection that never sends
  a request, or stalls in the middle of its headers, no longer holds one of the
  ``connection_limit`` places for minutes; a request being answered (a long generation, an
  event stream) is never cut by it;
* ``clear_untrusted_proxy_headers``: waitress drops ``X-Forwarded-For``/``-Proto``/``-Host``
  (not ``-Prefix``) before the application sees them; with ``TRUSTED_PROXIES`` they must reach
  werkzeug's ProxyFix (comfygate/proxy.py), which believes exactly that many proxies;
* ``max_request_body_size`` = ``MAX_BODY_MB``: a larger ``Content-Length`` is refused from
  the header, before the body is read (waitress would otherwise spool up to 1 GiB of it
  before the application sees the request).

waitress answers the requests it refuses itself (413, a malformed request line, headers over
its limit, a crashed application) in text/plain; the API promises one JSON error shape on every
answer, so those go through ``JsonErrorTask``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from comfygate.config import Settings
from comfygate.errors import BadRequest, ComfyGateError, PayloadTooLarge

# waitress's own refusals, as the API's errors (the codes come from errors.py).
_ERRORS: dict[int, ComfyGateError] = {
    400: BadRequest("the request is malformed"),
    413: PayloadTooLarge("the request body is over the limit (MAX_BODY_MB)"),
    431: BadRequest("the request headers are too large"),
    500: ComfyGateError("internal error"),
}
CLEANUP_INTERVAL_S = 2


class JsonErrorTask(ErrorTask):
    """An answer of waitress's own, in the API's error shape."""

    def execute(self) -> None:
        error: Any = getattr(self.request, "error", None)  # the parser's (typed loosely)
        code = int(error.code)
        known = _ERRORS.get(code) or BadRequest(str(error.reason).lower())
        body = json.dumps({"error": known.to_dict()}, separators=(",", ":")).encode()
        self.status = f"{code} {error.reason}"
        headers: Any = self.response_headers
        headers.extend(
            [
                ("Content-Type", "application/json"),
                ("X-Content-Type-Options", "nosniff"),
                ("Cache-Control", "no-store"),
            ]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = JsonErrorTask


class NewestFirst(threading.Condition):
    """A condition whose ``notify`` wakes the thread that began waiting last.

    waitress's dispatcher wakes its idle threads first in, first out: with the 1,056 threads
    the gateway runs, every request went to the thread idle the longest, cold (its stack, the
    CPU caches, per-thread state) for each of the first thousands of requests. A model-free
    generation took 14.8 ms through the gateway with its default threads against 9.6 ms with
    32, on the same ComfyUI (docs/BENCHMARKS.md §1). Newest first, a few warm threads serve
    the requests and the others sleep until there are more at once. By hand: the standard
    library has no such condition; this uses ``Condition``'s own list of waiters, where
    ``wait`` puts each (``_waiters``, CPython's since Python 2).
    """

    def notify(self, n: int = 1) -> None:
        if not self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters  # type: ignore[attr-defined]
        while waiters and n > 0:
            waiter = waiters.pop()  # the newest
            try:
                waiter.release()
            except RuntimeError:  # released already (an interrupted notify): the next one
                continue
            n -= 1


def newest_first_dispatcher(threads: int) -> ThreadedTaskDispatcher:
    """waitress's task dispatcher with ``threads`` threads, idle ones woken newest first."""
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.queue_cv = NewestFirst(dispatcher.lock)
    dispatcher.set_thread_count(threads)
    return dispatcher


def build_server(
    app: Flask, settings: Settings, **overrides: Any
) -> BaseWSGIServer | MultiSocketServer:
    """The waitress server for ``app`` (not yet running: call ``run()``)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "threads": settings.threads,
        "connection_limit": settings.threads + 100,
        "asyncore_use_poll": True,
        "backlog": 2048,
        "ident": "comfygate",
        "channel_timeout": max(1, round(settings.idle_timeout_s)),
        "cleanup_interval": CLEANUP_INTERVAL_S,
        "max_request_body_size": settings.max_body_bytes,
        "clear_untrusted_proxy_headers": settings.trusted_proxies == 0,
        **overrides,
    }
    server = create_server(app, _dispatcher=newest_first_dispatcher(options["threads"]), **options)
    if isinstance(server, MultiSocketServer):
        for each in (server.map or {}).values():
            if isinstance(each, BaseWSGIServer):
                each.channel_class = _Channel
    else:
        server.channel_class = _Channel
    return server
