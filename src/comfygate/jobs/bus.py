"""The event bus behind one ``Protocol``: what wakes waiting requests and SSE streams.

``memory`` (one process) and ``redis`` (replicas: an event published by the replica that
runs a job reaches the subscribers on every replica). A late subscriber first gets the
job's current state: the last ``status`` event published for it (kept for a while after the
job ends), then every event after it.

Every implementation passes ``tests/contracts/test_event_bus_contract.py``. ``open_bus``
picks one from the settings: ``redis`` when ``REDIS_URL`` is set, else ``memory``.
"""

from __future__ import annotations

import queue
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis

    from comfygate.config import Settings

JobUpdate = tuple[str, dict[str, Any]]  # (event name, payload)
# Sent to every local subscriber when the gateway stops: waiting requests and event streams
# end at once instead of holding the stop for the server's grace period.
CLOSING = "closing"
Empty = queue.Empty  # what Subscription.get raises when its timeout passes


# Handed by this process's watcher to a local waiter, never published: "collect this job
# yourself" (its data: {"entry": the HistoryEntry}); the waiter saves the hand-off to the
# downloads executor.
COLLECT = "collect"


class Subscription(Protocol):
    def get(self, timeout: float) -> JobUpdate:
        """The next update; raises ``Empty`` after ``timeout`` seconds without one."""
        ...

    def hand(self, update: JobUpdate) -> None:
        """An update from this process itself, not through the bus (``COLLECT``)."""
        ...


class EventBus(Protocol):
    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None: ...
    def subscribe(self, job_id: str) -> AbstractContextManager[Subscription]: ...
    def subscribers(self, job_id: str) -> int:
        """How many subscribers this job has, on every process sharing the bus."""
        ...

    def subscriber_count(self) -> int:
        """Subscribers in this process (the metric)."""
        ...

    def close(self) -> None:
        """Wake every local subscriber, now and later, with ``CLOSING``."""
        ...


def open_bus(settings: Settings, client: redis.Redis | None = None) -> EventBus:
    """The bus the settings name: ``redis`` (on ``client``, or a new ``redisconn`` client
    that the bus closes with itself) when ``REDIS_URL`` is set, else ``memory``."""
    if not settings.redis_url:
        from comfygate.jobs.memory_bus import MemoryBus

        return MemoryBus()
    from comfygate import redisconn
    from comfygate.jobs.redis_bus import RedisBus

    if client is None:
        return RedisBus(
            redisconn.connect(settings.redis_url), settings.redis_prefix, owns_client=True
        )
    return RedisBus(client, settings.redis_prefix)
