"""Rate limits (flask-limiter): ``RATE_LIMIT`` requests per API key, or per client address
when keys are off, counted over every route but the public ones.

Counters live in ``RATE_LIMIT_STORAGE_URI`` (default ``REDIS_URL`` when set, so replicas
share them; else in memory). If that storage fails, counting falls back to memory rather
than failing every request. Over the limit: 429 ``rate_limited`` in the API's error shape,
with ``Retry-After`` in seconds.

Behind a reverse proxy every request comes from the proxy's address: with keys off, the
limit is then shared by all clients (docs/SECURITY.md says how to deal with that).
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.errors import ConfigurationError

from comfygate.api import auth
from comfygate.api.errors import error_response
from comfygate.config import ConfigError, Settings

EXTENSION = "comfygate.limiter"


def _key() -> str:
    owner = auth.principal().owner
    if owner is not None and owner != "-":
        return f"key:{owner}"
    return f"addr:{request.remote_addr or '-'}"


def _exempt() -> bool:
    return request.method == "OPTIONS" or request.endpoint in auth.PUBLIC_ENDPOINTS


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.rate_limit:
        return
    limiter = Limiter(
        key_func=_key,
        application_limits=[settings.rate_limit],
        application_limits_exempt_when=_exempt,
        storage_uri=settings.limits_storage_uri,
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        key_prefix="comfygate",
    )
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise ConfigError(f"RATE_LIMIT_STORAGE_URI / REDIS_URL: {exc}") from None
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _limited)


def _limited(exc: RateLimitExceeded) -> Response:
    limiter: Limiter = current_app.extensions[EXTENSION]
    current = limiter.current_limit
    retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
    resp = error_response(
        429,
        "rate_limited",
        f"rate limit exceeded ({exc.limit.limit}); retry after {retry_after} s",
        {"limit": str(exc.limit.limit), "retry_after_s": retry_after},
    )
    resp.headers["Retry-After"] = str(retry_after)
    return resp
