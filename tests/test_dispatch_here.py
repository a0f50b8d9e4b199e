"""A synchronous request's job, sent by the request's own thread (``Dispatcher.create`` in a
``submitting_here()`` block): with nobody queued before it, written once, straight as
submitted and held, then posted; never ahead of a job already queued; and, if its process
dies between that write and the POST, found by another holder and followed or sent again.
On a real SQLite store with the stand-in backends of tests/test_engine.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfygate.jobs.dispatch import submitting_here
from comfygate.jobs.model import JobStatus
from comfygate.jobs.sqlite_store import SQLiteJobStore
from tests.helpers import wait_for
from tests.test_engine import Process, StubPool, a_job, new_job, status


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    made = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    yield made
    made.close()


def claim_on_queue(process: Process) -> None:
    """What the engine does when a job is queued: claim at once, in the same thread."""

    def claim() -> None:
        process.dispatcher.dispatch()

    process.ledger.on_queued(claim)


def test_with_nobody_queued_it_is_written_once_as_submitted_and_posted_by_its_thread(
    store: SQLiteJobStore, tmp_path: Path
) -> None:
    pool = StubPool("backend-1")
    client = pool.backends["backend-1"].client
    a = Process("a", store, pool, tmp_path)
    claim_on_queue(a)
    job = a_job()
    seen: list[tuple[str, str]] = []
    with a.ledger.bus.subscribe(job.id) as events:
        with submitting_here():
            made = a.dispatcher.create(job)
        # Posted by this very thread: ComfyUI has the prompt when create returns.
        assert client.submitted == [made.prompt_id]
        stored = store.get(job.id)
        assert stored is not None
        assert (stored.status, stored.holder, stored.backend, stored.attempts) == (
            JobStatus.SUBMITTED,
            "a",
            "backend-1",
            1,
        )
        assert stored.prompt_id == made.prompt_id
        assert stored.version == 1  # one write: not insert, claim, then submitted
        assert [j.id for j in store.take_over("b", time.time() + 30, time.time())] == []
        assert made.prompt_id is not None
        a.reconciler.job(job.id)  # in ComfyUI's queue: running
        client.finish(made.prompt_id)
        a.reconciler.job(job.id)
        while not seen or seen[-1][0] != "done":
            kind, data = events.get(timeout=5)
            if kind in ("status", "done"):  # (and the outputs as they are saved)
                seen.append((kind, data["status"]))
    # What a watcher sees is what it saw before: queued (submitted is queued to users),
    # running, succeeded, done.
    assert seen == [
        ("status", "queued"),
        ("status", "running"),
        ("status", "succeeded"),
        ("done", "succeeded"),
    ]
    assert pool.backends["backend-1"].in_flight == 0
    a.close()


def test_it_never_jumps_a_job_queued_before_it(store: SQLiteJobStore, tmp_path: Path) -> None:
    pool = StubPool("backend-1", slots=1)
    client = pool.backends["backend-1"].client
    a = Process("a", store, pool, tmp_path)
    earlier = new_job(store, a.ledger)  # queued, not claimed yet
    claim_on_queue(a)
    job = a_job()
    with submitting_here():
        a.dispatcher.create(job)
    # The one free slot went to the older job, sent by this thread; this one waits.
    first = store.get(earlier.id)
    assert first is not None
    assert client.submitted == [first.prompt_id]
    assert status(store, job.id) is JobStatus.QUEUED
    waiting = store.get(job.id)
    assert waiting is not None
    assert (waiting.holder, waiting.prompt_id, waiting.attempts) == (None, None, 0)
    assert pool.backends["backend-1"].in_flight == 1
    a.close()


def test_with_no_room_it_is_queued_for_whoever_has_room(
    store: SQLiteJobStore, tmp_path: Path
) -> None:
    pool = StubPool("backend-1", slots=0)
    a = Process("a", store, pool, tmp_path)
    claim_on_queue(a)
    job = a_job()
    with submitting_here():
        a.dispatcher.create(job)
    assert status(store, job.id) is JobStatus.QUEUED
    pool.slots = 1
    assert a.dispatcher.dispatch() == 1
    assert wait_for(lambda: len(pool.backends["backend-1"].client.submitted) == 1)
    a.close()
