"""The SQLite job store under many threads: grouped inserts are each committed before they
return, keep their order, and a bad row fails alone."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from comfygate.jobs.model import Job, JobStatus, Output
from comfygate.jobs.sqlite import Database, GroupInsert
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.jobs.store import CacheEntry


def job(i: int) -> Job:
    return Job(id=f"job-{i:04d}", template="solid", params={"color": i}, graph={})


def test_concurrent_inserts_are_all_committed_and_readable_at_once(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    missing: list[str] = []
    start = threading.Barrier(64)

    def insert_then_read(i: int) -> None:
        start.wait()
        for k in range(10):
            made = job(i * 10 + k)
            store.insert(made)
            # Another connection (this thread's reader) sees it as soon as insert returns.
            if store.get(made.id) is None:
                missing.append(made.id)

    threads = [threading.Thread(target=insert_then_read, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert missing == []
    jobs, cursor = store.page(limit=1000)
    assert len(jobs) == 640
    assert cursor is None
    assert {j.params["color"] for j in jobs} == set(range(640))
    store.close()


def test_a_duplicate_row_fails_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.sqlite3", "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER);")
    inserts = GroupInsert(db, "t", ("id", "n"))
    inserts.insert(("taken", 0))
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(32)

    def insert(i: int) -> None:
        start.wait()
        try:
            inserts.insert(("taken" if i == 7 else f"row-{i}", i))
        except sqlite3.IntegrityError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert list(errors) == [7]
    count = db.one("SELECT COUNT(*) FROM t")[0]
    assert count == 32  # "taken" once, and the 31 others
    with pytest.raises(sqlite3.IntegrityError):
        inserts.insert(("taken", 1))  # alone, the error is its own
    db.close()


def test_the_store_keeps_a_jobs_status_and_record(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    made = job(1)
    store.insert(made)
    made.status = JobStatus.RUNNING
    assert store.swap(made, made.version)
    store.close()
    again = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    read = again.get(made.id)
    assert read is not None
    assert read.status is JobStatus.RUNNING
    assert read.params == {"color": 1}
    assert [j.id for j in again.unfinished()] == [made.id]
    again.close()


def test_a_file_of_the_version_before_leases_is_taken_over(tmp_path: Path) -> None:
    """A job an older gateway had sent to ComfyUI (then: "queued" with a prompt id, no lease
    columns) is a submitted job with an expired lease after the upgrade: the first takeover
    follows it on ComfyUI instead of leaving it to its deadline."""
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
        "status TEXT NOT NULL, finished_at REAL, data TEXT NOT NULL);"
    )
    sent = job(1)
    sent.prompt_id, sent.backend, sent.attempts = "p-1", "backend-1", 1
    waiting = job(2)
    for made in (sent, waiting):
        old.execute(
            "INSERT INTO jobs (id, status, finished_at, data) VALUES (?, 'queued', NULL, ?)",
            (made.id, json.dumps(made.to_record())),
        )
    old.commit()
    old.close()
    store = SQLiteJobStore(path)
    upgraded = store.get(sent.id)
    assert upgraded is not None
    assert upgraded.status is JobStatus.SUBMITTED
    [taken] = store.take_over("new-holder", time.time() + 15, time.time())
    assert (taken.id, taken.holder, taken.prompt_id) == (sent.id, "new-holder", "p-1")
    claimed = store.claim("new-holder", time.time() + 15, time.time())
    assert claimed is not None
    assert claimed.id == waiting.id  # the one never sent is simply queued
    store.close()


def test_a_file_made_before_the_cache_total_gets_it_from_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SQLiteJobStore(path)
    for key, size in (("a", 100), ("b", 23)):
        store.cache_put(CacheEntry(key, [Output(f"{key}.png", "image/png", size, "9")], size), 1.0)
    store.close()
    with sqlite3.connect(path) as conn:  # as an older version left it
        conn.executescript(
            "DROP TRIGGER cache_total_insert; DROP TRIGGER cache_total_delete; "
            "DROP TRIGGER cache_total_update; DROP TABLE cache_total;"
        )
    reopened = SQLiteJobStore(path)
    assert reopened.cache_size() == 123
    reopened.cache_delete("a")
    assert reopened.cache_size() == 23
    reopened.close()
