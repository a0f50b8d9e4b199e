"""The engine's parts as plain objects: the ledger, the dispatcher, the reconciler and the
collector on a real SQLite store, with a stand-in ComfyUI backend (no Flask, no server):
the state table, compare-and-set, lease expiry and takeover, a crash between "claimed" and
"submitted" and between "submitted" and "running", and failover. Two whole engines on one
store against the fake ComfyUI server are in tests/test_two_dispatchers.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from comfygate.comfy.client import HistoryEntry, OutputRef, QueueState
from comfygate.jobs.collect import Collector
from comfygate.jobs.dispatch import Dispatcher, DispatchOptions
from comfygate.jobs.holdings import Holdings
from comfygate.jobs.ledger import TRANSITIONS, Ledger
from comfygate.jobs.memory_bus import MemoryBus
from comfygate.jobs.model import Job, JobStatus
from comfygate.jobs.reconcile import Reconciler
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.metrics import Metrics
from comfygate.storage.local import LocalStorage
from comfygate.templates import TemplateRegistry
from comfygate.templates.limits import CostLimits
from tests.helpers import wait_for

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


class StubClient:
    """What a ComfyUI backend answers, kept in memory: prompts submitted, its queue, its
    history. ``lose_queue`` is a ComfyUI restart (queue and history gone)."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.pending: list[str] = []
        self.done: dict[str, HistoryEntry] = {}
        self.refuse = False

    def submit(self, graph: dict[str, Any], prompt_id: str) -> int:
        if self.refuse:
            from comfygate.errors import BackendUnreachable

            raise BackendUnreachable("connection refused")
        self.submitted.append(prompt_id)
        self.pending.append(prompt_id)
        return len(self.pending)

    def finish(self, prompt_id: str) -> None:
        self.pending.remove(prompt_id)
        ref = OutputRef("9", "x.png", "", "output", "images")
        self.done[prompt_id] = HistoryEntry(prompt_id, "success", True, [ref])

    def queue(self) -> QueueState:
        return QueueState(running=self.pending[:1], pending=self.pending[1:])

    def history(self, prompt_id: str) -> HistoryEntry | None:
        return self.done.get(prompt_id)

    @contextmanager
    def view(self, ref: OutputRef, chunk_size: int = 0) -> Iterator[Iterator[bytes]]:
        yield iter([PNG])

    def upload_image(self, name: str, data: bytes, content_type: str) -> str:
        return name

    def lose_queue(self) -> None:
        self.pending.clear()
        self.done.clear()


@dataclass
class StubBackend:
    name: str
    client: StubClient = field(default_factory=StubClient)
    ws_connected: bool = True
    in_flight: int = 0


class StubPool:
    """The pool's routing, for stand-in backends: room for ``slots`` jobs each."""

    def __init__(self, *names: str, slots: int = 4) -> None:
        self.backends = {n: StubBackend(n) for n in names}
        self.slots = slots
        self.down: set[str] = set()
        self._lock = threading.Lock()

    def _open(self) -> list[StubBackend]:
        return [
            b
            for b in self.backends.values()
            if b.name not in self.down and b.in_flight < self.slots
        ]

    def has_room(self) -> bool:
        with self._lock:
            return bool(self._open())

    def acquire(self, req: Any = None) -> StubBackend | None:
        with self._lock:
            room = self._open()
            if not room:
                return None
            backend = min(room, key=lambda b: b.in_flight)
            backend.in_flight += 1
            return backend

    def release(self, name: str | None) -> None:
        with self._lock:
            backend = self.backends.get(name or "")
            if backend is not None and backend.in_flight > 0:
                backend.in_flight -= 1

    def claim(self, name: str | None) -> None:
        with self._lock:
            self.backends[name or ""].in_flight += 1

    def get(self, name: str | None) -> StubBackend | None:
        return self.backends.get(name or "")

    def report_failure(self, backend: StubBackend, exc: Exception) -> None:
        self.down.add(backend.name)


class Process:
    """One gateway process's engine parts (holder ``name``) on a shared store and pool."""

    def __init__(self, name: str, store: SQLiteJobStore, pool: StubPool, tmp: Path) -> None:
        self.store, self.pool, self.holder = store, pool, name
        self.ledger = Ledger(store, MemoryBus())
        self.holdings = Holdings()
        self.submissions = ThreadPoolExecutor(2)
        outputs = LocalStorage(tmp / "outputs")
        self.dispatcher = Dispatcher(
            self.ledger,
            pool,  # type: ignore[arg-type]
            self.holdings,
            name,
            LocalStorage(tmp / "inputs"),
            DispatchOptions(lease_s=0.3, max_attempts=3),
            self.submissions,
        )
        self.collector = Collector(
            self.ledger,
            pool,  # type: ignore[arg-type]
            self.holdings,
            name,
            outputs,
            TemplateRegistry.load(None),
            CostLimits(),
            Metrics(),
            self.ledger.bus,
            threading.Event(),
            {},
        )
        self.reconciler = Reconciler(
            self.ledger,
            pool,  # type: ignore[arg-type]
            self.holdings,
            self.dispatcher,
            self.collector,
            lambda *a, **k: None,
        )
        self.dispatcher.reconcile = self.reconciler.job
        self.ledger.on_end(lambda before, job: self.dispatcher.ended(job.id))

    def close(self) -> None:
        self.submissions.shutdown(wait=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    made = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    yield made
    made.close()


def a_job() -> Job:
    """A new job, not written yet."""
    return Job(template="workflow", params={}, graph={"1": {"class_type": "X", "inputs": {}}})


def new_job(store: SQLiteJobStore, ledger: Ledger) -> Job:
    job = a_job()
    ledger.create(job)
    return job


def status(store: SQLiteJobStore, job_id: str) -> JobStatus:
    job = store.get(job_id)
    assert job is not None
    return job.status


# --- the ledger -----------------------------------------------------------------------------


def test_the_state_table_refuses_what_it_does_not_allow(store: SQLiteJobStore) -> None:
    ledger = Ledger(store, MemoryBus())
    job = new_job(store, ledger)
    assert ledger.running(job.id) is None  # queued -> running: never (it is submitted first)
    assert ledger.succeeded(job.id, [], None) is None  # queued -> succeeded: never
    assert ledger.cancelled(job.id, {"code": "cancelled"}) is not None
    assert ledger.requeue(job.id, None, count=True) is None  # an ended job stays ended
    assert ledger.failed(job.id, {"code": "x"}) is None
    assert status(store, job.id) is JobStatus.CANCELLED
    assert all(not TRANSITIONS[s] for s in JobStatus if s.terminal)


def test_a_transition_is_a_compare_and_set_on_the_version(store: SQLiteJobStore) -> None:
    ledger = Ledger(store, MemoryBus())
    job = new_job(store, ledger)
    stale = store.get(job.id)
    assert stale is not None
    assert ledger.cancelled(job.id, {"code": "cancelled"}) is not None
    stale.status = JobStatus.FAILED
    assert store.swap(stale, stale.version) is False  # someone wrote it since: nothing written
    assert status(store, job.id) is JobStatus.CANCELLED


def test_concurrent_transitions_of_one_job_end_it_once(store: SQLiteJobStore) -> None:
    ledger = Ledger(store, MemoryBus())
    ended: list[Job] = []
    ledger.on_end(lambda before, job: ended.append(job))
    job = new_job(store, ledger)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: ledger.cancelled(job.id, {"code": f"c{i}"}), range(16)))
    assert sum(r is not None for r in results) == 1
    assert len(ended) == 1


# --- claims, leases and takeover -------------------------------------------------------------


def test_a_crash_between_claimed_and_submitted(store: SQLiteJobStore, tmp_path: Path) -> None:
    """A claimed a job and died before recording a submission: after A's lease runs out, B
    takes it back to the queue and submits it, once."""
    pool = StubPool("backend-1")
    a, b = Process("a", store, pool, tmp_path), Process("b", store, pool, tmp_path)
    job = new_job(store, a.ledger)
    claimed = store.claim("a", a.dispatcher.until(), time.time())
    assert claimed is not None
    assert claimed.holder == "a"
    assert b.dispatcher.dispatch() == 0  # held by A: not B's to claim
    assert b.dispatcher.take_over() == []  # A's lease has not run out yet

    def released() -> bool:
        b.dispatcher.take_over()  # once A's lease ran out: back to the queue
        again = store.get(job.id)
        return again is not None and again.holder is None

    assert wait_for(released, timeout_s=5)
    assert b.dispatcher.dispatch() == 1
    assert wait_for(lambda: len(pool.backends["backend-1"].client.submitted) == 1)
    done = store.get(job.id)
    assert done is not None
    assert (done.status, done.holder, done.attempts) == (JobStatus.SUBMITTED, "b", 1)
    a.close()
    b.close()


@pytest.mark.parametrize("posted", [False, True], ids=["before-the-post", "after-the-post"])
@pytest.mark.parametrize("written", ["claimed-then-submitted", "inserted-held"])
def test_a_crash_between_submitted_and_running(
    store: SQLiteJobStore, tmp_path: Path, posted: bool, written: str
) -> None:
    """A recorded the submission and died, before or after its POST reached ComfyUI. B takes
    it over and asks ComfyUI by prompt id: a prompt ComfyUI has is followed to its end (never
    sent twice); one it never got is sent again, as a second attempt. The same whether A
    claimed a queued job and then wrote it submitted, or (a synchronous request with nobody
    queued before it) wrote it submitted and held at once (``Ledger.create_submitted``)."""
    pool = StubPool("backend-1")
    client = pool.backends["backend-1"].client
    a, b = Process("a", store, pool, tmp_path), Process("b", store, pool, tmp_path)
    backend = pool.acquire()
    assert backend is not None
    if written == "inserted-held":
        job = a_job()
        submitted = a.ledger.create_submitted(
            job, "a", a.dispatcher.until(), backend.name, "prompt-1"
        )
    else:
        job = new_job(store, a.ledger)
        claimed = store.claim("a", a.dispatcher.until(), time.time())
        assert claimed is not None
        submitted = a.ledger.submitted(claimed, "a", backend.name, "prompt-1")
    assert submitted is not None
    if posted:
        client.submit({}, "prompt-1")
    # A is gone: it renews nothing. B finds the expired lease and follows the job.
    taken: list[str] = []
    assert wait_for(lambda: bool(taken.extend(b.dispatcher.take_over()) or taken), timeout_s=5)  # type: ignore[func-returns-value]
    assert taken == [job.id]
    b.reconciler.job(job.id)
    if posted:
        assert status(store, job.id) is JobStatus.RUNNING  # in ComfyUI's queue, running
        client.finish("prompt-1")
        b.reconciler.job(job.id)
        final = store.get(job.id)
        assert final is not None
        assert final.status is JobStatus.SUCCEEDED
        assert [o.filename for o in final.outputs] == ["9-0.png"]
        assert client.submitted == ["prompt-1"]  # once
    else:
        # In neither /queue nor /history: lost, so sent again by whoever claims it.
        assert status(store, job.id) is JobStatus.QUEUED
        assert b.dispatcher.dispatch() == 1
        assert wait_for(lambda: len(client.submitted) == 1)
        again = store.get(job.id)
        assert again is not None
        assert (again.attempts, again.holder) == (2, "b")
        assert again.prompt_id != "prompt-1"
    a.close()
    b.close()


def test_a_holder_that_lost_its_lease_can_no_longer_move_the_job(
    store: SQLiteJobStore, tmp_path: Path
) -> None:
    pool = StubPool("backend-1")
    a, b = Process("a", store, pool, tmp_path), Process("b", store, pool, tmp_path)
    job = new_job(store, a.ledger)
    assert a.dispatcher.dispatch() == 1
    assert wait_for(lambda: len(pool.backends["backend-1"].client.submitted) == 1)
    a.dispatcher.renew()
    assert job.id in a.holdings.ids()
    a.dispatcher.renewing = False  # A pauses longer than its lease (a stuck process)
    taken: list[str] = []
    assert wait_for(lambda: bool(taken.extend(b.dispatcher.take_over()) or taken), timeout_s=5)  # type: ignore[func-returns-value]
    assert a.ledger.running(job.id, "a") is None  # fenced off: B holds it now
    assert b.ledger.running(job.id, "b") is not None
    a.dispatcher.renewing = True
    a.dispatcher.renew()  # the store refuses A's renewal: A lets the job go
    assert a.holdings.ids() == []
    a.close()
    b.close()


def test_renewing_keeps_a_job_from_being_taken_over(store: SQLiteJobStore, tmp_path: Path) -> None:
    pool = StubPool("backend-1")
    a, b = Process("a", store, pool, tmp_path), Process("b", store, pool, tmp_path)
    new_job(store, a.ledger)
    assert a.dispatcher.dispatch() == 1
    stop = threading.Event()
    renewals = 0

    def renew() -> None:
        nonlocal renewals
        while not stop.wait(0.05):
            a.dispatcher.renew()
            renewals += 1

    thread = threading.Thread(target=renew)
    thread.start()
    try:
        # Over several lease times, B never gets it.
        assert wait_for(lambda: b.dispatcher.take_over() != [] or renewals >= 20, timeout_s=10)
        assert b.dispatcher.take_over() == []
    finally:
        stop.set()
        thread.join()
    a.close()
    b.close()


# --- failover ------------------------------------------------------------------------------


def test_failover_a_backend_that_lost_its_queue_sends_its_jobs_elsewhere(
    store: SQLiteJobStore, tmp_path: Path
) -> None:
    pool = StubPool("backend-1", "backend-2", slots=1)
    a = Process("a", store, pool, tmp_path)
    jobs = [new_job(store, a.ledger) for _ in range(2)]
    assert a.dispatcher.dispatch() == 2  # one on each
    assert wait_for(lambda: all(b.client.submitted for b in pool.backends.values()))
    first = store.get(jobs[0].id)
    assert first is not None
    dead = pool.backends[first.backend or ""]
    other = next(b for b in pool.backends.values() if b is not dead)
    other.client.finish(other.client.submitted[0])
    a.reconciler.job(next(j.id for j in jobs if j.id != first.id))  # the other one ends
    dead.client.lose_queue()
    pool.down.add(dead.name)
    a.reconciler.on_down(dead, queue_lost=True)  # type: ignore[arg-type]
    assert status(store, first.id) is JobStatus.QUEUED
    assert a.dispatcher.dispatch() == 1
    assert wait_for(lambda: len(other.client.submitted) == 2)
    moved = store.get(first.id)
    assert moved is not None
    assert (moved.backend, moved.attempts, moved.status) == (other.name, 2, JobStatus.SUBMITTED)
    a.close()


def test_a_job_lost_too_often_fails_with_its_attempts(
    store: SQLiteJobStore, tmp_path: Path
) -> None:
    pool = StubPool("backend-1")
    client = pool.backends["backend-1"].client
    a = Process("a", store, pool, tmp_path)
    job = new_job(store, a.ledger)
    for _ in range(3):
        assert a.dispatcher.dispatch() == 1
        assert wait_for(lambda: bool(client.pending))
        assert wait_for(lambda: a.holdings.get(job.id) is not None)
        held = a.holdings.get(job.id)
        assert held is not None
        assert wait_for(lambda held=held: not held.submitting)  # type: ignore[misc]
        client.lose_queue()
        a.reconciler.job(job.id)
    failed = store.get(job.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error["details"] == {"attempts": 3}
    assert len(client.submitted) == 3
    a.close()
