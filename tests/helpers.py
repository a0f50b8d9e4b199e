"""Small test helpers: waiting on a condition with a deadline, reading SSE streams."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    """Poll a condition until it holds or the deadline passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Events of a server-sent event stream as (event, decoded data); comments dropped."""
    events: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def comfy_idle(url: str) -> bool:
    """ComfyUI (real or fake) has nothing running and nothing pending."""
    queue = requests.get(f"{url}/queue", timeout=5).json()
    return not queue["queue_running"] and not queue["queue_pending"]
