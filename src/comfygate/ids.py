"""Random ids (job ids, request ids) from the OS's random source, read in blocks.

``uuid.uuid4()`` reads 16 bytes with one ``getrandom`` call, and that call gives up the GIL:
under load, taking it back waits behind every runnable thread (up to the 5 ms switch
interval), which made ``uuid4`` a tenth of the GIL time of a job read and of a cache hit
(docs/BENCHMARKS.md §4). Here one call reads a block of ids' worth of bytes; the ids are as
random (the same source), and a forked child starts with a fresh block of its own.
"""

from __future__ import annotations

import os
import threading
import uuid

BLOCK_BYTES = 4096  # 256 job ids per read of the random source

_lock = threading.Lock()
_pool = bytearray()


def _forget() -> None:
    global _lock
    _lock = threading.Lock()
    del _pool[:]  # a child must never hand out its parent's ids


os.register_at_fork(after_in_child=_forget)


def random_bytes(count: int) -> bytes:
    with _lock:
        if len(_pool) < count:
            _pool.extend(os.urandom(max(BLOCK_BYTES, count)))
        taken = bytes(_pool[:count])
        del _pool[:count]
    return taken


def job_id() -> str:
    """A random (version 4) UUID in hex, as ``uuid.uuid4().hex``."""
    return uuid.UUID(bytes=random_bytes(16), version=4).hex


def request_id() -> str:
    """16 random hex digits."""
    return random_bytes(8).hex()
