"""The HTTP layer: Flask blueprints, request parsing, error rendering. Thin by design: it
validates and translates; the work happens in ``jobs/``. It knows nothing of ComfyUI's
protocol."""

from __future__ import annotations

from flask import Flask

from comfygate.api import (
    errors,
    generate,
    jobs,
    openapi,
    ops,
    outputs,
    template_routes,
    templates,
    web,
)


def init_app(app: Flask) -> None:
    errors.init_app(app)
    for module in (generate, jobs, outputs, templates, template_routes, ops, openapi, web):
        app.register_blueprint(module.bp)
