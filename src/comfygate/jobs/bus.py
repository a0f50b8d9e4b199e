"""The event bus behind one ``Protocol``: what wakes waiting requests and SSE streams.

``memory`` (one process) and ``redis`` (replicas: an event published by the replica that
runs a job reaches the subscribers on every replica). A late subscriber first gets the
job's current state: the last ``status`` event published for it (kept for a while after the
job ends), then every event after it.

Every implementation passes ``tests/contracts/test_event_bus_contract.py``.
"""

from __future__ import annotations

import queue
from contextlib import AbstractContextManager
from typing import Any, Protocol

JobUpdate = tuple[str, dict[str, Any]]  # (event name, payload)
# Sent to every local subscriber when the gateway stops: waiting requests and event streams
# end at once instead of holding the stop for the server's grace period.
CLOSING = "closing"
Empty = queue.Empty  # what Subscription.get raises when its timeout passes


class Subscription(Protocol):
    def get(self, timeout: float) -> JobUpdate:
        """The next update; raises ``Empty`` after ``timeout`` seconds without one."""
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
