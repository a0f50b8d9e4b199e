"""The memory bus past the contract: what it remembers for late subscribers is bounded (a
number of jobs, and a time after each job's end); ``max_jobs=0`` replays nothing."""

from __future__ import annotations

from comfygate.jobs.bus import Subscription
from comfygate.jobs.memory_bus import MemoryBus


def first(bus: MemoryBus, job_id: str) -> tuple[str, object]:
    """What a late subscriber of ``job_id`` gets first (a marker if nothing is remembered)."""
    sub: Subscription
    with bus.subscribe(job_id) as sub:
        bus.publish(job_id, "progress", {"marker": True})
        return sub.get(timeout=5)


def test_the_least_recently_updated_jobs_are_forgotten_past_max_jobs() -> None:
    bus = MemoryBus(max_jobs=2)
    for job in ("a", "b", "c"):
        bus.publish(job, "status", {"id": job})
    bus.publish("b", "status", {"id": "b", "again": True})  # b is now the freshest
    bus.publish("d", "status", {"id": "d"})
    assert bus.remembered() == 2
    assert first(bus, "a") == ("progress", {"marker": True})
    assert first(bus, "c") == ("progress", {"marker": True})
    assert first(bus, "b") == ("status", {"id": "b", "again": True})
    assert first(bus, "d") == ("status", {"id": "d"})


def test_the_last_status_is_dropped_some_time_after_done() -> None:
    now = [1000.0]
    bus = MemoryBus(done_ttl_s=60, clock=lambda: now[0])
    bus.publish("j", "status", {"status": "running"})
    now[0] += 10_000  # a job that runs for hours keeps its status
    assert first(bus, "j") == ("status", {"status": "running"})
    bus.publish("j", "status", {"status": "succeeded"})
    bus.publish("j", "done", {"status": "succeeded"})
    now[0] += 59
    assert first(bus, "j") == ("status", {"status": "succeeded"})
    now[0] += 1
    assert first(bus, "j") == ("progress", {"marker": True})
    assert bus.remembered() == 0


def test_a_bus_that_remembers_no_job_replays_nothing() -> None:
    events = MemoryBus(max_jobs=0)
    events.publish("j", "status", {"status": "running"})
    assert first(events, "j") == ("progress", {"marker": True})
    assert events.remembered() == 0
