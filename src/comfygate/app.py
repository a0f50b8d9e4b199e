"""The app factory: settings in, a ready Flask app out, its background parts started."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from flask_cors import CORS

from comfygate import access_log, api, ids, logs, proxy
from comfygate.config import ConfigError, Settings
from comfygate.config_load import load_settings
from comfygate.gateway import Gateway
from comfygate.keys import KeyRing, KeySpecError
from comfygate.metrics import Metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: "$" takes a trailing "\n"
REQUEST_ID = logs.REQUEST_ID  # the environ key (the answer's header, the access log)


def create_app(
    overrides: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    config_file: str | None = None,
    start: bool = True,
    configure_logging: bool = True,
) -> Flask:
    settings = settings or load_settings(config_file, overrides)
    if configure_logging:
        logs.configure(settings.log_format, settings.log_level)
    # No /static route: the playground's files are served by api/web.py.
    app = _App("comfygate", static_folder=None)
    # "//" in a path must be a 404 like any other bad path, not a redirect to a merged one.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # multipart/form-data (image uploads): a few fields and files, not thousands.
    app.config["MAX_FORM_PARTS"] = 64
    app.json.sort_keys = False  # type: ignore[attr-defined]
    try:
        keys = KeyRing(settings.api_keys, settings.api_keys_file)
    except KeySpecError as exc:
        raise ConfigError(str(exc)) from None
    gateway = Gateway(settings)
    app.extensions["comfygate"] = gateway
    if settings.cors_origins:
        CORS(
            app,
            origins=settings.cors_origins,
            expose_headers=["X-Job-Id", "X-Seed", "X-Request-Id", "Location", "Retry-After"],
        )
    app.before_request(_before)  # first: every later hook and error logs the request id
    try:
        api.init_app(app, keys)
    except ConfigError:
        gateway.stop()  # nothing started yet: this closes the job store
        raise
    app.after_request(_counter(gateway.metrics))
    app.wsgi_app = _Headers(app.wsgi_app)  # type: ignore[method-assign]
    if settings.access_log:
        access_log.init_app(app)
    proxy.init_app(app, settings.trusted_proxies)
    if start:
        try:
            gateway.start()
        except BaseException:
            gateway.stop()  # what did start (the store, a claim on DATA_DIR, ...) ends
            raise
    return app


class _App(Flask):
    """Flask, with each hook's and view's sync check made once: ``ensure_sync`` runs for
    every hook and the view of every request, and ``inspect.iscoroutinefunction`` each time
    was ~2 µs a call, five a job read (Flask's docs: "override this method")."""

    MAX_KEPT = 1024  # functions (hooks, views, error handlers: a fixed set)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        found = self._sync.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync) < self.MAX_KEPT:
                self._sync[func] = found
        return found


def _before() -> None:
    # From the environ, not request.headers, and each proxy (request, g) looked up once: the
    # hooks of every request are the part of a cheap route's time that a bare Flask app
    # does not pay (docs/BENCHMARKS.md §4).
    environ = request.environ
    given = environ.get("HTTP_X_REQUEST_ID")
    request_id = given if given and _REQUEST_ID.fullmatch(given) else ids.request_id()
    environ[REQUEST_ID] = request_id  # for the answer's header (_Headers), the access log
    ctx = g._get_current_object()
    ctx.request_id = request_id
    ctx.started = time.monotonic()
    logs.request_id_var.set(request_id)


def _counter(metrics: Metrics) -> Callable[[Response], Response]:
    """The hook that counts every answer (route, method, status) and times it."""

    def _after(resp: Response) -> Response:
        started = getattr(g._get_current_object(), "started", None)
        req = request._get_current_object()  # type: ignore[attr-defined]
        rule = req.url_rule
        metrics.request_done(
            rule.rule if rule else "unmatched",
            req.method,
            resp.status_code,
            None if started is None else time.monotonic() - started,
        )
        return resp

    return _after


# Security headers on every answer (the pages add their Content-Security-Policy).
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_SECURITY_NAMES = frozenset(name.lower() for name, _ in _SECURITY_HEADERS)


class _Headers:
    """The headers every answer gets, added to the list the server is given: werkzeug's
    ``Headers.__setitem__`` checks each value and scans every header, and five of them were
    a tenth of a job read (docs/BENCHMARKS.md §4)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            names = {name.lower(): value for name, value in headers}
            headers.append(("X-Request-Id", environ.get(REQUEST_ID, "-")))
            if not names.keys() & _SECURITY_NAMES:  # the usual case: none set by the view
                headers.extend(_SECURITY_HEADERS)
            else:
                headers.extend(h for h in _SECURITY_HEADERS if h[0].lower() not in names)
            if names.get("content-type", "").partition(";")[0].strip() == "application/json":
                # Job objects, errors, lists: never kept by a browser or a shared cache.
                if "cache-control" in names:
                    headers[:] = [h for h in headers if h[0].lower() != "cache-control"]
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        return self.app(environ, _start)
