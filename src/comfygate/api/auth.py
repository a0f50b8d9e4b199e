"""Authentication: with API keys configured, every route but the public ones needs one.

A key is accepted in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` only (never in
the query string, which ends up in logs and browser history). No key or a wrong one: 401
``unauthorized`` with ``WWW-Authenticate: Bearer``. A key without the ``admin`` scope on an
operations route: 403 ``forbidden``. Public routes: /healthz and /readyz (for load balancers
and orchestrators), /openapi.json, /docs and its files, the playground at / and /web/* (static
files that hold no data; the playground asks for a key itself). Everything else without a
valid key is a 401 alike, whatever the method (OPTIONS too) and whether the route exists or
not: an unauthenticated client learns nothing about which routes there are. The one
exception is a CORS preflight (OPTIONS with ``Origin`` and ``Access-Control-Request-Method``)
from an origin in ``CORS_ORIGINS``: browsers never send credentials on them, so it is answered
200 without a key, the same empty answer on every path (flask-cors adds its headers).

The caller is ``g.principal`` (``keys.Principal``): the owner recorded on the jobs it makes,
and the owner it may see (``visible_owner``: None for admin keys and when keys are off).
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from comfygate.api import engine
from comfygate.errors import Forbidden, Unauthorized
from comfygate.keys import OPEN, KeyRing, Principal

EXTENSION = "comfygate.keys"
KEY_ID = "comfygate.key_id"  # the WSGI environ key of the caller's key id (the access log)

PUBLIC_ENDPOINTS = frozenset(
    {
        "ops.healthz",
        "ops.readyz",
        "openapi.openapi_json",
        "openapi.docs",
        "openapi.docs_asset",
        "web.playground",
        "web.asset",
    }
)
# Operations routes: they show the deployment (backends, load, node lists), not one's jobs.
ADMIN_ENDPOINTS = frozenset({"ops.backends", "ops.metrics", "templates.check_templates"})


def init_app(app: Flask, keys: KeyRing) -> None:
    app.extensions[EXTENSION] = keys
    app.before_request(authenticate)


def keys_enabled() -> bool:
    return bool(current_app.extensions[EXTENSION])


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None


def _allowed_preflight() -> bool:
    """A browser's CORS preflight from an origin CORS_ORIGINS names."""
    origin = request.headers.get("Origin")
    if request.method != "OPTIONS" or not origin:
        return False
    if not request.headers.get("Access-Control-Request-Method"):
        return False
    allowed = engine.settings().cors_origins
    return "*" in allowed or origin in allowed


def authenticate() -> Response | None:
    keys: KeyRing = current_app.extensions[EXTENSION]
    if not keys:
        g.principal = OPEN
        return None
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy look-up
    if req.endpoint in PUBLIC_ENDPOINTS:
        g.principal = None
        return None
    if _allowed_preflight():
        g.principal = None
        # The same empty 200 on every path, known or not: flask-cors adds the CORS headers.
        return Response(status=200)
    token = presented_key()
    principal = keys.identify(token) if token is not None else None
    if principal is None:
        raise Unauthorized(
            "an API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key'"
            if token is None
            else "the API key is not valid"
        )
    g.principal = principal
    req.environ[KEY_ID] = principal.owner  # for the access log's line
    if req.endpoint in ADMIN_ENDPOINTS and not principal.admin:
        raise Forbidden("this route needs an API key with the 'admin' scope")
    return None


def principal() -> Principal:
    """The caller (OPEN when keys are off; a public route's caller counts as no one)."""
    found: Principal | None = g.get("principal")
    return found if found is not None else Principal("-", frozenset())


def creating_owner() -> str | None:
    """The owner to record on what this request makes (None when keys are off)."""
    return principal().owner


def visible_owner() -> str | None:
    """Whose jobs this caller may see: None means everyone's (admin key, or keys off)."""
    return principal().sees
