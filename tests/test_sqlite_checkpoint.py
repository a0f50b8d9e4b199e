"""The WAL is checkpointed by a thread of its own, never by a commit (jobs/sqlite.py,
``Checkpointer``): a commit that had to copy ~1,000 pages first was a job write 10-40 ms
late. Under steady writes, which never leave the WAL fully copied, it is still started over,
so it does not grow without end; and every row written is in the file after."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfygate.jobs import sqlite
from comfygate.jobs.sqlite import Database

SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT); CREATE INDEX t_data ON t (data);"
ROW = "x" * 1500  # a job record's size


def wal_pages(path: Path) -> int:
    """How long the WAL file has grown (never truncated: its longest so far), in pages."""
    wal = path.with_name(path.name + "-wal")
    with sqlite3.connect(path) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return max(0, wal.stat().st_size - 32) // (page + 24)  # the header; a header per frame


def write(db: Database, first: int, count: int) -> None:
    for n in range(first, first + count):
        with db.writing() as conn:
            conn.execute("INSERT INTO t VALUES (?, ?)", (n, f"{n}{ROW}"))


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "t.sqlite3"


@pytest.fixture
def idle(monkeypatch: pytest.MonkeyPatch, path: Path) -> Iterator[Database]:
    """A database whose checkpointer thread never takes a turn by itself."""
    monkeypatch.setattr(sqlite, "CHECKPOINT_EVERY_S", 3600.0)
    db = Database(path, SCHEMA)
    yield db
    db.close()


def test_commits_leave_the_wal_to_the_checkpointer(idle: Database, path: Path) -> None:
    write(idle, 0, 3000)
    # SQLite's own checkpoint would have started the WAL over at 1,000 pages.
    assert wal_pages(path) > 2 * sqlite.WAL_PAGES
    pages, copied = idle.checkpointer.run_once()
    assert pages == copied > 2 * sqlite.WAL_PAGES  # all of it, in one round
    write(idle, 3000, 10)  # the first write after a full copy starts the WAL over
    pages, copied = idle.checkpointer.run_once()
    assert pages == copied < 100
    assert rows(path) == 3010


def test_steady_writes_do_not_grow_the_wal_without_end(
    monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    monkeypatch.setattr(sqlite, "CHECKPOINT_EVERY_S", 0.005)
    db = Database(path, SCHEMA)
    db.checkpointer.pages = 100
    writers = [
        threading.Thread(target=write, args=(db, n * 3000, 3000)) for n in range(2)
    ]  # never a pause: no round ever finds the WAL fully copied by itself
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    # Unchecked it holds every page written (about 47,000 here: a commit writes ~8); started
    # over after the rounds, about 5,000 at this rate (tens of thousands of commits a second).
    assert wal_pages(path) < 15_000
    db.close()
    assert rows(path) == 6000


def test_closing_stops_the_checkpointer(path: Path) -> None:
    db = Database(path, SCHEMA)
    write(db, 0, 10)
    db.close()
    assert not [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]
    assert db.checkpointer.run_once() == (0, 0)  # stopped: nothing to checkpoint with
    assert rows(path) == 10
