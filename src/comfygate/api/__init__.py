"""The HTTP layer: Flask blueprints, request parsing, error rendering. Thin by design: it
validates and translates; the work happens in ``jobs/``. It knows nothing of ComfyUI's
protocol."""

from __future__ import annotations

from flask import Flask

from comfygate.api import (
    answers,
    auth,
    auth_failures,
    batches,
    engine,
    errors,
    generate,
    jobs,
    limits,
    openapi,
    ops,
    origin,
    outputs,
    template_routes,
    templates,
    waits,
    web,
    workflows,
)
from comfygate.keys import KeyRing


def init_app(app: Flask, keys: KeyRing) -> None:
    settings = app.extensions[engine.EXTENSION].settings
    errors.init_app(app)
    # Order matters: browsers' cross-site requests go first (origin), then addresses that
    # guessed keys (auth_failures); the caller is known (auth) before its requests are
    # counted (limits).
    origin.init_app(app, settings)
    auth_failures.init_app(app, settings, keys_on=bool(keys))
    auth.init_app(app, keys)
    limits.init_app(app, settings)
    waits.init_app(app, settings)
    answers.init_app(app)
    for module in (
        generate,
        jobs,
        batches,
        outputs,
        templates,
        template_routes,
        workflows,
        ops,
        openapi,
        web,
    ):
        app.register_blueprint(module.bp)
