"""What only the Redis job store has (the contract suite covers the rest): its keys under
one prefix, finished jobs that expire, a Redis that goes away (StorageFailed, then the same
store works again) and a Redis restart with AOF that keeps every job. On a real redis-server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from comfygate import redisconn
from comfygate.errors import StorageFailed
from comfygate.jobs.model import Delivery, JobStatus, Output
from comfygate.jobs.redis_store import EXPIRY_GRACE_S, RedisJobStore
from comfygate.jobs.store import CacheEntry
from tests.contracts.test_job_store_contract import T0, finish, new_job, queued
from tests.helpers import wait_for
from tests.processes import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as client:
        yield client


@pytest.fixture
def open_store() -> Iterator[Callable[..., RedisJobStore]]:
    """RedisJobStore(client, ...) on a client as the gateway makes it (redisconn: timeouts,
    retries with backoff); all closed at the end."""
    opened: list[RedisJobStore] = []

    def _open(
        server: RedisServer, *, retries: int = redisconn.RETRIES, **options: Any
    ) -> RedisJobStore:
        opened.append(RedisJobStore(redisconn.connect(server.url, retries=retries), **options))
        return opened[-1]

    yield _open
    for store in opened:
        store.close()


def use_everything(store: RedisJobStore) -> list[str]:
    """A bit of every kind of state, as a gateway leaves it."""
    ids = queued(store, 5, owner="owner-a")
    assert store.claim("A", T0 + 15, T0) is not None
    finish(store, ids[1])
    job = store.get(ids[2])
    assert job is not None
    job.move_to(JobStatus.FAILED)
    assert store.swap(job, job.version, delivery=Delivery(ids[2], "http://127.0.0.1:9/h", "{}"))
    store.claim_key("idem-1", "fp", ids[3])
    store.join_in_flight("coalesce-1", ids[4])
    store.insert_batch("batch-1", {"id": "batch-1"})
    store.set_batch_jobs("batch-1", ids)
    store.cache_put(CacheEntry("c1", [Output("a.png", "image/png", 10)], 10), T0)
    store.page(owner="owner-a")
    return ids


def test_every_key_is_under_the_prefix_and_prefixes_keep_deployments_apart(
    redis_server: RedisServer, client: redis.Redis, open_store: Callable[..., RedisJobStore]
) -> None:
    one = open_store(redis_server, prefix="one:")
    two = open_store(redis_server, prefix="two:")
    ids = use_everything(one)
    use_everything(two)
    keys = [k.decode() for k in client.scan_iter("*")]
    assert len(keys) > 20
    assert all(k.startswith(("one:", "two:")) for k in keys), keys
    assert sum(k.startswith("one:") for k in keys) == sum(k.startswith("two:") for k in keys)
    assert two.get(ids[0]) is None
    assert ids[0] not in [j.id for j in two.page(limit=100)[0]]
    assert two.count(frozenset(JobStatus)) == 5


def test_a_client_that_decodes_responses_works_alike(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as text:
        store = RedisJobStore(text)
        ids = use_everything(store)
        job = store.get(ids[0])
        assert job is not None
        assert (job.holder, job.version) == ("A", 2)
        assert store.claim_key("idem-1", "x", "y") == (ids[3], "fp")
        assert [d.job_id for d in store.claim_deliveries(T0, T0 + 60, 5)] == [ids[2]]
        assert store.cache_oldest(5) == ["c1"]


def test_deleting_a_job_leaves_nothing_of_it_in_redis(
    redis_server: RedisServer, client: redis.Redis, open_store: Callable[..., RedisJobStore]
) -> None:
    store = open_store(redis_server)
    ids = use_everything(store)
    for job_id in ids:
        store.delete(job_id)

    def mentions(key: bytes) -> str:
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "zset":
            return repr(client.zrange(key, 0, -1))
        if kind == "set":
            return repr(client.smembers(key))
        if kind == "hash":
            return repr(client.hgetall(key))
        return repr(client.get(key))

    left = {k.decode(): mentions(k) for k in client.scan_iter("*")}
    assert left  # the cache entry, the batch, the counter
    for job_id in ids:
        assert [k for k, v in left.items() if job_id in k + v and "batch" not in k] == []


def test_a_finished_job_expires_after_the_retention(
    redis_server: RedisServer, client: redis.Redis, open_store: Callable[..., RedisJobStore]
) -> None:
    store = open_store(redis_server, retention_s=3600)
    done, live = queued(store, 2)
    store.claim_key("idem", "fp", done)
    job = finish(store, done)
    delivery = Delivery(done, "http://127.0.0.1:9/h", "{}")
    assert store.swap(job, job.version, delivery=delivery)
    for key in (f"comfygate:job:{done}", "comfygate:idem:idem", f"comfygate:dlv:{delivery.id}"):
        ttl = client.ttl(key)
        assert 3600 <= ttl <= 3600 + EXPIRY_GRACE_S, key
    assert client.ttl(f"comfygate:job:{live}") == -1  # an unfinished job never expires

    # Expired (nobody swept it): it is gone from reads and pages, and the index forgets it.
    brief = open_store(redis_server, prefix="brief:", retention_s=0.05, grace_s=0.05)
    [gone] = queued(brief, 1, owner="o")
    finish(brief, gone)
    assert wait_for(lambda: brief.get(gone) is None, 5)
    assert brief.page(owner="o") == ([], None)
    assert brief.page() == ([], None)
    assert client.zcard("brief:owner:o:succeeded") == 0
    assert brief.finished_before(T0 + 100) == [gone]  # the sweep still finds and deletes it
    brief.delete(gone)
    assert brief.finished_before(T0 + 100) == []
    assert brief.count(frozenset(JobStatus)) == 0


def test_a_redis_that_goes_away_gives_storage_failed_then_the_store_works_again(
    redis_server: RedisServer, open_store: Callable[..., RedisJobStore]
) -> None:
    store = open_store(redis_server, retries=0)  # each call fails at once, not after backoff
    [job_id] = queued(store, 1)
    job = store.get(job_id)
    assert job is not None
    redis_server.stop()

    calls: dict[str, Callable[[], object]] = {
        "ping": store.ping,
        "get": lambda: store.get(job_id),
        "insert": lambda: store.insert(new_job()),
        "swap": lambda: store.swap(job, job.version),
        "page": store.page,
        "claim": lambda: store.claim("A", T0 + 15, T0),
        "renew": lambda: store.renew("A", [job_id], T0 + 30),
        "claim_key": lambda: store.claim_key("k", "fp", job_id),
        "cache_size": store.cache_size,
        "claim_deliveries": lambda: store.claim_deliveries(T0, T0 + 60, 10),
    }
    for name, call in calls.items():
        with pytest.raises(StorageFailed) as raised:
            call()
        assert raised.value.status == 503, name
        assert raised.value.headers["Retry-After"], name
        assert str(redis_server.port) not in raised.value.message, name
        assert isinstance(raised.value.__cause__, redis.ConnectionError), name

    redis_server.start()  # the same port, empty (no persistence): the same store object
    store.ping()
    assert store.get(job_id) is None
    [again] = queued(store, 1)
    claimed = store.claim("A", T0 + 15, T0)
    assert claimed is not None
    assert claimed.id == again


def test_a_write_re_sent_after_its_reply_was_lost_answers_as_the_first_time(
    redis_server: RedisServer, open_store: Callable[..., RedisJobStore]
) -> None:
    # redisconn re-sends a command that timed out; Redis may have run it the first time.
    store = open_store(redis_server)
    job = new_job()
    store.insert(job)
    store.insert(job)  # the same record again: not "exists"
    with pytest.raises(ValueError, match="exists"):
        store.insert(new_job(id=job.id, template="other"))  # another record, that id
    job.attempts = 1
    assert store.swap(job, 1)
    assert store.swap(job, 1)  # its own write, found one version on
    assert job.version == 2
    other = store.get(job.id)
    assert other is not None
    other.attempts = 2
    assert not store.swap(other, 1)  # another write on the same version is stale
    other.holder = "B"
    other.attempts = 1
    assert not store.swap(other, 1)  # the same record from another holder is too
    got = store.get(job.id)
    assert got is not None
    assert (got.version, got.attempts, got.holder) == (2, 1, None)


def test_with_aof_a_redis_restart_keeps_every_job(
    tmp_path: Path, open_store: Callable[..., RedisJobStore]
) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        store = open_store(server)
        ids = use_everything(store)
        before = [store.get(i) for i in ids]
        page = store.page(limit=100)
        server.stop()  # SIGKILL: no chance to write anything more
        server.start()

        assert [store.get(i) for i in ids] == before
        assert store.page(limit=100) == page
        assert store.claim_key("idem-1", "other", "x") == (ids[3], "fp")
        assert store.join_in_flight("coalesce-1", "x") == ids[4]
        assert store.cache_size() == 10
        assert store.next_delivery_at() is not None
        # The lease survived too: A's job is taken over once it ends, not before.
        assert store.take_over("B", T0 + 30, T0 + 10) == []
        assert [j.id for j in store.take_over("B", T0 + 30, T0 + 16)] == [ids[0]]
    finally:
        server.stop()


def test_many_threads_at_once_wait_for_a_connection_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    """More request threads than the pool has connections (a gateway under load): each
    waits for a free one; none is told that Redis is unavailable (redis-py's own pool
    refused the 101st at once, which came out as 503s with Redis healthy)."""
    store = RedisJobStore(redisconn.connect(redis_server.url, max_connections=8), "t:")
    job = new_job()
    store.insert(job)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(20):
                assert store.get(job.id) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    store.close()
