"""What a ComfyUI restart loses: the prompt queue, the running prompts, the history and the
prompt counter."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# ComfyUI's MAXIMUM_HISTORY_SIZE: the oldest entry goes when the history is longer.
MAXIMUM_HISTORY_SIZE = 10000


@dataclass
class QueueItem:
    """A queued prompt; the queue is a heap ordered by ``number`` (``front`` prompts get a
    negative number)."""

    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    sensitive: dict[str, Any] = field(default_factory=dict)

    def __lt__(self, other: QueueItem) -> bool:
        return (self.number, self.prompt_id) < (other.number, other.prompt_id)

    def as_list(self) -> list[Any]:
        """The 5-element form of /queue and /history (sensitive data removed)."""
        return copy.deepcopy(
            [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]
        )


class State:
    """The queue, the running prompts (by task number), the history and the prompt counter."""

    def __init__(self) -> None:
        self.queue: list[QueueItem] = []
        self.running: dict[int, QueueItem] = {}
        self.task_counter = 0
        self.history: dict[str, dict[str, Any]] = {}
        self.number = 0
