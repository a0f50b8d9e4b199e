"""Operations: liveness, readiness, and the backends' state."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from comfygate.api import engine
from comfygate.errors import StorageFailed
from comfygate.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 while the job store answers, a backend is usable and the gateway's queue is not
    over its limit: a load balancer stops sending when it turns 503."""
    gateway = engine.gateway()
    pool, jobs = gateway.pool, gateway.jobs
    usable = [b.name for b in pool.backends.values() if b.usable] if pool else []
    limit = gateway.settings.ready_max_waiting
    reason = None
    waiting = 0
    try:
        gateway.store.ping()
        waiting = jobs.waiting() if jobs else 0
    except StorageFailed:
        reason = "the job store does not answer"
    if reason:
        pass
    elif not usable:
        reason = "no ComfyUI backend is available"
    elif waiting > limit:
        reason = f"{waiting} jobs are waiting (limit {limit})"
    resp = jsonify(
        {
            "status": "unavailable" if reason else "ready",
            "reason": reason,
            "usable_backends": usable,
            "jobs_waiting": waiting,
        }
    )
    if reason:
        resp.status_code = 503
        resp.headers["Retry-After"] = "5"
    return resp


@bp.get("/v1/backends")
def backends() -> Response:
    gateway = engine.gateway()
    show = gateway.settings.expose_backend_urls
    pool = gateway.pool
    return jsonify(
        {"backends": [b.status(show_url=show) for b in pool.backends.values()] if pool else []}
    )


@bp.get("/metrics")
def metrics() -> Response:
    data = engine.gateway().metrics.render()
    return Response(data, content_type=METRICS_CONTENT_TYPE)
