"""One SQLite file in WAL mode, shared by many request threads: writes go through one
connection behind a lock (SQLite serialises writers anyway), reads through connections of
their own, with no lock at all: a read takes an idle connection (the last one put back, so a
few warm ones do nearly all the work) and puts it back after, or opens one if none is idle.

Why not a connection per thread: waitress hands each request to the thread that has been
idle longest, so with 1,024 threads nearly every request of the first thousands opened a
connection of its own (about 0.1 ms each, and up to 1,024 page caches).

Why readers get no lock: a Python lock held across a query is held while the query has given
up the GIL, and taking the GIL back waits behind every runnable thread (up to the 5 ms
switch interval each). With hundreds of request threads the lock then became a convoy: the
benchmark saw 63 of 64 threads queued on the store's lock, and cache hits fall from 500 to
61 req/s between 1 and 256 clients. WAL readers never wait for each other or the writer.

Inserts, the write every new job makes, are grouped (``GroupInsert``): the writer lock is
subject to the same convoy, so concurrent inserts go out as one multi-row statement.

No commit checkpoints the WAL: a thread of its own does (``Checkpointer``).

The file holds every job's parameters (prompts included) and owners: it is created ``0600``
before SQLite opens it, and SQLite gives its ``-wal`` and ``-shm`` files the database's own
mode. A file left by an older version with a wider mode is narrowed at open.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# SQLite allows 32,766 parameters in one statement (3.32 and later); far below that.
MAX_GROUP_ROWS = 256
FILE_MODE = 0o600  # owner only: the database and its -wal / -shm files
WAL_PAGES = 1000  # SQLite's own automatic checkpoint threshold: the WAL restarts as often
CHECKPOINT_EVERY_S = 0.25


def _private(path: Path) -> None:
    """Create ``path`` (and narrow its companions) owner-only, before SQLite opens it."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if companion.exists():
                companion.chmod(FILE_MODE)
        except PermissionError:  # another user's file we may write but not chmod
            log.warning("cannot make %s owner-only (it is not ours)", companion.name)


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        _private(path)
        self._path = str(path)
        self._conn = self._connect()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # safe in WAL: no fsync per commit
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's work
        self._conn.executescript(schema)
        self._lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []  # every one opened, for close()
        self._idle: list[sqlite3.Connection] = []  # append/pop are atomic: no lock needed
        self.checkpointer = Checkpointer(self)
        self.checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so close() may close every connection from one thread.
        return sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, for one or more statements nobody else interleaves with."""
        with self._lock:
            yield self._conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """An idle reader connection (autocommit: each read sees the last commit)."""
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._connect()
            with self._lock:
                self._readers.append(conn)
        try:
            yield conn
        finally:
            self._idle.append(conn)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a read, or None."""
        with self.reading() as conn:
            return conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.reading() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.checkpointer.stop()
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._idle.clear()
            self._conn.close()


class Checkpointer:
    """Copies the WAL's pages into the database file on a thread of its own.

    Why by hand: SQLite's automatic checkpoint runs inside the commit that takes the WAL past
    1,000 pages, under the write lock, so that commit (a job's write on the way to its
    answer) waits while the pages are copied, 10-20 ms on the benchmark machine, and every
    writer waits behind it: the slowest percent of model-free generations
    (docs/BENCHMARKS.md §1). This thread copies them with no lock held (a ``PASSIVE``
    checkpoint: writers go on meanwhile). A WAL is written from its start again only once
    every page in it is copied and nothing was written since, which steady writes never
    allow; so when it is past ``pages`` after a copy, the few pages written during that copy
    are copied with the writers held (what the automatic checkpoint did, on far fewer
    pages), and the next write starts the WAL over.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.pages = WAL_PAGES  # a WAL this long is started over after the round's copy
        self.every_s = CHECKPOINT_EVERY_S
        self._stop = threading.Event()
        self._turn = threading.Lock()  # one round at a time (the thread's, or a caller's)
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._conn = self._db._connect()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._turn:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def run_once(self) -> tuple[int, int]:
        """One round: (pages in the WAL, pages of it copied), as the last checkpoint saw."""
        with self._turn:
            conn = self._conn
            if conn is None:  # stopped
                return 0, 0
            _, pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if pages >= self.pages:
                with self._db.writing():
                    _, pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(pages), int(copied)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except sqlite3.Error as exc:  # a full disk, say: the next round tries again
                log.warning("WAL checkpoint failed: %s", exc)


@dataclass
class _Row:
    values: Sequence[Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupInsert:
    """``INSERT INTO table (columns) VALUES (...)`` for many threads, group-committed.

    A caller that finds no insert under way writes its row and every row that arrives
    meanwhile, in one statement per round; the others wait for their row to be written
    (``insert`` returns only once its row is committed, or raises that row's error). Why by
    hand: the standard library has no group commit, and each statement given to SQLite
    releases the GIL; taken back under load, it costs up to a thread switch interval (5 ms)
    while every other writer waits, so one statement for N rows is N times fewer waits.
    """

    def __init__(self, db: Database, table: str, columns: Sequence[str]) -> None:
        self._db = db
        # Names from the code, values always as parameters.
        self._prefix = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
        self._one = "(" + ", ".join("?" * len(columns)) + ")"
        self._lock = threading.Lock()  # guards the two fields below; never held over SQLite
        self._pending: list[_Row] = []
        self._writing = False

    def insert(self, values: Sequence[Any]) -> None:
        row = _Row(values)
        with self._lock:
            self._pending.append(row)
            lead = not self._writing
            self._writing = True
        if lead:
            self._write_all()
        row.done.wait()
        if row.error is not None:
            raise row.error

    def _write_all(self) -> None:
        """Write rounds until nobody waits; then the next caller leads."""
        rows: list[_Row] = []
        try:
            while True:
                with self._lock:
                    rows = self._pending[:MAX_GROUP_ROWS]
                    del self._pending[:MAX_GROUP_ROWS]
                    if not rows:
                        self._writing = False
                        return
                try:
                    self._write(rows)
                except Exception as exc:
                    for row in rows:
                        row.error = row.error or exc
                for row in rows:
                    row.done.set()
                rows = []
        except BaseException as exc:  # interrupted: nobody may be left waiting
            with self._lock:
                stranded, self._pending = rows + self._pending, []
                self._writing = False
            for row in stranded:
                row.error = row.error or exc
                row.done.set()
            raise

    def _write(self, rows: list[_Row]) -> None:
        with self._db.writing() as conn:
            try:
                conn.execute(
                    self._prefix + ", ".join([self._one] * len(rows)),
                    [value for row in rows for value in row.values],
                )
                return
            except sqlite3.Error:
                if len(rows) == 1:
                    raise
            # One bad row fails the statement: write them one by one, each its own answer.
            for row in rows:
                try:
                    conn.execute(self._prefix + self._one, row.values)
                except sqlite3.Error as exc:
                    row.error = exc
