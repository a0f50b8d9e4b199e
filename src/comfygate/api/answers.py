"""Job objects as JSON answers, each made once per version of its job (GET /v1/jobs/{id}).

A job read asks the store for the job's version only (``JobStore.version``: no record parsed,
no bound graph decoded); the answer for that version is made from the full record the first
time and kept, with the job's owner (which never changes) for the visibility check. Every
write of a job bumps its version, so a kept answer is byte for byte what reading and
serialising the record again gives; a job that changed is read again, one that is gone
(retention) is a 404 because its version is. Presigned output urls are made fresh for each
answer (they expire), so with ``OUTPUT_URLS=presigned`` nothing is kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from flask import Flask, Response, current_app, jsonify, request

from comfygate.api import engine, urls

EXTENSION = "comfygate.answers"
MAX_KEPT = 4096  # answers kept (about 1 KB each): the jobs being polled right now


class Kept(NamedTuple):
    owner: str | None
    body: bytes


class Answers:
    """Answers by (job id, version, path prefix), the least recently used dropped first."""

    def __init__(self, max_kept: int = MAX_KEPT) -> None:
        self.max_kept = max_kept
        self._kept: OrderedDict[tuple[str, int, str], Kept] = OrderedDict()
        self._lock = threading.Lock()  # never held over I/O or serialisation

    def get(self, key: tuple[str, int, str]) -> Kept | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
            return kept

    def put(self, key: tuple[str, int, str], kept: Kept) -> None:
        with self._lock:
            self._kept[key] = kept
            while len(self._kept) > self.max_kept:
                self._kept.popitem(last=False)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Answers()


def job(job_id: str, owner: str | None) -> Response:
    """What ``jsonify(urls.job(jobs.get(job_id, owner)))`` answers, the same bytes."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # one look-up
    gateway = app.extensions[engine.EXTENSION]
    service = gateway.jobs
    if service is None:
        service = engine.jobs()  # raises: the gateway has not started
    if gateway.settings.output_urls == "presigned":
        return jsonify(urls.job(service.get(job_id, owner)))
    version = service.store.version(job_id)
    answers: Answers = app.extensions[EXTENSION]
    prefix = request.script_root
    kept = answers.get((job_id, version, prefix)) if version is not None else None
    if kept is None or (owner is not None and kept.owner != owner):
        found = service.get(job_id, owner)  # the 404 (gone, or another owner's), or the job
        kept = Kept(found.owner, jsonify(urls.job(found, urls.Links(prefix))).get_data())
        answers.put((job_id, found.version, prefix), kept)  # its own: maybe newer
    resp: Response = app.response_class(kept.body, headers=_JSON)
    return resp


# The content type alone, given as a header: ``mimetype=`` looks up whether to add a charset.
_JSON = (("Content-Type", "application/json"),)
