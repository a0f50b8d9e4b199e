"""GET /v1/outputs/{job_id}/{filename}: a stored output file, streamed.

Only the files recorded on the job (its ``outputs``) are served: anything else is a 404,
whatever the path tries, and whatever else lies in the job's folder (a file planted there, a
partial download) is never served."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from comfygate.api import auth, engine
from comfygate.errors import NotFound
from comfygate.storage.local import content_type

bp = Blueprint("outputs", __name__)


@bp.get("/v1/outputs/<job_id>/<path:filename>")
def output(job_id: str, filename: str) -> Response:
    gateway = engine.gateway()
    try:
        # Another key's job is as absent as a job that never was.
        job = engine.jobs().get(job_id, auth.visible_owner())
    except NotFound:
        raise NotFound("no such output", {"job_id": job_id}) from None
    recorded = any(o.filename == filename for o in job.outputs)
    path = gateway.storage.open_path(job_id, filename) if recorded else None
    if path is None:
        raise NotFound("no such output", {"job_id": job_id})
    resp = send_file(path, mimetype=content_type(filename), conditional=True, max_age=3600)
    # Outputs never change, but they are someone's: browsers may keep them, shared caches not.
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp
