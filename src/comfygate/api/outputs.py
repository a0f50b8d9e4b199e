"""GET /v1/outputs/{job_id}/{filename}: a stored output file, streamed from the storage
(a local file, or S3: any replica serves any job's outputs).

Only the files recorded on the job (its ``outputs``) are served: anything else is a 404,
whatever the path tries, and whatever else lies in the job's folder (a file planted there, a
partial download) is never served."""

from __future__ import annotations

from flask import Blueprint, Response

from comfygate.api import auth, engine, stored
from comfygate.errors import NotFound

bp = Blueprint("outputs", __name__)


@bp.get("/v1/outputs/<job_id>/<path:filename>")
def output(job_id: str, filename: str) -> Response:
    try:
        # Another key's job is as absent as a job that never was.
        job = engine.jobs().get(job_id, auth.visible_owner())
    except NotFound:
        raise NotFound("no such output", {"job_id": job_id}) from None
    recorded = any(o.filename == filename for o in job.outputs)
    opened = engine.storage().open(job_id, filename) if recorded else None
    if opened is None:
        raise NotFound("no such output", {"job_id": job_id})
    resp = stored.answer(opened)
    # Outputs never change, but they are someone's: browsers may keep them, shared caches not.
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp
