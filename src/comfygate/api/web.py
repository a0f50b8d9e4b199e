"""GET /: the playground page, and GET /web/{file}: its static files (``comfygate/web/``).

The pages load nothing but their own files, so they are served with a strict Content
Security Policy: no inline script or style, no other origin. ``data:`` and ``blob:`` images
are allowed for the gallery (images fetched with an API key become blob URLs) and for the
icons Swagger UI draws.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

bp = Blueprint("web", __name__)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def web_dir() -> Path:
    return Path(str(resources.files("comfygate") / "web"))


def page(filename: str) -> Response:
    """An HTML page of ``web/``, with the Content Security Policy, never cached stale."""
    resp = send_from_directory(web_dir(), filename, mimetype="text/html", max_age=0)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/")
def playground() -> Response:
    return page("index.html")


@bp.get("/web/<path:filename>")
def asset(filename: str) -> Response:
    # send_from_directory refuses any path that leaves the folder (404).
    resp = send_from_directory(web_dir(), filename, max_age=0)
    resp.headers["Cache-Control"] = "no-cache"
    return resp
