"""The SQLite store's coalescing bindings, in memory (jobs/flights.py): many requests racing
for one key all get one job; a finished job's key leaves no trace in the file; a restart
forgets the bindings (the documented price: one more run, never a wrong answer)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from comfygate.jobs.model import Job, JobStatus
from comfygate.jobs.sqlite_store import SQLiteJobStore


def job(name: str) -> Job:
    return Job(id=name, template="solid", params={"color": 1}, graph={})


def race(store: SQLiteJobStore, key: str, count: int) -> list[str]:
    """``count`` requests join ``key`` at once, each with a job of its own: what each got."""
    winners: list[str] = []
    start = threading.Barrier(count)

    def request(n: int) -> None:
        start.wait()
        winners.append(store.join_in_flight(key, f"job-{n}"))

    threads = [threading.Thread(target=request, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners


def test_racing_requests_for_one_key_all_get_one_job(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    winners = race(store, "key", 16)
    assert len(winners) == 16
    assert len(set(winners)) == 1
    store.close()


def test_a_failed_twin_is_replaced_by_one_of_the_racers(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    failed = job("failed")
    store.insert(failed)
    assert store.join_in_flight("key", "failed") == "failed"
    failed.status, failed.finished_at = JobStatus.FAILED, time.time()
    assert store.swap(failed, failed.version)
    winners = race(store, "key", 8)
    assert len(set(winners)) == 1
    assert winners[0] != "failed"
    store.close()


def test_bindings_are_not_written_to_the_file_and_a_restart_forgets_them(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SQLiteJobStore(path)
    running = job("running")
    store.insert(running)
    assert store.join_in_flight("key", "running") == "running"
    assert store.join_in_flight("key", "twin") == "running"
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "in_flight" not in tables
    store.close()
    again = SQLiteJobStore(path)
    # The same request after a restart runs on its own (its twin may still be running).
    assert again.join_in_flight("key", "after") == "after"
    again.close()


def test_a_file_with_the_old_table_opens_without_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:  # as an older version left it
        conn.execute("CREATE TABLE in_flight (key TEXT PRIMARY KEY, job_id TEXT NOT NULL)")
        conn.execute("INSERT INTO in_flight VALUES ('key', 'old')")
    store = SQLiteJobStore(path)
    assert store.join_in_flight("key", "new") == "new"
    store.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "in_flight" not in tables
