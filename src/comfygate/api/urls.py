"""URLs in answers carry the path prefix the gateway is served under (behind a trusted
reverse proxy that sends ``X-Forwarded-Prefix``: ``request.script_root``), so a client can
follow a job's output urls through the proxy as they are. Without a trusted proxy the prefix
is empty. Webhook payloads are made without a request and keep root paths."""

from __future__ import annotations

from typing import Any

from flask import request

from comfygate.jobs.ledger import VERSION
from comfygate.jobs.model import Job


def prefix() -> str:
    return request.script_root


def job(found: Job, base: str | None = None) -> dict[str, Any]:
    """The public job object, its urls under this request's prefix (or ``base``: a streamed
    answer runs outside the request, so it takes the prefix along)."""
    return found.public(prefix() if base is None else base)


def event(kind: str, data: dict[str, Any] | None, base: str) -> dict[str, Any] | None:
    """An event's data (made by jobs/, without a request) with its urls under ``base``, and
    without the engine's own fields (a status event's version)."""
    if data is not None and VERSION in data:
        data = {k: v for k, v in data.items() if k != VERSION}
    if not base or data is None:
        return data
    if kind == "output" and str(data.get("url", "")).startswith("/"):
        return {**data, "url": base + data["url"]}
    if kind in ("status", "done") and data.get("outputs"):
        outputs = [
            {**o, "url": base + o["url"]} if str(o.get("url", "")).startswith("/") else o
            for o in data["outputs"]
        ]
        return {**data, "outputs": outputs}
    return data
