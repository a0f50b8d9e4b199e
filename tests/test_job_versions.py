"""The SQLite store's versions in memory (jobs/versions.py): after every kind of write, the
version a job read is answered by is the one in the file, also with many threads writing and
reading at once, and for jobs no longer noted. A stale version would answer a poll with a
job's old state (api/answers.py keeps one answer per version)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfygate.jobs.model import Delivery, Job, JobStatus
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.jobs.versions import GONE, Versions


def job(name: str) -> Job:
    return Job(id=name, template="solid", params={"color": 1}, graph={})


def in_file(path: Path, job_id: str) -> int | None:
    """The version as the file has it, read past the store."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT version FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return int(row[0]) if row else None


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteJobStore]:
    made = SQLiteJobStore(path)
    yield made
    made.close()


def test_every_write_leaves_the_version_the_file_has(store: SQLiteJobStore, path: Path) -> None:
    def same(job_id: str) -> int | None:
        assert store.version(job_id) == in_file(path, job_id), job_id
        return store.version(job_id)

    held = job("held")  # held at once: refused while a job waits unclaimed
    assert store.insert_held(held, "me", time.time() + 60, time.time())
    assert same("held") == 1

    queued = job("queued")
    store.insert(queued)
    assert same("queued") == 1
    assert not store.insert_held(job("refused"), "me", time.time() + 60, time.time())
    assert same("refused") is None

    claimed = store.claim("me", time.time() + 60, time.time())  # the queued one
    assert claimed is not None
    assert claimed.id == "queued"
    assert same("queued") == 2

    claimed.status = JobStatus.RUNNING
    assert store.swap(claimed, claimed.version)
    assert same("queued") == 3
    assert not store.swap(claimed, 2)  # a stale compare-and-set writes nothing
    assert same("queued") == 3

    assert store.renew("me", ["queued", "held"], time.time() + 120) == {"queued", "held"}
    assert same("queued") == 3  # a renewal changes no version

    # The lease ran out: another holder takes both over.
    taken = store.take_over("other", time.time() + 60, time.time() + 600)
    assert sorted(j.id for j in taken) == ["held", "queued"]
    assert same("queued") == 4
    assert same("held") == 2

    ended = store.get("queued")
    assert ended is not None
    ended.status, ended.finished_at = JobStatus.SUCCEEDED, time.time()
    delivery = Delivery(ended.id, "http://127.0.0.1:9/h", "{}")
    assert store.swap(ended, ended.version, delivery=delivery)
    assert same("queued") == 5

    store.delete("queued")
    assert same("queued") is None
    assert store.get("queued") is None
    assert store.version("never-written") is None


def test_a_store_opened_on_an_existing_file_reads_its_versions(path: Path) -> None:
    first = SQLiteJobStore(path)
    made = job("old")
    first.insert(made)
    made.status = JobStatus.RUNNING
    assert first.swap(made, 1)
    first.close()
    again = SQLiteJobStore(path)
    try:
        assert again.version("old") == 2  # read from the file, then noted
        found = again.get("old")
        assert found is not None
        assert found.version == 2
        assert again.swap(found, 2)
        assert again.version("old") == 3 == in_file(path, "old")
    finally:
        again.close()


def test_jobs_past_the_capacity_are_read_from_the_file(store: SQLiteJobStore, path: Path) -> None:
    store._versions = Versions(capacity=4)
    for i in range(10):
        made = job(f"j{i}")
        store.insert(made)
        made.status = JobStatus.RUNNING
        assert store.swap(made, 1)
    assert len(store._versions._noted) == 4
    assert store._versions.get("j0") is None  # dropped: the file answers
    assert [store.version(f"j{i}") for i in range(10)] == [2] * 10
    assert [in_file(path, f"j{i}") for i in range(10)] == [2] * 10


def test_a_noted_version_never_goes_back() -> None:
    versions = Versions()
    versions.written("a", 3)
    versions.written("a", 2)  # a writer that committed first, noting last
    assert versions.get("a") == 3
    versions.read("a", 1, versions.mark())  # a read from before both
    assert versions.get("a") == 3
    versions.read("b", 1, versions.mark())  # nothing noted: the read's version stands
    versions.written("b", 2)
    assert versions.get("b") == 2
    versions.deleted("a")
    versions.read("a", 3, versions.mark())  # a read from before the deletion
    versions.written("a", 4)  # cannot happen (ids are never reused); and cannot undo it
    assert versions.get("a") == GONE
    versions.read("c", None, versions.mark())  # asked for before its job exists: not noted
    assert versions.get("c") is None


def test_a_read_that_began_before_a_drop_notes_nothing() -> None:
    """A read finds version 1 in the file; meanwhile a write commits 2 and notes it, and that
    note is dropped for room: the read's 1 would be older than the file, so it is not noted."""
    versions = Versions(capacity=2)
    mark = versions.mark()  # the read begins
    versions.written("a", 2)
    versions.written("b", 1)
    versions.written("c", 1)  # drops "a", written least lately
    assert versions.get("a") is None
    versions.read("a", 1, mark)
    assert versions.get("a") is None  # the file answers next time
    versions.read("a", 2, versions.mark())
    assert versions.get("a") == 2


def test_the_notes_dropped_are_those_written_least_lately() -> None:
    versions = Versions(capacity=2)
    versions.written("old", 1)
    versions.written("new", 1)
    versions.written("old", 2)  # polled and written again: kept
    versions.written("newest", 1)
    assert (versions.get("old"), versions.get("new"), versions.get("newest")) == (2, None, 1)


def test_many_threads_writing_and_reading_end_with_the_files_versions(
    store: SQLiteJobStore, path: Path
) -> None:
    """16 writers race compare-and-sets on 8 jobs while 4 readers poll them: no reader ever
    sees a job's version go back, and at the end each is the file's. (Readers pause between
    sweeps, as request threads do: a loop of dict reads that never gives up the GIL would
    starve the writers.)"""
    ids = [f"job-{i}" for i in range(8)]
    for job_id in ids:
        store.insert(job(job_id))
    stop = threading.Event()
    start = threading.Barrier(20)
    rounds = 20
    went_back: list[tuple[str, int, int]] = []
    wins = [0] * 16

    def writer(n: int) -> None:
        start.wait()
        for round_ in range(rounds):
            job_id = ids[(n + round_) % len(ids)]
            while True:
                found = store.get(job_id)
                assert found is not None
                found.params = {"color": n}
                if store.swap(found, found.version):
                    wins[n] += 1
                    break

    def reader() -> None:
        start.wait()
        last = dict.fromkeys(ids, 0)
        while not stop.is_set():
            for job_id in ids:
                seen = store.version(job_id)
                assert seen is not None
                if seen < last[job_id]:
                    went_back.append((job_id, last[job_id], seen))
                last[job_id] = seen
            stop.wait(0.0005)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(120)
    stop.set()
    for thread in readers:
        thread.join(30)
    assert went_back == []
    assert sum(wins) == 16 * rounds
    versions = {job_id: store.version(job_id) for job_id in ids}
    assert versions == {job_id: in_file(path, job_id) for job_id in ids}
    assert sum(v or 0 for v in versions.values()) == len(ids) + 16 * rounds
