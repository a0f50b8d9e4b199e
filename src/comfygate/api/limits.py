"""Rate limits (flask-limiter): ``RATE_LIMIT`` requests per API key, or per client address
when keys are off, counted over every route but the public ones.

Counters live in ``RATE_LIMIT_STORAGE_URI`` (default ``REDIS_URL`` when set, so replicas
share them; else in memory). If that storage fails (at start or later), counting falls back
to memory rather than failing every request, with a warning in the log, and goes back to
the storage once it answers again (flask-limiter checks it in the background). Over the
limit: 429 ``rate_limited`` in the API's error shape, with ``Retry-After`` in seconds.

Behind a reverse proxy every request comes from the proxy's address, unless
``TRUSTED_PROXIES`` says how many proxies append to ``X-Forwarded-For`` (the app factory then
takes the client address from it, werkzeug's ProxyFix; never otherwise).
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.errors import ConfigurationError

from comfygate.api import auth
from comfygate.api.clients import client_key
from comfygate.api.errors import error_response
from comfygate.config import ConfigError, Settings
from comfygate.config_load import without_password as redacted

EXTENSION = "comfygate.limiter"
# A Redis that does not answer must not hold a request for the TCP timeout (minutes): the
# limiter gives up after this and counts in memory until the storage is back.
REDIS_TIMEOUT_S = 1

log = logging.getLogger(__name__)


def _exempt() -> bool:
    return request.method == "OPTIONS" or request.endpoint in auth.PUBLIC_ENDPOINTS


def storage_options(uri: str) -> dict[str, str | int]:
    """Options for a counter storage at ``uri`` (rate limits, wrong keys): a Redis gets short
    socket timeouts, so one that does not answer never holds a request."""
    if uri.startswith("redis"):  # redis, rediss, redis+unix
        return {"socket_connect_timeout": REDIS_TIMEOUT_S, "socket_timeout": REDIS_TIMEOUT_S}
    return {}


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.rate_limit:
        return
    uri = settings.limits_storage_uri
    options = storage_options(uri)
    limiter = Limiter(
        key_func=client_key,
        application_limits=[settings.rate_limit],
        application_limits_exempt_when=_exempt,
        storage_uri=uri,
        storage_options=options,
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        key_prefix=settings.redis_prefix.rstrip(":"),  # one namespace per deployment
    )
    # Registered before the limiter's own after_request, so it runs after it (Flask runs them
    # in reverse): the limiter would otherwise rewrite Retry-After with its own rounding.
    app.after_request(_same_retry_after)
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise ConfigError(f"RATE_LIMIT_STORAGE_URI / REDIS_URL: {exc}") from None
    if not uri.startswith("memory"):
        if limiter.storage.check():
            log.info("rate-limit counters in %s", redacted(uri))
        else:
            log.warning(
                "rate-limit storage %s does not answer: counting in memory (per replica) "
                "until it does",
                redacted(uri),
            )
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _limited)


def _limited(exc: RateLimitExceeded) -> Response:
    limiter: Limiter = current_app.extensions[EXTENSION]
    current = limiter.current_limit
    window_s = exc.limit.limit.get_expiry()
    wait_s = math.ceil(current.reset_at - time.time()) if current else 1
    # Never longer than the window itself (a storage may round its reset time up).
    retry_after = min(max(1, wait_s), window_s)
    resp = error_response(
        429,
        "rate_limited",
        f"rate limit exceeded ({exc.limit.limit}); retry after {retry_after} s",
        {"limit": str(exc.limit.limit), "retry_after_s": retry_after},
    )
    g.comfygate_retry_after = retry_after
    return resp


def _same_retry_after(resp: Response) -> Response:
    """``Retry-After`` says what the 429's body says."""
    retry_after = g.get("comfygate_retry_after")
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp
