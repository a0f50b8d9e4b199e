"""One SQLite file in WAL mode, shared by many request threads: writes go through one
connection behind a lock (SQLite serialises writers anyway), reads through a connection per
thread, with no lock at all.

Why readers get no lock: a Python lock held across a query is held while the query has given
up the GIL, and taking the GIL back waits behind every runnable thread (up to the 5 ms
switch interval each). With hundreds of request threads the lock then became a convoy: the
benchmark saw 63 of 64 threads queued on the store's lock, and cache hits fall from 500 to
61 req/s between 1 and 256 clients. WAL readers never wait for each other or the writer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self._path = str(path)
        self._conn = self._connect()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # safe in WAL: no fsync per commit
        self._conn.executescript(schema)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so close() may close every connection from one thread.
        return sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, for one or more statements nobody else interleaves with."""
        with self._lock:
            yield self._conn

    def reader(self) -> sqlite3.Connection:
        """This thread's own connection (autocommit: each read sees the last commit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._conn.close()
