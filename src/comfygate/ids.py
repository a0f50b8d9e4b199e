"""Random ids (job ids, request ids) from the OS's random source, read in blocks.

``uuid.uuid4()`` reads 16 bytes with one ``getrandom`` call, and that call gives up the GIL:
under load, taking it back waits behind every runnable thread (up to the 5 ms switch
interval), which made ``uuid4`` a tenth of the GIL time of a job read and of a cache hit
(docs/BENCHMARKS.md §4). Here each thread reads a block of ids' worth of bytes at a time, into
a pool of its own (no lock: a lock shared by the request threads was the next convoy); the ids
are as random (the same source), and a forked child starts with fresh pools.
"""

from __future__ import annotations

import os
import threading
import uuid

BLOCK_BYTES = 4096  # 256 job ids per read of the random source


class _Pools(threading.local):
    def __init__(self) -> None:
        self.pool = bytearray()


_pools = _Pools()


def _forget() -> None:
    global _pools
    _pools = _Pools()  # a child must never hand out its parent's ids


os.register_at_fork(after_in_child=_forget)


def random_bytes(count: int) -> bytes:
    pool = _pools.pool
    if len(pool) < count:
        pool.extend(os.urandom(max(BLOCK_BYTES, count)))
    taken = bytes(pool[:count])
    del pool[:count]
    return taken


def job_id() -> str:
    """A random (version 4) UUID in hex, as ``uuid.uuid4().hex``."""
    return uuid.UUID(bytes=random_bytes(16), version=4).hex


def request_id() -> str:
    """16 random hex digits."""
    return random_bytes(8).hex()
