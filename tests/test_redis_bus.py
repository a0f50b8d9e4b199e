"""The Redis event bus past the contract: replicas (two buses on one real redis-server), a
Redis that goes away and comes back, the last status's expiry, the resolver, and the Redis
connection helpers (redisconn). The contract itself is tests/contracts/."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from comfygate import redisconn
from comfygate.config_load import load_settings
from comfygate.errors import StorageFailed
from comfygate.jobs.bus import CLOSING, Empty, Subscription, open_bus
from comfygate.jobs.memory_bus import MemoryBus
from comfygate.jobs.redis_bus import RedisBus
from tests.helpers import wait_for
from tests.processes import RedisServer, free_port

PASSWORD = "hunter2-not-in-logs"
MakeBus = Callable[..., RedisBus]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def make_bus(redis_server: RedisServer) -> Iterator[MakeBus]:
    """Buses on the test server: each one is a replica of its own."""
    buses: list[RedisBus] = []

    def make(**options: float) -> RedisBus:
        client = redisconn.connect(redis_server.url)
        bus = RedisBus(client, "test:", owns_client=True, **options)  # type: ignore[arg-type]
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def bus_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "comfygate-redis-bus"]


def receives(sub: Subscription, publish: Callable[[], None], expected: dict[str, int]) -> bool:
    """Publish, then whether ``expected`` arrives soon (what a recovering bus does)."""
    publish()
    try:
        while True:
            _, data = sub.get(timeout=0.2)
            if data == expected:
                return True
    except Empty:
        return False


def test_an_event_published_on_one_replica_reaches_the_others(make_bus: MakeBus) -> None:
    runner, follower, third = make_bus(), make_bus(), make_bus()
    with follower.subscribe("j") as sub, third.subscribe("j") as other:
        runner.publish("j", "status", {"status": "running"})
        runner.publish("j", "progress", {"value": 1})
        expected = [("status", {"status": "running"}), ("progress", {"value": 1})]
        assert [sub.get(timeout=5) for _ in range(2)] == expected
        assert [other.get(timeout=5) for _ in range(2)] == expected


def test_subscribers_counts_every_replica(make_bus: MakeBus) -> None:
    a, b = make_bus(), make_bus()
    with a.subscribe("j"):
        assert a.subscribers("j") == b.subscribers("j") == 1
        with b.subscribe("j"), b.subscribe("j"):
            assert b.subscribers("j") == 3  # its own two, and a's one
            # Exact here, at least one for every other replica that has some.
            assert a.subscribers("j") == 2
        assert wait_for(lambda: a.subscribers("j") == 1)
        assert b.subscribers("j") == 1
    assert wait_for(lambda: a.subscribers("j") == b.subscribers("j") == 0)


def test_a_redis_restart_and_events_flow_again(
    make_bus: MakeBus, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    runner, follower = make_bus(subscribe_timeout_s=0.5), make_bus()
    with follower.subscribe("j") as sub:
        for n in range(1, 4):
            runner.publish("j", "status", {"n": n})
        assert [sub.get(timeout=5)[1]["n"] for _ in range(3)] == [1, 2, 3]

        redis_server.stop()
        with caplog.at_level(logging.INFO, logger="comfygate.jobs.redis_bus"):
            runner.publish("j", "status", {"n": 4})  # dropped, not raised
            assert wait_for(lambda: "Redis is unreachable" in caplog.text)
            with pytest.raises(StorageFailed) as refused, runner.subscribe("k"):
                pass
            assert refused.value.status == 503
            assert refused.value.headers["Retry-After"] == str(redisconn.RETRY_AFTER_S)

            redis_server.start()  # the same port, empty: the event numbers start again
            # The old subscription comes back by itself...
            admin = redis_server.client()
            assert wait_for(lambda: admin.pubsub_numsub("test:events:j")[0][1] == 1, 20)
            # ...and the new numbering is not mistaken for the old events.
            make_bus().publish("j", "status", {"n": 1})
            assert sub.get(timeout=5) == ("status", {"n": 1})
            # The replica that failed to publish publishes again, and subscribes again.
            again = lambda: runner.publish("j", "status", {"n": 2})  # noqa: E731
            assert wait_for(lambda: receives(sub, again, {"n": 2}), 20)
            with runner.subscribe("j") as late:
                assert late.get(timeout=5) == ("status", {"n": 2})
            assert "Redis answers again" in caplog.text
        assert PASSWORD not in caplog.text
        assert redis_server.url not in caplog.text


def test_a_subscriber_gets_the_status_it_missed_while_redis_was_away(
    make_bus: MakeBus, redis_server: RedisServer
) -> None:
    follower = make_bus()
    with follower.subscribe("j") as sub:
        redis_server.stop()
        redis_server.start()
        # Published straight into Redis by another replica while this one reconnects (its
        # listener is down or just back): once it has resubscribed, it reads the status.
        writer = make_bus()
        writer.publish("j", "status", {"status": "succeeded"})
        assert sub.get(timeout=10) == ("status", {"status": "succeeded"})


def test_close_stops_the_listener_and_wakes_subscribers(make_bus: MakeBus) -> None:
    before = len(bus_threads())
    bus = make_bus()
    assert len(bus_threads()) == before + 1
    with bus.subscribe("j") as sub:
        bus.close()
        assert sub.get(timeout=5) == (CLOSING, {})
    assert len(bus_threads()) == before


def test_close_with_redis_down_leaves_no_thread(
    make_bus: MakeBus, redis_server: RedisServer
) -> None:
    before = len(bus_threads())
    bus = make_bus()
    with bus.subscribe("j"):
        redis_server.stop()
        bus.close()
    assert len(bus_threads()) == before


def test_the_last_status_expires_sooner_after_done(
    make_bus: MakeBus, redis_server: RedisServer
) -> None:
    bus = make_bus(status_ttl_s=1000, done_ttl_s=5)
    bus.publish("j", "status", {"status": "running"})
    admin = redis_server.client()
    keys = [k.decode() for k in admin.scan_iter("test:*")]
    assert keys == ["test:last-status:j"]
    assert 5 < int(admin.ttl(keys[0])) <= 1000
    bus.publish("j", "done", {"status": "succeeded"})
    assert 0 < int(admin.ttl(keys[0])) <= 5


def test_open_bus_is_memory_without_redis_and_redis_with_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    memory = open_bus(load_settings(environ={}))
    assert isinstance(memory, MemoryBus)
    env = {"COMFYGATE_REDIS_URL": redis_server.url, "COMFYGATE_REDIS_PREFIX": "deploy-a:"}
    settings = load_settings(environ=env)
    assert settings.redis_prefix == "deploy-a:"
    bus = open_bus(settings)
    try:
        assert isinstance(bus, RedisBus)
        with bus.subscribe("j"):
            channels = redis_server.client().pubsub_channels("deploy-a:*")
            assert b"deploy-a:events:j" in channels
    finally:
        bus.close()
    assert load_settings(environ={}).redis_prefix == "comfygate:"


def test_redis_unreachable_is_storage_failed_without_address_or_password() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    client = redisconn.connect(url, retries=0)
    with pytest.raises(StorageFailed) as failed, redisconn.as_storage_failed("reading a job"):
        client.get("x")
    error = failed.value
    assert (error.status, error.code) == (503, "backend_unavailable")
    assert error.headers["Retry-After"] == str(redisconn.RETRY_AFTER_S)
    assert "reading a job" in error.message
    shown = str(error.to_dict())
    assert PASSWORD not in shown
    assert "127.0.0.1" not in shown
    assert isinstance(error.__cause__, redis.ConnectionError)
    assert PASSWORD not in redisconn.describe(url)
    assert redisconn.describe(url).endswith(f"***@127.0.0.1:{url.rsplit(':', 1)[1]}")


def test_other_redis_errors_are_not_outages(redis_server: RedisServer) -> None:
    client = redisconn.connect(redis_server.url)
    client.set("test:s", "text")
    with pytest.raises(redis.ResponseError), redisconn.as_storage_failed("counting"):
        client.incr("test:s")  # a bug (wrong type), not a 503
