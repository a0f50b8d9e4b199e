"""Operations: liveness, readiness, and the backends' state."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    pool = current_app.extensions["comfygate"].pool
    healthy = [b.name for b in pool.backends.values() if b.healthy] if pool else []
    resp = jsonify({"status": "ready" if healthy else "unavailable", "healthy_backends": healthy})
    if not healthy:
        resp.status_code = 503
        resp.headers["Retry-After"] = "5"
    return resp


@bp.get("/v1/backends")
def backends() -> Response:
    pool = current_app.extensions["comfygate"].pool
    return jsonify({"backends": [b.status() for b in pool.backends.values()] if pool else []})
