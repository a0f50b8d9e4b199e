"""Behind a reverse proxy (docs/DEPLOY.md): ``TRUSTED_PROXIES`` proxies in front.

With ``TRUSTED_PROXIES=n > 0`` the WSGI app is wrapped in werkzeug's ``ProxyFix``: the client
address (rate limits, the access log), scheme, host and path prefix come from the last ``n``
entries of ``X-Forwarded-For``/``-Proto``/``-Host``/``-Prefix``. With 0 (the default) those
headers are ignored: anyone can send them, so believing them without a proxy that overwrites
them would let a client pick its own address and escape a per-address limit.

Under a path prefix (``X-Forwarded-Prefix: /comfygate``) every URL Flask builds carries it;
a ``Location`` header that a route wrote as an absolute path gets it too.
"""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask, trusted_proxies: int) -> None:
    if trusted_proxies <= 0:
        return
    n = trusted_proxies
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n
    )
    app.after_request(_prefixed_location)


def _prefixed_location(resp: Response) -> Response:
    prefix = request.script_root
    location = resp.headers.get("Location")
    if (
        prefix
        and location
        and location.startswith("/")
        and not location.startswith("//")
        and not location.startswith(prefix + "/")
    ):
        resp.headers["Location"] = prefix + location
    return resp
