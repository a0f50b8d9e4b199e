"""URLs in answers, made from the engine's root paths (``/v1/outputs/<job>/<file>``).

They carry the path prefix the gateway is served under (behind a trusted reverse proxy that
sends ``X-Forwarded-Prefix``: ``request.script_root``), so a client can follow a job's
output urls through the proxy as they are; without a trusted proxy the prefix is empty.
With ``OUTPUT_URLS=presigned`` an output's url is instead a presigned GET url of the storage
(S3), made fresh for each answer and valid ``PRESIGN_EXPIRES_S``. Webhook payloads are made
without a request and keep root paths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import request

from comfygate.api import engine
from comfygate.jobs.ledger import VERSION
from comfygate.jobs.model import Job
from comfygate.storage.base import OutputStorage

# The url the engine gives an output (jobs/model.py): the group and name of the stored file.
_OUTPUT = re.compile(r"/v1/outputs/([0-9a-f]{32})/([^/?#]+)")


def prefix() -> str:
    return request.script_root


@dataclass(frozen=True)
class Links:
    """How this request's answers write urls; taken along by a stream that outlives the
    request (an event stream runs outside it)."""

    base: str
    presign: OutputStorage | None = None
    expires_s: int = 0

    def output(self, url: str) -> str:
        """An output's url as the client gets it."""
        if self.presign is not None and (found := _OUTPUT.fullmatch(url)):
            signed = self.presign.presigned_url(found[1], found[2], self.expires_s)
            if signed is not None:
                return signed
        return self.base + url if url.startswith("/") else url

    def outputs(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**o, "url": self.output(str(o.get("url", "")))} for o in outputs]


def links() -> Links:
    """This request's ``Links``."""
    settings = engine.settings()
    if settings.output_urls == "presigned":
        return Links(prefix(), engine.storage(), settings.presign_expires_s)
    return Links(prefix())


def job(found: Job, base: Links | None = None) -> dict[str, Any]:
    """The public job object, its urls made for this request (or by ``base``: a streamed
    answer runs outside the request, so it takes its ``Links`` along)."""
    made = base or links()
    public = found.public()
    return {**public, "outputs": made.outputs(public["outputs"])}


def event(kind: str, data: dict[str, Any] | None, base: Links) -> dict[str, Any] | None:
    """An event's data (made by jobs/, without a request) with its urls made by ``base``,
    and without the engine's own fields (a status event's version)."""
    if data is not None and VERSION in data:
        data = {k: v for k, v in data.items() if k != VERSION}
    if data is None:
        return data
    if kind == "output" and "url" in data:
        return {**data, "url": base.output(str(data["url"]))}
    if kind in ("status", "done") and data.get("outputs"):
        return {**data, "outputs": base.outputs(data["outputs"])}
    return data
