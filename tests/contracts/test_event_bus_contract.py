"""The event bus contract (jobs/bus.py), run against every implementation: ``memory``, and
``redis`` on a real redis-server (Debian's, started here on a free loopback port). A new
implementation is one more name in BUSES and one more branch in ``make_bus``."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from comfygate import redisconn
from comfygate.jobs.bus import CLOSING, Empty, EventBus, JobUpdate, Subscription
from comfygate.jobs.memory_bus import MemoryBus
from comfygate.jobs.redis_bus import RedisBus
from tests.helpers import wait_for
from tests.processes import RedisServer

BUSES = ["memory", "redis"]
MakeBus = Callable[[], EventBus]


@pytest.fixture(params=BUSES)
def make_bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeBus]:
    """Buses of one kind sharing one backing (for redis: one server, so two buses are two
    replicas); all closed at the end."""
    buses: list[EventBus] = []
    server = RedisServer(tmp_path / "redis").start() if request.param == "redis" else None

    def make() -> EventBus:
        bus: EventBus
        if server is None:
            bus = MemoryBus()
        else:
            bus = RedisBus(redisconn.connect(server.url), "test:", owns_client=True)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()
    if server is not None:
        server.stop()


@pytest.fixture
def bus(make_bus: MakeBus) -> EventBus:
    return make_bus()


def take(sub: Subscription, n: int) -> list[JobUpdate]:
    return [sub.get(timeout=5) for _ in range(n)]


def status(name: str, **more: Any) -> dict[str, Any]:
    return {"id": "j", "status": name, **more}


def test_events_arrive_in_order(bus: EventBus) -> None:
    sent: list[JobUpdate] = [("status", status("running"))]
    sent += [("progress", {"value": i, "max": 20}) for i in range(1, 21)]
    sent += [("output", {"filename": "9-0.png"}), ("status", status("succeeded"))]
    sent += [("done", status("succeeded"))]
    with bus.subscribe("j") as sub:
        for kind, data in sent:
            bus.publish("j", kind, data)
        assert take(sub, len(sent)) == sent


def test_only_the_jobs_subscribers_get_its_events(bus: EventBus) -> None:
    with bus.subscribe("a") as a, bus.subscribe("b") as b, bus.subscribe("a") as a2:
        bus.publish("a", "progress", {"value": 1})
        bus.publish("b", "progress", {"value": 2})
        # b's first event is its own: a's never reached it.
        assert take(b, 1) == [("progress", {"value": 2})]
        assert take(a, 1) == take(a2, 1) == [("progress", {"value": 1})]
        bus.publish("a", "progress", {"value": 3})
        bus.publish("b", "progress", {"value": 4})
        assert take(b, 1) == [("progress", {"value": 4})]


def test_a_late_subscriber_first_gets_the_current_status(bus: EventBus) -> None:
    bus.publish("j", "status", status("queued"))
    bus.publish("j", "status", status("running"))
    bus.publish("j", "progress", {"value": 1})
    with bus.subscribe("j") as late:
        assert take(late, 1) == [("status", status("running"))]
        bus.publish("j", "progress", {"value": 2})
        assert take(late, 1) == [("progress", {"value": 2})]
    # Another job's state is its own; a job with no status yet gives none.
    with bus.subscribe("other") as other:
        bus.publish("other", "progress", {"value": 9})
        assert take(other, 1) == [("progress", {"value": 9})]


def test_a_late_subscriber_after_the_end_gets_the_final_status(bus: EventBus) -> None:
    bus.publish("j", "status", status("running"))
    bus.publish("j", "status", status("succeeded"))
    bus.publish("j", "done", status("succeeded"))
    with bus.subscribe("j") as late:
        assert take(late, 1) == [("status", status("succeeded"))]


def test_the_current_status_is_shared_by_every_bus_on_one_backing(make_bus: MakeBus) -> None:
    """For memory, one bus is the whole backing; for redis, two buses are two replicas."""
    runner = make_bus()
    follower = runner if isinstance(runner, MemoryBus) else make_bus()
    runner.publish("j", "status", status("running"))
    with follower.subscribe("j") as late:
        assert take(late, 1) == [("status", status("running"))]
        runner.publish("j", "progress", {"value": 1})
        assert take(late, 1) == [("progress", {"value": 1})]


def reached(counter: list[int], mark: int) -> bool:
    return counter[0] >= mark


def test_subscribing_while_events_flow_loses_none_and_repeats_none(bus: EventBus) -> None:
    """Subscribers that join while a job's status changes fast each get the status current
    when they joined, then every later one: consecutive, none twice, none missing."""
    last = 1500
    published = [0]

    def publish() -> None:
        for n in range(1, last + 1):
            bus.publish("j", "status", {"n": n})
            published[0] = n

    publisher = threading.Thread(target=publish)
    with ExitStack() as stack:
        publisher.start()
        subs = []
        for mark in (100, 500, 900):
            wait_for(functools.partial(reached, published, mark), 30, step_s=0.001)
            subs.append(stack.enter_context(bus.subscribe("j")))
        publisher.join(60)
        for sub in subs:
            seen: list[int] = []
            while not seen or seen[-1] != last:
                kind, data = sub.get(timeout=5)
                assert kind == "status"
                seen.append(data["n"])
            assert seen == list(range(seen[0], last + 1))


def test_close_wakes_subscribers_now_and_later(bus: EventBus) -> None:
    bus.publish("j", "status", status("running"))
    with bus.subscribe("j") as sub:
        assert take(sub, 1) == [("status", status("running"))]
        bus.close()
        assert take(sub, 1) == [(CLOSING, {})]
    with bus.subscribe("j") as later:
        assert take(later, 1)[0][0] == CLOSING


def test_subscriber_counts(bus: EventBus) -> None:
    assert bus.subscriber_count() == 0
    assert bus.subscribers("j") == 0
    with bus.subscribe("j"):
        with bus.subscribe("j"), bus.subscribe("k"):
            assert bus.subscriber_count() == 3
            assert bus.subscribers("j") == 2
            assert bus.subscribers("k") == 1
        assert bus.subscriber_count() == 1
        assert bus.subscribers("j") == 1
        assert bus.subscribers("k") == 0
    assert bus.subscriber_count() == 0
    assert wait_for(lambda: bus.subscribers("j") == 0)


def test_get_times_out_with_empty(bus: EventBus) -> None:
    with bus.subscribe("j") as sub, pytest.raises(Empty):
        sub.get(timeout=0.05)
