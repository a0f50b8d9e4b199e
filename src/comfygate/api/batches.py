"""Batches: many parameter sets of one template in one call, an archive of their outputs."""

from __future__ import annotations

import contextlib
import zipfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from comfygate.api import auth, engine, urls
from comfygate.api.body import bool_field, json_object
from comfygate.errors import Conflict, NotFound, ValidationFailed
from comfygate.jobs.model import Job, JobStatus
from comfygate.templates import RESERVED_KEYS

bp = Blueprint("batches", __name__)

ARCHIVE_CHUNK = 256 * 1024


def _items(body: dict[str, Any], limit: int) -> tuple[str, list[dict[str, Any]], bool]:
    settings = engine.settings()
    template = body.get("template", settings.default_template)
    if not isinstance(template, str) or not template:
        raise ValidationFailed("'template' must be a template name", field="template")
    cache = bool_field(body, "cache", True)
    shared = {k: v for k, v in body.items() if k not in RESERVED_KEYS | {"items", "prompts"}}
    if ("items" in body) == ("prompts" in body):
        raise ValidationFailed(
            "give either 'items' (a list of parameter objects) or 'prompts'", field="items"
        )
    if "items" in body:
        items = body["items"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValidationFailed("'items' must be a list of objects", field="items")
        items = [{**shared, **item} for item in items]
    else:
        prompts = body["prompts"]
        if not isinstance(prompts, list):
            raise ValidationFailed("'prompts' must be a list of strings", field="prompts")
        items = [{**shared, "prompt": p} for p in prompts]
    field = "items" if "items" in body else "prompts"
    if not items:
        raise ValidationFailed(f"'{field}' is empty", field=field)
    if len(items) > limit:
        raise ValidationFailed(
            f"a batch holds at most {limit} items ({len(items)} given)", field=field
        )
    return template, items, cache


def _batch(batch_id: str) -> tuple[dict[str, Any], list[Job]]:
    gateway = engine.gateway()
    batch = gateway.store.get_batch(batch_id)
    sees = auth.visible_owner()
    if batch is None or (sees is not None and batch.get("owner") != sees):
        # Another key's batch is as unknown as a batch that does not exist.
        raise NotFound(f"no batch with id '{batch_id}'", {"batch_id": batch_id})
    jobs = []
    for job_id in batch["jobs"]:
        with contextlib.suppress(NotFound):  # swept by retention
            jobs.append(engine.jobs().get(job_id))
    return batch, jobs


def _public(batch: dict[str, Any], jobs: list[Job]) -> dict[str, Any]:
    counts = Counter(j.status.value for j in jobs)
    return {
        "id": batch["id"],
        "template": batch["template"],
        "total": len(batch["jobs"]),
        "counts": {s.value: counts.get(s.value, 0) for s in JobStatus},
        "done": all(j.status.terminal for j in jobs),
        "jobs": [urls.job(j) for j in jobs],
        "archive_url": f"{urls.prefix()}/v1/batches/{batch['id']}/archive",
    }


@bp.post("/v1/batches")
def create() -> Response:
    gateway = engine.gateway()
    template, items, cache = _items(json_object(), gateway.settings.max_batch_items)
    batch_id, jobs = engine.jobs().create_batch(
        template, items, cache=cache, owner=auth.creating_owner()
    )
    resp = jsonify({"id": batch_id, "jobs": [j.id for j in jobs]})
    resp.status_code = 202
    resp.headers["Location"] = f"/v1/batches/{batch_id}"
    return resp


@bp.get("/v1/batches/<batch_id>")
def get(batch_id: str) -> Response:
    return jsonify(_public(*_batch(batch_id)))


@bp.delete("/v1/batches/<batch_id>")
def cancel(batch_id: str) -> Response:
    _, jobs = _batch(batch_id)
    for job in jobs:
        if not job.status.terminal:
            with contextlib.suppress(Conflict):  # it ended meanwhile
                engine.jobs().cancel(job.id)
    return jsonify(_public(*_batch(batch_id)))


class _Pipe:
    """A write-only file for zipfile whose bytes are taken out as they are written, so the
    archive streams instead of being built in memory (zipfile handles unseekable output)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


@bp.get("/v1/batches/<batch_id>/archive")
def archive(batch_id: str) -> Response:
    storage = engine.storage()
    batch, jobs = _batch(batch_id)
    files = []
    for job in jobs:
        index = job.batch_index if job.batch_index is not None else batch["jobs"].index(job.id)
        for output in job.outputs:
            files.append((f"{index:04d}-{output.filename}", job.id, output.filename))
    # The first file is opened before the answer starts: a storage that cannot be read is a
    # 503 then, not an archive cut short.
    first = storage.open(files[0][1], files[0][2]) if files else None

    def stream() -> Iterator[bytes]:
        pipe = _Pipe()
        # PNG, JPEG and video are compressed already: store, do not deflate again.
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as zf:
            for i, (name, job_id, filename) in enumerate(files):
                opened = first if i == 0 else storage.open(job_id, filename)
                if opened is None:  # swept meanwhile
                    continue
                big = opened.size >= zipfile.ZIP64_LIMIT  # zipfile must know before writing
                with opened, zf.open(name, "w", force_zip64=big) as entry:
                    for chunk in opened.chunks(ARCHIVE_CHUNK):
                        entry.write(chunk)
                        yield pipe.take()
                yield pipe.take()
        yield pipe.take()

    resp = Response(
        stream(),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'},
    )
    if first is not None:
        resp.call_on_close(first.close)  # the stream may never start (a HEAD)
    return resp
