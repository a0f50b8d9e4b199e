"""Two job engines (two dispatchers with their own holder and ComfyUI client ids) on one
SQLite store, against the fake ComfyUI: every job runs exactly once. Then one of them is
killed mid-job (it stops renewing its leases, listening and dispatching); the other takes
its jobs over when their leases run out and follows them on ComfyUI by prompt id, so each is
still submitted once. (One ``comfygate serve`` per DATA_DIR stays the rule for the embedded
default; this is the engine's guarantee that replicas on a shared store build on.)"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfygate.backends.pool import BackendPool
from comfygate.jobs.engine import EngineOptions, JobEngine
from comfygate.jobs.model import JobStatus
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.storage.local import LocalStorage
from comfygate.templates import TemplateRegistry
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for

LEASE_S = 1.0


def engine(store: SQLiteJobStore, fake: FakeComfyUI, data: Path) -> JobEngine:
    holder = uuid.uuid4().hex
    pool = BackendPool(
        [fake.url],
        connect_timeout_s=1.0,
        read_timeout_s=5.0,
        max_in_flight=4,
        client_id=holder,
    )
    made = JobEngine(
        store,
        pool,
        LocalStorage(data / "outputs"),
        LocalStorage(data / "inputs"),
        TemplateRegistry.load(None),
        holder=holder,
        options=EngineOptions(poll_interval_s=0.1, lease_s=LEASE_S),
    )
    pool.start()
    made.start()
    return made


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    made = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    yield made
    made.close()


def stop(made: JobEngine) -> None:
    made.stop()
    made.pool.stop()


def test_two_dispatchers_on_one_store_run_every_job_once(
    store: SQLiteJobStore, fake: FakeComfyUI, tmp_path: Path
) -> None:
    a = engine(store, fake, tmp_path)
    b = engine(store, fake, tmp_path)
    try:
        jobs = [(a if i % 2 else b).create("solid", {"color": i}, cache=False) for i in range(50)]

        def all_done() -> bool:
            return all(a.get(j.id).status is JobStatus.SUCCEEDED for j in jobs)

        assert wait_for(all_done, timeout_s=60)
        prompts = [s["prompt_id"] for s in fake.submissions]
        assert len(prompts) == 50
        assert len(set(prompts)) == 50
        assert {a.get(j.id).prompt_id for j in jobs} == set(prompts)
        # Both dispatched: the claims spread, none of the jobs ran twice.
        holders = Counter(s["client_id"] for s in fake.submissions)
        assert set(holders) == {a.holder, b.holder}
        assert all(a.get(j.id).attempts == 1 for j in jobs)
    finally:
        stop(a)
        stop(b)


def test_a_killed_dispatchers_jobs_are_finished_by_the_other_each_submitted_once(
    store: SQLiteJobStore, fake: FakeComfyUI, tmp_path: Path
) -> None:
    a = engine(store, fake, tmp_path)
    b = engine(store, fake, tmp_path)
    try:
        fake.hold()  # nothing starts: every job stays submitted on ComfyUI
        jobs = [a.create("solid", {"color": i}, cache=False) for i in range(8)]
        assert wait_for(lambda: len(fake.submissions) == 8, timeout_s=20)
        held_by_a = {s["prompt_id"] for s in fake.submissions if s["client_id"] == a.holder}
        assert held_by_a  # A submitted some of them: those are what B must take over
        # A dies: no more renewals, no events, no dispatching.
        a.dispatcher.renewing = False
        stop(a)
        fake.release()

        def all_done() -> bool:
            return all(b.get(j.id).status is JobStatus.SUCCEEDED for j in jobs)

        assert wait_for(all_done, timeout_s=60)
        assert len(fake.submissions) == 8  # nothing was sent again
        for job in jobs:
            done = b.get(job.id)
            assert done.attempts == 1
            assert done.outputs
            if done.prompt_id in held_by_a:
                assert done.holder is None  # ended: the lease went with it
    finally:
        fake.release()
        stop(b)
