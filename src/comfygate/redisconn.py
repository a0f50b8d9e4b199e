"""Redis connections, made in one place for everything the replicas share through it (the
event bus, the job store): short timeouts, health checks, retries with backoff, and one
mapping of "Redis is not there" to ``StorageFailed`` (503 ``backend_unavailable`` with
``Retry-After``).

Retries: a command that fails with a connection error or a timeout is sent again, up to
``RETRIES`` times with exponential backoff, on a new connection. A timeout after the command
was sent may mean Redis ran it: a write that must not run twice checks its own effect (a
compare-and-set, a Lua script that tests before it sets).

Never log the URL as given: ``describe(url)`` hides its password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from comfygate.config_load import without_password
from comfygate.errors import StorageFailed

# A Redis that does not accept the connection is given up on after this.
CONNECT_TIMEOUT_S = 2.0
# A command with no answer after this fails (the pub/sub listener reads with its own timeout).
SOCKET_TIMEOUT_S = 5.0
# A pooled connection idle this long is PINGed before it is used again (a dead one is
# replaced instead of failing the command); the pub/sub connection is PINGed this often.
HEALTH_CHECK_INTERVAL_S = 10
# Connection errors and timeouts retried per command, with backoff from BACKOFF_BASE_S
# doubling up to BACKOFF_CAP_S: a Redis that restarts in under a second is not an error.
RETRIES = 3
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
# Connections one process may hold (every request thread may run a command at once, and the
# engine's own threads beside them): redis-py's own pool refuses the 101st at once, which
# looked like "Redis is unavailable" under load. Past the limit, a command waits this long
# for a connection to come free.
MAX_CONNECTIONS = 1100
POOL_WAIT_S = 5.0
# What a request is told to wait before it tries again while Redis is unreachable.
RETRY_AFTER_S = 5

# The errors that mean "Redis cannot do it now" rather than "this is a bug": no connection,
# no answer in time, a replica that refuses writes, a Redis out of memory.
UNAVAILABLE: tuple[type[redis.RedisError], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)


def connect(
    url: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    socket_timeout_s: float = SOCKET_TIMEOUT_S,
    health_check_interval_s: int = HEALTH_CHECK_INTERVAL_S,
    retries: int = RETRIES,
    max_connections: int = MAX_CONNECTIONS,
) -> redis.Redis:
    """A client (a connection pool) for ``url`` (redis://, rediss://, unix://). Nothing is
    sent until it is used, so a Redis that is down now does not stop the caller. The pool
    blocks (up to ``POOL_WAIT_S``) rather than fail when all its connections are busy."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_keepalive=True,
        health_check_interval=health_check_interval_s,
        retry=Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return redis.Redis(connection_pool=pool)


def describe(url: str) -> str:
    """``url`` as it may be logged: its password replaced by ``***``."""
    return without_password(url)


def unavailable(what: str) -> StorageFailed:
    """The error for a request that needed Redis while it was unreachable; ``what`` says what
    was being done ("reading a job"). Names no address and no password."""
    return StorageFailed(
        f"the shared state (Redis) is unavailable while {what}; try again shortly",
        retry_after_s=RETRY_AFTER_S,
    )


@contextmanager
def as_storage_failed(what: str) -> Iterator[None]:
    """Turn Redis being unreachable inside the block into ``StorageFailed`` (the original
    error is kept as ``__cause__`` for the log). Other Redis errors pass unchanged: they are
    bugs, not outages."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise unavailable(what) from exc
