"""The job store contract: what the engine relies on, run against every implementation.

A new store is one line in ``STORES`` (``sqlite``, ``redis`` on a real redis-server): a name
and a function that, given the test's request, returns an opener (each call opens another
store object on the same state, as another process or replica would). Times are given
explicitly (``now``, ``until``), as the engine passes them, so no assertion depends on the
wall clock.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from comfygate import redisconn
from comfygate.jobs.model import Delivery, Job, JobStatus, Output
from comfygate.jobs.redis_store import RedisJobStore
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.jobs.store import CacheEntry, JobStore
from tests.processes import RedisServer

Opener = Callable[[], JobStore]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def _redis(request: pytest.FixtureRequest) -> Opener:
    server: RedisServer = request.getfixturevalue("redis_server")
    with server.client() as client:
        client.flushall()
    clients: list[Any] = []

    def make() -> JobStore:
        clients.append(redisconn.connect(server.url))
        return RedisJobStore(clients[-1])

    # The store leaves its client's pool to whoever made it (the gateway shares it): here.
    request.addfinalizer(lambda: [c.connection_pool.disconnect() for c in clients])
    return make


def _sqlite(request: pytest.FixtureRequest) -> Opener:
    return functools.partial(SQLiteJobStore, request.getfixturevalue("tmp_path") / "jobs.sqlite3")


STORES: dict[str, Callable[[pytest.FixtureRequest], Opener]] = {
    "sqlite": _sqlite,
    "redis": _redis,
}

# What inserting an existing id raises, per store (the contract says only "an error").
DUPLICATE = (ValueError, sqlite3.IntegrityError)

T0 = 1_800_000_000.25  # a fixed "now"; leases are relative to it


@pytest.fixture(params=sorted(STORES))
def open_store(request: pytest.FixtureRequest) -> Iterator[Opener]:
    make = STORES[request.param](request)
    opened: list[JobStore] = []

    def _open() -> JobStore:
        opened.append(make())
        return opened[-1]

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> JobStore:
    return open_store()


def new_job(**fields: Any) -> Job:
    job = Job(
        template="txt2img",
        params={"prompt": "a lighthouse at dusk", "seed": 42, "width": 64, "steps": 2},
        graph={"3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 2}}},
        created_at=T0,
    )
    for name, value in fields.items():
        setattr(job, name, value)
    return job


def queued(store: JobStore, n: int, **fields: Any) -> list[str]:
    ids = []
    for _ in range(n):
        job = new_job(**fields)
        store.insert(job)
        ids.append(job.id)
    return ids


def finish(store: JobStore, job_id: str, status: JobStatus = JobStatus.SUCCEEDED) -> Job:
    job = store.get(job_id)
    assert job is not None
    job.status, job.finished_at, job.holder = status, T0 + 1, None
    assert store.swap(job, job.version)
    return job


def set_status(store: JobStore, job_id: str, status: JobStatus) -> None:
    job = store.get(job_id)
    assert job is not None
    job.status = status
    assert store.swap(job, job.version)


def all_pages(store: JobStore, **filters: Any) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        jobs, cursor = store.page(limit=4, cursor=cursor, **filters)
        ids += [j.id for j in jobs]
        if cursor is None:
            return ids


# --- jobs -----------------------------------------------------------------------------------


def test_a_job_reads_back_as_written_at_version_1_and_held_by_nobody(store: JobStore) -> None:
    job = new_job(
        owner="owner-a",
        webhook_url="http://127.0.0.1:9/hook",
        outputs=[Output("3-0.png", "image/png", 480, "9")],
        inputs=["in-1.png"],
        batch_id="b1",
        batch_index=0,
    )
    store.insert(job)
    got = store.get(job.id)
    assert got is not None
    assert got.to_record() == job.to_record()
    assert (got.version, got.holder) == (1, None)
    assert got.outputs == [Output("3-0.png", "image/png", 480, "9")]
    assert store.get("no-such-job") is None


def test_inserting_an_existing_id_is_an_error_and_keeps_the_first(store: JobStore) -> None:
    first = new_job(template="first")
    store.insert(first)
    with pytest.raises(DUPLICATE):
        store.insert(new_job(id=first.id, template="second"))
    got = store.get(first.id)
    assert got is not None
    assert (got.template, got.version) == ("first", 1)


def test_swap_writes_on_the_version_read_and_bumps_it(store: JobStore) -> None:
    [job_id] = queued(store, 1)
    job = store.get(job_id)
    assert job is not None
    job.move_to(JobStatus.RUNNING)
    job.progress = {"value": 1, "max": 2, "node": "3"}
    assert store.swap(job, 1)
    assert job.version == 2
    got = store.get(job_id)
    assert got is not None
    assert (got.status, got.progress, got.version) == (JobStatus.RUNNING, job.progress, 2)


def test_the_version_alone_follows_every_write_and_is_none_once_the_job_is_gone(
    store: JobStore,
) -> None:
    assert store.version("no-such-job") is None
    [job_id] = queued(store, 1)
    assert store.version(job_id) == 1
    job = finish(store, job_id)
    assert store.version(job_id) == job.version == 2
    store.delete(job_id)
    assert store.version(job_id) is None


def test_a_stale_swap_writes_nothing(store: JobStore) -> None:
    [job_id] = queued(store, 1)
    mine, theirs = store.get(job_id), store.get(job_id)
    assert mine is not None
    assert theirs is not None
    theirs.attempts = 1
    assert store.swap(theirs, 1)
    mine.move_to(JobStatus.CANCELLED)
    late = Delivery(job_id, "http://127.0.0.1:9/hook", "{}")
    assert not store.swap(mine, 1, delivery=late)
    assert mine.version == 1
    got = store.get(job_id)
    assert got is not None
    assert (got.status, got.attempts, got.version) == (JobStatus.QUEUED, 1, 2)
    assert store.get_delivery(late.id) is None
    assert store.next_delivery_at() is None
    assert not store.swap(new_job(), 1)  # a job that does not exist


def test_a_swap_with_a_delivery_writes_both(store: JobStore) -> None:
    [job_id] = queued(store, 1)
    job = store.get(job_id)
    assert job is not None
    job.move_to(JobStatus.SUCCEEDED)
    delivery = Delivery(job_id, "http://127.0.0.1:9/hook", '{"id": 1}', next_attempt_at=T0)
    assert store.swap(job, job.version, delivery=delivery)
    assert store.get_delivery(delivery.id) == delivery
    assert store.next_delivery_at() == T0


def test_pages_are_newest_first_and_a_cursor_walks_every_job_once(store: JobStore) -> None:
    ids = queued(store, 10)
    first, cursor = store.page(limit=4)
    assert [j.id for j in first] == ids[::-1][:4]
    assert isinstance(cursor, str)
    assert not cursor.isdigit()  # opaque: not a row number a client could do sums with
    seen = [j.id for j in first]
    newer: list[str] = []
    while cursor is not None:
        newer += queued(store, 1)  # jobs arriving meanwhile are on the first page, not here
        set_status(store, seen[-1], JobStatus.RUNNING)  # nor does a status change move one
        jobs, cursor = store.page(limit=4, cursor=cursor)
        seen += [j.id for j in jobs]
    assert seen == ids[::-1]
    assert [j.id for j in store.page(limit=100)[0]] == (ids + newer)[::-1]
    assert store.page(limit=len(ids) + len(newer)) == (store.page(limit=100)[0], None)


def test_a_cursor_the_store_did_not_make_is_refused(store: JobStore) -> None:
    queued(store, 3)
    for cursor in ("not-a-cursor", "", "czEyYQ", "-1"):
        with pytest.raises(ValueError, match="cursor"):
            store.page(cursor=cursor)


def test_pages_filter_by_status_and_owner(store: JobStore) -> None:
    a = queued(store, 6, owner="owner-a")
    b = queued(store, 3, owner="owner-b")
    nobody = queued(store, 2)
    for job_id in a[:3] + b[:1]:
        finish(store, job_id)
    set_status(store, a[3], JobStatus.RUNNING)
    done = frozenset({JobStatus.SUCCEEDED})
    live = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})

    assert all_pages(store, statuses=done) == (a[:3] + b[:1])[::-1]
    assert all_pages(store, owner="owner-a") == a[::-1]
    assert all_pages(store, owner="owner-a", statuses=live) == a[3:][::-1]
    assert all_pages(store, owner="owner-b", statuses=done) == [b[0]]
    assert (
        all_pages(store, statuses=frozenset({JobStatus.QUEUED})) == (a[4:] + b[1:] + nobody)[::-1]
    )
    assert all_pages(store, owner="owner-c") == []
    assert store.page(statuses=frozenset()) == ([], None)


def test_count_and_unfinished(store: JobStore) -> None:
    ids = queued(store, 6)
    set_status(store, ids[1], JobStatus.SUBMITTED)
    set_status(store, ids[2], JobStatus.RUNNING)
    finish(store, ids[3], JobStatus.FAILED)
    finish(store, ids[4], JobStatus.CANCELLED)
    assert store.count(frozenset({JobStatus.QUEUED})) == 2
    assert store.count(frozenset({JobStatus.SUBMITTED, JobStatus.RUNNING})) == 2
    assert store.count(frozenset(JobStatus)) == 6
    assert [j.id for j in store.unfinished()] == [ids[0], ids[1], ids[2], ids[5]]


def test_finished_before_then_delete_removes_everything_of_the_job(store: JobStore) -> None:
    old, kept = queued(store, 2)
    job = store.get(old)
    assert job is not None
    job.move_to(JobStatus.SUCCEEDED)
    job.finished_at = T0 + 10
    delivery = Delivery(old, "http://127.0.0.1:9/hook", "{}", next_attempt_at=T0)
    assert store.swap(job, job.version, delivery=delivery)
    assert store.claim_key("key-1", "fp", old) == (old, "fp")
    assert store.finished_before(T0 + 10) == []
    assert store.finished_before(T0 + 11) == [old]

    store.delete(old)
    assert store.get(old) is None
    assert store.get_delivery(delivery.id) is None
    assert store.claim_deliveries(T0 + 100, T0 + 200, 10) == []
    assert store.next_delivery_at() is None
    assert store.finished_before(T0 + 11) == []
    assert all_pages(store) == [kept]
    assert store.count(frozenset(JobStatus)) == 1
    assert store.claim_key("key-1", "fp2", kept) == (kept, "fp2")  # the key is free again
    store.delete("no-such-job")


# --- leases ---------------------------------------------------------------------------------


def test_claim_takes_the_oldest_queued_job_and_holds_it(store: JobStore) -> None:
    assert store.claim("A", T0 + 15, T0) is None
    ids = queued(store, 3)
    set_status(store, ids[0], JobStatus.SUBMITTED)  # only queued jobs are claimed
    job = store.claim("A", T0 + 15, T0)
    assert job is not None
    assert (job.id, job.holder, job.version) == (ids[1], "A", 2)
    got = store.get(ids[1])
    assert got is not None
    assert (got.holder, got.version) == ("A", 2)
    taken = store.claim("B", T0 + 15, T0)
    assert taken is not None
    assert taken.id == ids[2]
    assert store.claim("B", T0 + 15, T0) is None


def test_claim_leaves_out_the_excluded(store: JobStore) -> None:
    ids = queued(store, 3)
    job = store.claim("A", T0 + 15, T0, exclude=[ids[0], ids[1]])
    assert job is not None
    assert job.id == ids[2]
    assert store.claim("A", T0 + 15, T0, exclude=ids) is None


def test_a_held_job_is_claimed_again_only_once_its_lease_ended(store: JobStore) -> None:
    [job_id] = queued(store, 1)
    assert store.claim("A", T0 + 15, T0) is not None
    assert store.claim("B", T0 + 30, T0 + 15) is None  # the lease ends at T0 + 15, not before
    job = store.claim("B", T0 + 30, T0 + 15.5)
    assert job is not None
    assert (job.id, job.holder) == (job_id, "B")


def test_claim_never_takes_a_job_past_queued_even_if_its_lease_ended(store: JobStore) -> None:
    [job_id] = queued(store, 1)
    job = store.claim("A", T0 + 15, T0)
    assert job is not None
    job.status = JobStatus.SUBMITTED
    assert store.swap(job, job.version)
    assert store.claim("B", T0 + 100, T0 + 50) is None  # recovery takes it over instead
    assert [j.id for j in store.take_over("B", T0 + 100, T0 + 50)] == [job_id]


def test_a_released_job_is_claimable_again(store: JobStore) -> None:
    [job_id] = queued(store, 1)
    job = store.claim("A", T0 + 15, T0)
    assert job is not None
    job.holder = None
    assert store.swap(job, job.version)
    again = store.claim("B", T0 + 15, T0)
    assert again is not None
    assert again.id == job_id


def test_concurrent_claimers_never_take_a_job_twice(open_store: Opener) -> None:
    stores = [open_store(), open_store()]
    ids = queued(stores[0], 50)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        store = stores[n % 2]
        # Bounded: a store that hands a job out twice must fail here, not hang.
        while len(claimed) <= 2 * len(ids):
            job = store.claim(f"holder-{n}", T0 + 15, T0)
            if job is None:
                return
            assert job.holder == f"holder-{n}"
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(ids)
    assert all(j.holder is not None for j in stores[1].unfinished())


def test_take_over_takes_ended_leases_and_the_old_holder_learns_it(store: JobStore) -> None:
    ids = queued(store, 3)
    held = [store.claim("A", T0 + 15, T0) for _ in ids[:2]]
    assert all(held)
    live = store.claim("C", T0 + 100, T0)
    assert live is not None
    set_status(store, ids[1], JobStatus.SUBMITTED)
    assert store.take_over("B", T0 + 30, T0 + 10) == []

    taken = store.take_over("B", T0 + 30, T0 + 16)
    assert [j.id for j in taken] == ids[:2]
    assert all(j.holder == "B" for j in taken)
    stale = held[0]
    assert stale is not None
    stale.attempts = 1
    assert not store.swap(stale, stale.version)  # A was slow, not dead: it finds out here
    got = store.get(ids[0])
    assert got is not None
    assert (got.holder, got.version, got.attempts) == ("B", stale.version + 1, 0)
    assert store.take_over("D", T0 + 40, T0 + 20) == []  # B's leases run to T0 + 30


def test_take_over_with_own_takes_a_holders_own_jobs_at_once(store: JobStore) -> None:
    ids = queued(store, 3)
    for _ in ids[:2]:
        assert store.claim("A", T0 + 15, T0) is not None
    assert store.claim("B", T0 + 15, T0) is not None
    assert store.take_over("A", T0 + 20, T0 + 1) == []  # while running: only ended leases
    # A restarted: its leases are still live, and it need not wait for them.
    mine = store.take_over("A", T0 + 20, T0 + 1, own=True)
    assert [j.id for j in mine] == ids[:2]
    assert [j.version for j in mine] == [3, 3]
    again = store.take_over("A", T0 + 20, T0 + 1, limit=1, own=True)
    assert [j.id for j in again] == ids[:1]


def submitted_job(**fields: Any) -> Job:
    """A new job as the dispatcher writes it when it sends it at once."""
    return new_job(
        status=JobStatus.SUBMITTED, backend="backend-1", prompt_id="p-1", attempts=1, **fields
    )


def test_insert_held_writes_a_submitted_job_with_its_lease(store: JobStore) -> None:
    job = submitted_job(owner="owner-a")
    assert store.insert_held(job, "A", T0 + 15, T0)
    assert (job.version, job.holder) == (1, "A")
    got = store.get(job.id)
    assert got is not None
    assert (got.status, got.holder, got.version) == (JobStatus.SUBMITTED, "A", 1)
    assert (got.backend, got.prompt_id, got.attempts) == ("backend-1", "p-1", 1)
    assert [j.id for j in store.page(frozenset({JobStatus.SUBMITTED}), owner="owner-a")[0]] == [
        job.id
    ]
    assert store.count(frozenset({JobStatus.QUEUED})) == 0
    assert store.claim("B", T0 + 100, T0 + 50) is None  # submitted: never claimed
    assert store.renew("A", [job.id], T0 + 30) == {job.id}
    with pytest.raises(DUPLICATE):
        store.insert_held(submitted_job(id=job.id), "A", T0 + 15, T0)


def test_insert_held_never_jumps_a_queued_job(store: JobStore) -> None:
    [waiting] = queued(store, 1)
    job = submitted_job()
    assert not store.insert_held(job, "A", T0 + 15, T0)
    assert store.get(job.id) is None
    assert (job.version, job.holder) == (0, None)
    # Claimed by a holder whose lease ended: it still waits (claim would take it).
    assert store.claim("B", T0 + 15, T0) is not None
    assert not store.insert_held(job, "A", T0 + 30, T0 + 16)
    assert store.get(job.id) is None
    # Held by a live lease, or gone on: nothing waits any more.
    assert store.insert_held(job, "A", T0 + 15, T0 + 1)
    other = submitted_job()
    set_status(store, waiting, JobStatus.SUBMITTED)
    assert store.insert_held(other, "A", T0 + 15, T0 + 20)


def test_a_held_insert_whose_holder_died_is_taken_over(open_store: Opener) -> None:
    store = open_store()
    job = submitted_job()
    assert store.insert_held(job, "A", T0 + 15, T0)
    assert store.take_over("B", T0 + 30, T0 + 10) == []  # A's lease is live
    assert [j.id for j in store.take_over("A", T0 + 20, T0 + 1, own=True)] == [job.id]
    restarted = open_store()  # another process, after A died
    taken = restarted.take_over("B", T0 + 60, T0 + 21)
    assert [(j.id, j.holder, j.prompt_id, j.backend) for j in taken] == [
        (job.id, "B", "p-1", "backend-1")
    ]
    assert not store.swap(job, job.version)  # A finds out it lost the job


def test_renew_extends_only_the_holders_own_leases(store: JobStore) -> None:
    ids = queued(store, 2)
    assert store.claim("A", T0 + 15, T0) is not None
    assert store.claim("B", T0 + 15, T0) is not None
    assert store.renew("A", ids, T0 + 60) == {ids[0]}
    assert store.renew("A", [], T0 + 60) == set()
    assert [j.id for j in store.take_over("C", T0 + 90, T0 + 30)] == [ids[1]]
    assert store.renew("B", ids, T0 + 90) == set()  # B lost its job to C
    got = store.get(ids[0])
    assert got is not None
    assert got.holder == "A"


def test_a_finished_job_holds_no_lease(store: JobStore) -> None:
    ids = queued(store, 2)
    job = store.claim("A", T0 + 15, T0)
    assert job is not None
    job.move_to(JobStatus.SUCCEEDED)
    job.holder = None
    assert store.swap(job, job.version)
    got = store.get(ids[0])
    assert got is not None
    assert got.holder is None
    assert store.renew("A", ids, T0 + 60) == set()
    assert store.take_over("A", T0 + 100, T0 + 50) == []
    claimed = store.claim("B", T0 + 100, T0 + 50)
    assert claimed is not None
    assert claimed.id == ids[1]
    # Even a finished job written with its holder kept is never taken over.
    claimed.move_to(JobStatus.FAILED)
    assert store.swap(claimed, claimed.version)
    assert store.take_over("C", T0 + 300, T0 + 200) == []


# --- coalescing, idempotency keys, batches --------------------------------------------------


def test_in_flight_binds_a_key_to_one_live_job(store: JobStore) -> None:
    first, second, third = queued(store, 3)
    assert store.join_in_flight("key", first) == first
    assert store.join_in_flight("key", second) == first
    assert store.join_in_flight("other", second) == second
    store.leave_in_flight("key", second)  # not its binding: nothing happens
    assert store.join_in_flight("key", third) == first
    finish(store, first, JobStatus.FAILED)
    assert store.join_in_flight("key", second) == second  # the twin failed: a new binding
    finish(store, second)
    # Succeeded: bound until it leaves (its result is going into the cache meanwhile).
    assert store.join_in_flight("key", third) == second
    store.leave_in_flight("key", second)
    assert store.join_in_flight("key", third) == third
    # The caller joins before it inserts: a job not written yet is bound all the same.
    assert store.join_in_flight("early", "not-yet-written") == "not-yet-written"
    assert store.join_in_flight("early", second) == "not-yet-written"


def test_deleting_a_job_unbinds_its_in_flight_keys(store: JobStore) -> None:
    first, second = queued(store, 2)
    assert store.join_in_flight("key", first) == first
    finish(store, first)
    store.delete(first)
    assert store.join_in_flight("key", second) == second


def test_an_idempotency_key_binds_once(store: JobStore) -> None:
    assert store.claim_key("k", "fp-1", "job-1") == ("job-1", "fp-1")
    assert store.claim_key("k", "fp-1", "job-2") == ("job-1", "fp-1")
    assert store.claim_key("k", "fp-2", "job-3") == ("job-1", "fp-1")
    assert store.claim_key("k2", "fp-2", "job-3") == ("job-3", "fp-2")


def test_batches(store: JobStore) -> None:
    assert store.get_batch("b1") is None
    store.insert_batch("b1", {"id": "b1", "template": "txt2img", "items": 2})
    assert store.get_batch("b1") == {"id": "b1", "template": "txt2img", "items": 2}
    store.set_batch_jobs("b1", ["j1", "j2"])
    assert store.get_batch("b1") == {
        "id": "b1",
        "template": "txt2img",
        "items": 2,
        "jobs": ["j1", "j2"],
    }
    store.set_batch_jobs("no-such-batch", ["j3"])
    assert store.get_batch("no-such-batch") is None


# --- the cache index ------------------------------------------------------------------------


def entry(key: str, size: int) -> CacheEntry:
    return CacheEntry(key, [Output(f"{key}.png", "image/png", size, "9")], size)


def test_the_cache_index_keeps_sizes_and_least_recent_use(store: JobStore) -> None:
    assert (store.cache_size(), store.cache_oldest(5), store.cache_get("a")) == (0, [], None)
    store.cache_put(entry("a", 100), T0)
    store.cache_put(entry("b", 20), T0 + 1)
    store.cache_put(entry("c", 3), T0 + 2)
    assert store.cache_get("b") == entry("b", 20)
    assert store.cache_size() == 123
    assert store.cache_oldest(2) == ["a", "b"]
    store.cache_touch({"a": T0 + 5, "gone": T0 + 6})  # an unknown key is not created
    assert store.cache_oldest(5) == ["b", "c", "a"]
    assert store.cache_get("gone") is None
    store.cache_put(entry("b", 50), T0 + 7)  # replaced: its old size no longer counts
    assert store.cache_size() == 153
    assert store.cache_oldest(5) == ["c", "a", "b"]
    store.cache_delete("a")
    store.cache_delete("a")
    assert store.cache_get("a") is None
    assert (store.cache_size(), store.cache_oldest(5)) == (53, ["c", "b"])


# --- the webhook outbox ---------------------------------------------------------------------


def test_a_delivery_reads_back_and_is_due_at_its_time(store: JobStore) -> None:
    later = Delivery("j1", "http://127.0.0.1:9/a", '{"n": 1}', next_attempt_at=T0 + 5)
    store.save_delivery(later)
    assert store.get_delivery(later.id) == later
    assert store.next_delivery_at() == T0 + 5
    assert store.claim_deliveries(T0, T0 + 60, 10) == []
    later.attempts, later.last_error = 1, "timed out"
    later.next_attempt_at = T0 + 1
    store.save_delivery(later)
    assert store.get_delivery(later.id) == later
    assert [d.id for d in store.claim_deliveries(T0 + 1, T0 + 60, 10)] == [later.id]
    later.state, later.next_attempt_at = "delivered", None
    store.save_delivery(later)
    assert store.next_delivery_at() is None
    assert store.claim_deliveries(T0 + 1000, T0 + 2000, 10) == []
    assert store.get_delivery("no-such-delivery") is None


def test_deliveries_are_claimed_once_across_claimers_then_due_again(open_store: Opener) -> None:
    stores = [open_store(), open_store()]
    deliveries = [
        Delivery(f"job-{i}", "http://127.0.0.1:9/h", f'{{"n": {i}}}', next_attempt_at=T0 - i)
        for i in range(30)
    ]
    for d in deliveries:
        stores[0].save_delivery(d)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        while len(claimed) <= 2 * len(deliveries):
            batch = stores[n % 2].claim_deliveries(T0, T0 + 60, 2)
            if not batch:
                return
            with lock:
                claimed.extend(d.id for d in batch)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(d.id for d in deliveries)
    assert stores[1].claim_deliveries(T0 + 59, T0 + 120, 100) == []
    assert stores[1].next_delivery_at() == T0 + 60
    # The claimer died without writing an outcome: they are due again at ``until``.
    again = stores[1].claim_deliveries(T0 + 60, T0 + 120, 100)
    assert sorted(d.id for d in again) == sorted(claimed)
    assert {d.body for d in again} == {d.body for d in deliveries}


def test_ping_answers(store: JobStore) -> None:
    store.ping()


def test_the_opener_gives_stores_that_share_state(open_store: Opener) -> None:
    first, second = open_store(), open_store()
    [job_id] = queued(first, 1)
    assert second.get(job_id) is not None


def test_past_deadline_names_the_unfinished_jobs_past_theirs(store: JobStore) -> None:
    late, early, none, ended = (
        queued(store, 1, deadline_at=T0 + 10)[0],
        queued(store, 1, deadline_at=T0 + 100)[0],
        queued(store, 1)[0],
        queued(store, 1, deadline_at=T0 + 10)[0],
    )
    finish(store, ended)
    assert store.past_deadline(T0 + 50) == [late]
    assert sorted(store.past_deadline(T0 + 200)) == sorted([late, early])
    assert none not in store.past_deadline(T0 + 10**9)
