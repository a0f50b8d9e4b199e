"""Requests a browser sends on behalf of some other web page are refused.

With API keys off (the default on a laptop), anyone who can make the user's browser send a
request can use the gateway: a page on the web can POST a "simple" cross-origin request
(``multipart/form-data``, no preflight), and a page whose DNS name is rebound to 127.0.0.1 can
even read the answers. Two checks, before anything else runs:

* **Host.** The ``Host`` header must be one of ``ALLOWED_HOSTS`` (by default, while the
  gateway listens on loopback only: ``localhost``, ``127.0.0.1``, ``[::1]``, any port). A
  rebound name (``rebind.evil.example``) is then a 400. ``*`` answers every host; an entry
  starting with ``.`` answers that domain and its subdomains.
* **Origin.** A state-changing request (anything but GET, HEAD and OPTIONS) that a browser
  marks as coming from another site is a 403: an ``Origin`` other than the gateway's own
  (``null`` included) and not in ``CORS_ORIGINS``, or, with no ``Origin``, a
  ``Sec-Fetch-Site`` of ``cross-site`` or ``same-site``. Clients that are not browsers send
  neither header and are not affected; the playground is same-origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from comfygate.config import Settings
from comfygate.egress import DEFAULT_PORTS
from comfygate.errors import BadRequest, Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_HOSTS_KEPT = 64


def _host_name(host_header: str) -> str:
    """The host of a Host header, lower case, without its port ('[::1]' keeps brackets)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str, allowed: list[str]) -> bool:
    if "*" in allowed:
        return True
    host = _host_name(host_header).rstrip(".")
    if not host:
        return False
    for entry in allowed:
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def init_app(app: Flask, settings: Settings) -> None:
    allowed_hosts = settings.hosts_answered
    trusted = {o for o in (_origin(x) for x in settings.cors_origins) if o is not None}

    # Host header -> answered? The few hosts clients use, decided once each (bounded: a
    # client sending random Host values only gets them decided every time).
    decided: dict[str, bool] = {}

    def guard() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy look-up
        host = req.host
        allowed = decided.get(host)
        if allowed is None:
            allowed = host_allowed(host, allowed_hosts)
            if len(decided) < MAX_HOSTS_KEPT:
                decided[host] = allowed
        if not allowed:
            raise BadRequest("this Host is not answered here (ALLOWED_HOSTS)", {"header": "Host"})
        if req.method in SAFE_METHODS:
            return
        origin = req.headers.get("Origin")
        if origin is not None:
            seen = _origin(origin)
            if seen is None or (seen != _origin(req.host_url) and seen not in trusted):
                raise Forbidden(
                    "cross-site requests are refused: this Origin is not the gateway's own "
                    "nor in CORS_ORIGINS",
                    {"header": "Origin"},
                )
            return
        if req.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
            raise Forbidden(
                "cross-site requests are refused (Sec-Fetch-Site)", {"header": "Sec-Fetch-Site"}
            )

    app.before_request(guard)
