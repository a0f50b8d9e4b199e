"""The app factory: settings in, a ready Flask app out, its background parts started."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS

from comfygate import api, logs
from comfygate.config import Settings, load_settings
from comfygate.gateway import Gateway

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


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
    app.json.sort_keys = False  # type: ignore[attr-defined]
    gateway = Gateway(settings)
    app.extensions["comfygate"] = gateway
    if settings.cors_origins:
        CORS(
            app,
            origins=settings.cors_origins,
            expose_headers=["X-Job-Id", "X-Seed", "X-Request-Id", "Location"],
        )
    api.init_app(app)
    app.before_request(_before)
    app.after_request(_after)
    if start:
        gateway.start()
    return app


def _before() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
    g.started = time.monotonic()
    logs.request_id_var.set(g.request_id)


def _after(resp: Response) -> Response:
    resp.headers["X-Request-Id"] = g.get("request_id", "-")
    metrics = current_app.extensions["comfygate"].metrics
    route = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.requests.labels(route, request.method, str(resp.status_code)).inc()
    if "started" in g:
        metrics.request_seconds.labels(route).observe(time.monotonic() - g.started)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
