"""The app factory: settings in, a ready Flask app out, its background parts started."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS

from comfygate import access_log, api, logs, proxy
from comfygate.config import ConfigError, Settings, load_settings
from comfygate.gateway import Gateway
from comfygate.keys import KeyRing, KeySpecError

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: "$" takes a trailing "\n"


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
    app = Flask("comfygate", static_folder=None)
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
    app.after_request(_after)
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


def _before() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    g.started = time.monotonic()
    logs.request_id_var.set(g.request_id)


def _after(resp: Response) -> Response:
    resp.headers["X-Request-Id"] = g.get("request_id", "-")
    metrics = current_app.extensions["comfygate"].metrics
    route = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.requests.labels(route, request.method, str(resp.status_code)).inc()
    if "started" in g:
        metrics.request_seconds.labels(route).observe(time.monotonic() - g.started)
    # Security headers on every answer (the pages add their Content-Security-Policy).
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if resp.mimetype == "application/json":
        # Job objects, errors, lists: never kept by a browser or a shared cache.
        resp.headers["Cache-Control"] = "no-store"
    return resp
