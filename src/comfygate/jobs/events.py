"""What ``jobs/service.py`` used before the engine took an ``EventBus``: the memory bus
(``jobs/memory_bus.py``) without the replay of the last status, because ``api/jobs.py``
reads the job's current state from the store itself and a replay would repeat it. Goes away
when the engine and the event stream use ``jobs.bus.EventBus`` directly."""

from __future__ import annotations

from comfygate.jobs.bus import CLOSING, JobUpdate
from comfygate.jobs.memory_bus import MemoryBus

__all__ = ["CLOSING", "JobEvents", "JobUpdate"]


class JobEvents(MemoryBus):
    def __init__(self) -> None:
        super().__init__(max_jobs=0)
