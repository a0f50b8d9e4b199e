"""Numbered job events, as the Redis bus carries them: the Lua script that numbers, keeps
and publishes one atomically, and the subscriber queue that gives them once and in order.

A message is ``<epoch> <seq> <kind> <JSON data>``: ``seq`` counts a job's events, and the
epoch names one life of the job's hash (it expired, or Redis lost it and the numbering
starts again): a subscriber drops an event it was given, or one older than what it was
given, only within one epoch.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Any

from comfygate.jobs.bus import CLOSING, JobUpdate

# KEYS[1]: the job's hash; ARGV: channel, kind, data (JSON), a new epoch, ttl, ttl after done.
# The epoch tells one life of the hash from the next (it expired, or Redis lost it): a
# sequence that starts again is a new epoch, never mistaken for old events.
PUBLISH_SCRIPT = """
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[4])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local message = epoch .. ' ' .. seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[3]
if ARGV[2] == 'status' then
  redis.call('HSET', KEYS[1], 'status', message)
end
if ARGV[2] == 'done' then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
else
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return redis.call('PUBLISH', ARGV[1], message)
"""


@dataclass(frozen=True)
class NumberedEvent:
    epoch: bytes
    seq: int
    kind: str
    data: dict[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> NumberedEvent:
        epoch, seq, kind, data = raw.split(b" ", 3)
        return cls(epoch, int(seq), kind.decode(), json.loads(data))


class NumberedQueue:
    """One local subscriber: its queue, and the number of the last event it was given, so
    the replayed status and the live events are given in order and once. Until it is
    primed (given the last status), live events are held."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[JobUpdate] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._held: list[NumberedEvent] = []
        self._given: tuple[bytes, int] | None = None
        self.primed = threading.Event()

    def get(self, timeout: float) -> JobUpdate:
        return self._queue.get(timeout=timeout)

    def hand(self, update: JobUpdate) -> None:
        self._queue.put(update)  # local, not numbered: never a bus event

    def offer(self, event: NumberedEvent) -> None:
        with self._lock:
            if self.primed.is_set():
                self._give(event)
            else:
                self._held.append(event)

    def prime(self, last: NumberedEvent | None) -> None:
        """Give the last status (unless already given), then what was held. Also what a
        subscriber gets after a reconnect: the status it may have missed."""
        with self._lock:
            if last is not None:
                self._give(last)
            for event in self._held:
                self._give(event)
            self._held.clear()
            self.primed.set()

    def _give(self, event: NumberedEvent) -> None:
        given = self._given
        if given is not None and given[0] == event.epoch and event.seq <= given[1]:
            return  # given already, or older than what was given
        self._given = (event.epoch, event.seq)
        self._queue.put((event.kind, event.data))

    def close(self) -> None:
        with self._lock:
            self._held.clear()
            self._queue.put((CLOSING, {}))
            self.primed.set()
