"""The ``redis`` event bus: job updates published by the replica that runs a job reach the
subscribers on every replica, over Redis pub/sub.

Shape, per process: ONE pub/sub connection and ONE listener thread. A job's channel
(``<prefix>events:<job id>``) is subscribed when its first local subscriber arrives and
unsubscribed after the last one leaves; the listener hands each message to that job's
local subscriber queues. Nothing polls: the listener blocks on the socket, and a thread
that needs it (a new channel, one to drop) wakes it by publishing on this process's control
channel (``<prefix>bus:<random id>``).

Publishing is one Lua script, so it is atomic (jobs/numbered.py): it numbers the job's
event, keeps it as the job's last status when it is a ``status`` (in the hash
``<prefix>last-status:<job id>``, which expires ``LAST_STATUS_TTL_S`` after the job's last
event, ``DONE_TTL_S`` after its ``done``) and PUBLISHes it.

A late subscriber: its channel is subscribed FIRST (the listener waits for Redis to confirm
it), then the last status is read and given first; the live events that arrived meanwhile
are held, and only those numbered after the last status follow. So nothing is lost between
the subscription and the read, and nothing is given twice or out of order.

Redis going away:

- The listener reconnects with backoff (redis-py resubscribes its channels); once a channel
  is confirmed again, its subscribers are given the job's last status if it changed
  meanwhile. Other events published while Redis was down are lost (pub/sub keeps nothing):
  a waiter must still re-read the job from the store when its ``get(timeout)`` runs out.
- ``publish`` never raises: the event is logged (once per outage) and dropped, and for
  ``PUBLISH_PAUSE_S`` after a failure further events are dropped at once instead of each
  holding the engine's thread for the connection retries (~0.7 s on a refused connection).
- ``subscribe`` raises ``StorageFailed`` (503 ``backend_unavailable``, ``Retry-After``) when
  Redis cannot be reached, or does not confirm the subscription within
  ``subscribe_timeout_s``. Subscriptions made before the outage stay and recover.

``subscribers(job_id)`` is exact for this process, plus one for every other process that
has at least one subscriber (Redis counts connections: ``PUBSUB NUMSUB``). So it is 0 exactly
when nobody, anywhere, follows the job: the question the engine asks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, cast

import redis
from redis.client import PubSub

from comfygate import redisconn
from comfygate.jobs.bus import Empty, Subscription
from comfygate.jobs.memory_bus import DONE_TTL_S
from comfygate.jobs.numbered import PUBLISH_SCRIPT, NumberedEvent, NumberedQueue

# The last status of a job that is still moving is kept this long after its last event
# (the store still has the job; this only serves late subscribers).
LAST_STATUS_TTL_S = 86_400
# A subscription Redis does not confirm within this is refused (StorageFailed).
SUBSCRIBE_TIMEOUT_S = 5.0
# The listener's longest blocking read: how late it notices a subscriber that left.
LISTEN_TIMEOUT_S = 1.0
# The listener's reconnect backoff: from the first to the longest pause.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
# After a failed publish, further events are dropped at once for this long.
PUBLISH_PAUSE_S = 1.0

log = logging.getLogger(__name__)


class RedisBus:
    """The ``EventBus`` over Redis pub/sub (see the module docstring).

    ``client`` is a ``redisconn.connect`` client; it is closed with the bus only when
    ``owns_client``. Every key and channel starts with ``prefix`` (REDIS_PREFIX)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "comfygate:",
        *,
        owns_client: bool = False,
        status_ttl_s: int = LAST_STATUS_TTL_S,
        done_ttl_s: int = int(DONE_TTL_S),
        subscribe_timeout_s: float = SUBSCRIBE_TIMEOUT_S,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("RedisBus reads bytes: give it a redisconn.connect client")
        self._client = client
        self._owns_client = owns_client
        self._base = f"{prefix}events:".encode()  # + job id: its channel
        self._keys = f"{prefix}last-status:".encode()  # + job id: its hash
        self._control = f"{prefix}bus:{uuid.uuid4().hex}".encode()
        self._ttls = (status_ttl_s, done_ttl_s)
        self._subscribe_timeout_s = subscribe_timeout_s
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._pubsub: PubSub = client.pubsub()  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a confirmation arrived
        self._subs: dict[str, list[NumberedQueue]] = {}
        self._active: set[str] = set()  # jobs whose SUBSCRIBE was sent (no UNSUBSCRIBE since)
        self._pending: dict[str, int] = {}  # commands sent for a job, not yet confirmed
        self._confirmed: set[str] = set()  # jobs Redis confirmed as subscribed, none pending
        self._counting: dict[str, int] = {}  # subscribers() calls in progress: keep subscribed
        self._dirty = False  # local subscribers changed since the listener last synced
        self._closed = False
        self._publish_paused_until = 0.0
        self._publish_failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="comfygate-redis-bus", daemon=True)
        self._thread.start()

    # --- the EventBus interface ------------------------------------------------------------

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Never raises for Redis being away: the event is logged and dropped."""
        if time.monotonic() < self._publish_paused_until:
            return
        payload = json.dumps(data, separators=(",", ":"))
        args: list[bytes | str | int] = [
            self._channel(job_id),
            kind,
            payload,
            uuid.uuid4().hex[:16],
            *self._ttls,
        ]
        try:
            self._script(keys=[self._key(job_id)], args=args)
        except redis.RedisError as exc:
            self._publish_paused_until = time.monotonic() + PUBLISH_PAUSE_S
            if not self._publish_failing:
                self._publish_failing = True
                log.warning(
                    "event bus: cannot publish to Redis (%s); job events are dropped until "
                    "it answers (waiters read the job from the store)",
                    type(exc).__name__,
                    extra={"job_id": job_id},
                )
            return
        if self._publish_failing:
            self._publish_failing = False
            log.info("event bus: publishing to Redis again")

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        sub = NumberedQueue()
        last_one = False
        with self._lock:
            if job_id not in self._subs:
                self._subs[job_id] = []
                self._dirty = True
            self._subs[job_id].append(sub)
            closed = self._closed
            ready = job_id in self._confirmed and not self._pending.get(job_id)
        try:
            if closed:
                sub.close()
            elif ready:  # the channel is live: read the last status here
                with redisconn.as_storage_failed("following a job's events"):
                    sub.prime(self._last(job_id))
            else:  # the listener subscribes, then primes it
                if not self._wake() or not sub.primed.wait(self._subscribe_timeout_s):
                    raise redisconn.unavailable("following a job's events")
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(job_id)
                if subs is not None:
                    subs.remove(sub)
                    if not subs:
                        del self._subs[job_id]
                        self._dirty = last_one = True
            if last_one and not self._closed and sub.primed.is_set():
                self._wake()  # unsubscribed now: other replicas stop counting this one

    def subscribers(self, job_id: str) -> int:
        with self._lock:
            local = len(self._subs.get(job_id, ()))
            self._counting[job_id] = self._counting.get(job_id, 0) + 1
        try:
            with self._lock:
                # Whether Redis counts this process's connection is known only once no
                # command for the channel is in flight.
                self._changed.wait_for(
                    lambda: self._closed or not self._pending.get(job_id),
                    self._subscribe_timeout_s,
                )
                mine = 1 if job_id in self._confirmed and not self._closed else 0
            with redisconn.as_storage_failed("counting a job's subscribers"):
                numsub = cast(
                    list[tuple[bytes, int]], self._client.pubsub_numsub(self._channel(job_id))
                )
        finally:
            with self._lock:
                self._counting[job_id] -= 1
                held = not self._counting[job_id] and job_id not in self._subs
                if not self._counting[job_id]:
                    del self._counting[job_id]
                    self._dirty = True
            if held and job_id in self._active:
                self._wake()  # its unsubscription may have waited for this count
        return local + max(0, int(numsub[0][1]) - mine)

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(subs) for subs in self._subs.values())

    def close(self) -> None:
        """Wake every local subscriber with ``CLOSING``, stop the listener (its connection
        closed with it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            subs = [sub for subs in self._subs.values() for sub in subs]
        for sub in subs:
            sub.close()
        self._stop.set()
        self._wake()
        self._thread.join(redisconn.CONNECT_TIMEOUT_S * (redisconn.RETRIES + 1) + 5)
        if self._thread.is_alive():
            log.warning("event bus: the Redis listener did not stop")
        elif self._owns_client:
            self._client.close()

    # --- the listener --------------------------------------------------------------------

    def _run(self) -> None:
        delay = BACKOFF_MIN_S
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    self._listen_once()
                except redis.RedisError as exc:
                    if not failing:
                        log.warning(
                            "event bus: Redis is unreachable (%s); reconnecting with backoff",
                            type(exc).__name__,
                        )
                    failing = True
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                except Exception:  # a bug must not end the thread that serves every stream
                    log.exception("event bus: the Redis listener failed; going on")
                    self._stop.wait(BACKOFF_MAX_S)
                    continue
                if failing:
                    log.info("event bus: Redis answers again")
                    failing, delay = False, BACKOFF_MIN_S
        finally:
            with suppress(Exception):
                self._pubsub.close()

    def _listen_once(self) -> None:
        if self._control not in self._pubsub.channels:
            self._pubsub.subscribe(self._control)
            assert self._pubsub.connection is not None
            self._pubsub.connection.register_connect_callback(self._reconnected)
        self._sync()
        message = self._pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
        if message is not None:
            self._handle(cast(dict[str, Any], message))

    def _sync(self) -> None:
        """Subscribe the jobs that gained local subscribers, unsubscribe those that lost
        them (unless a ``subscribers()`` call is counting them)."""
        with self._lock:
            if not self._dirty:
                return  # nothing changed: no walk over every job per message
            self._dirty = False
            add = [job for job in self._subs if job not in self._active]
            drop = [j for j in self._active if j not in self._subs and j not in self._counting]
            for job in drop:
                self._confirmed.discard(job)
        try:
            if add:
                self._pubsub.subscribe(*(self._channel(job) for job in add))
                with self._lock:
                    self._active.update(add)
                    for job in add:
                        self._pending[job] = self._pending.get(job, 0) + 1
            if drop:
                self._unsubscribe(drop)
        except BaseException:
            with self._lock:
                self._dirty = True  # tried again on the next turn
            raise

    def _unsubscribe(self, jobs: list[str]) -> None:
        self._pubsub.unsubscribe(*(self._channel(job) for job in jobs))  # type: ignore[no-untyped-call]
        with self._lock:
            self._active.difference_update(jobs)
            for job in jobs:
                self._pending[job] = self._pending.get(job, 0) + 1

    def _reconnected(self, connection: object) -> None:
        """Called by redis-py on the pub/sub connection after a reconnect, once it has sent
        SUBSCRIBE again for every channel it had: those are now the ones in flight."""
        with self._lock:
            jobs = {self._job(ch) for ch in self._pubsub.channels if ch != self._control}
            self._active = {job for job in jobs if job is not None}
            self._pending = dict.fromkeys(self._active, 1)
            self._confirmed.clear()
            self._dirty = True
            self._changed.notify_all()

    def _handle(self, message: dict[str, Any]) -> None:
        job_id = self._job(message["channel"])
        if job_id is None:
            return  # the control channel: a wake-up
        kind = message["type"]
        if kind == "message":
            event = NumberedEvent.parse(message["data"])
            with self._lock:
                subs = list(self._subs.get(job_id, ()))
            for sub in subs:
                sub.offer(event)
        elif kind in ("subscribe", "unsubscribe"):
            self._confirmation(job_id, subscribed=kind == "subscribe")

    def _confirmation(self, job_id: str, subscribed: bool) -> None:
        with self._lock:
            left = self._pending.get(job_id, 0) - 1
            if left > 0:
                self._pending[job_id] = left
                return
            self._pending.pop(job_id, None)
            self._changed.notify_all()
            if not subscribed:
                self._confirmed.discard(job_id)
                return
            stray = job_id not in self._active  # resubscribed by a reconnect, not wanted now
            if not stray:
                self._confirmed.add(job_id)
                subs = list(self._subs.get(job_id, ()))
        if stray:
            self._unsubscribe([job_id])
            return
        last = self._last(job_id)
        for sub in subs:
            sub.prime(last)

    # --- helpers -------------------------------------------------------------------------

    def _channel(self, job_id: str) -> bytes:
        return self._base + job_id.encode()

    def _key(self, job_id: str) -> bytes:
        return self._keys + job_id.encode()

    def _job(self, channel: bytes) -> str | None:
        if channel.startswith(self._base):
            return channel[len(self._base) :].decode()
        return None

    def _last(self, job_id: str) -> NumberedEvent | None:
        raw = self._client.hget(self._key(job_id), "status")
        return NumberedEvent.parse(cast(bytes, raw)) if raw is not None else None

    def _wake(self) -> bool:
        """Make the listener's blocking read return, so it acts on a change now; False if
        Redis could not be reached (after the connection retries)."""
        try:
            self._client.publish(self._control, b"")
        except redis.RedisError:
            return False
        return True


__all__ = ["Empty", "RedisBus"]
