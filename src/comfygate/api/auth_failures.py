"""Wrong API keys are rate-limited per client address (``AUTH_FAILURE_LIMIT``, default
20 a minute), so keys can not be guessed at the speed of the server.

``RATE_LIMIT`` can not do this: it counts per key, after authentication, and a wrong key never
gets that far. So every 401 to a request that presented a key is counted here against the
client's address (behind trusted proxies, the forwarded one), and past the limit a request
from that address that presents a key gets 429 ``rate_limited`` with ``Retry-After`` before
its key is even looked at. Valid keys and requests without a key are not counted.

The counting is the ``limits`` library's (the one flask-limiter uses), in the same storage as
the rate limits (Redis when ``REDIS_URL`` is set, so replicas share it). A storage that fails
means counting in this process's memory until it answers again, never a failed request.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from comfygate.api import auth
from comfygate.api.clients import address_key
from comfygate.api.limits import storage_options
from comfygate.config import ConfigError, Settings
from comfygate.errors import RateLimited

log = logging.getLogger(__name__)

EXTENSION = "comfygate.auth_failures"


class AuthFailures:
    def __init__(self, limit: RateLimitItem, storage: Storage) -> None:
        self.limit = limit
        self._storage = storage
        self._memory = MemoryStorage()
        self._window = FixedWindowRateLimiter(storage)
        self._fallback = FixedWindowRateLimiter(self._memory)

    def _run(self, what: str, key: str) -> bool:
        try:
            return bool(getattr(self._window, what)(self.limit, "authfail", key))
        except Exception as exc:  # any storage failure: count in memory instead
            log.warning("failed-authentication counter storage failed: %s", type(exc).__name__)
            return bool(getattr(self._fallback, what)(self.limit, "authfail", key))

    def check(self, key: str) -> None:
        if self._run("test", key):
            return
        try:
            reset = self._window.get_window_stats(self.limit, "authfail", key).reset_time
        except Exception:
            reset = time.time() + self.limit.get_expiry()
        retry_after = min(max(1, math.ceil(reset - time.time())), self.limit.get_expiry())
        raise RateLimited(
            f"too many requests with a wrong API key from this address ({self.limit}); "
            f"retry after {retry_after} s",
            {"limit": str(self.limit), "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

    def failed(self, key: str) -> None:
        self._run("hit", key)


def init_app(app: Flask, settings: Settings, keys_on: bool) -> None:
    if not keys_on:
        return
    uri = settings.limits_storage_uri
    storage = storage_from_string(uri, **storage_options(uri))
    if not isinstance(storage, Storage):  # an async+ URI: not for a WSGI server
        raise ConfigError(f"RATE_LIMIT_STORAGE_URI / REDIS_URL {uri!r} is not a sync storage")
    failures = AuthFailures(parse(settings.auth_failure_limit), storage)
    app.extensions[EXTENSION] = failures

    # Only requests that present a key count, and are stopped: a request without one guesses
    # nothing (it gets its 401 anyway), and a keyless probe must not lock out the keyed
    # clients behind the same address. Public routes stay open (load balancers probe /healthz).
    def before() -> None:
        if request.endpoint not in auth.PUBLIC_ENDPOINTS and auth.presented_key() is not None:
            failures.check(address_key())

    def after(resp: Response) -> Response:
        if resp.status_code == 401 and auth.presented_key() is not None:
            failures.failed(address_key())
        return resp

    app.before_request(before)
    app.after_request(after)
