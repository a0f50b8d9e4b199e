"""A simple polling ComfyUI client, the design many scripts use: submit the graph, read
``/history/{id}`` every second until the prompt is there, then fetch the image from ``/view``.

The completion benchmark compares it with the gateway. As a script it runs one model-free job:

    .venv/bin/python bench/polling_client.py --comfyui http://127.0.0.1:8188 -o out.png
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


@dataclass(frozen=True)
class PolledResult:
    prompt_id: str
    image: bytes
    answered_at: float  # time.time() when the bytes were in hand
    polls: int


def run(
    base_url: str,
    graph: dict[str, Any],
    node: str,
    *,
    interval_s: float = 1.0,
    timeout_s: float = 600.0,
    session: requests.Session | None = None,
) -> PolledResult:
    http = session or requests.Session()
    base = base_url.rstrip("/")
    resp = http.post(f"{base}/prompt", json={"prompt": graph, "client_id": uuid.uuid4().hex})
    resp.raise_for_status()
    prompt_id = str(resp.json()["prompt_id"])
    deadline = time.monotonic() + timeout_s
    polls = 0
    while time.monotonic() < deadline:
        time.sleep(interval_s)
        polls += 1
        history = http.get(f"{base}/history/{prompt_id}", timeout=30).json()
        if prompt_id not in history:
            continue
        entry = history[prompt_id]
        if not entry.get("status", {}).get("completed"):
            raise RuntimeError(f"prompt {prompt_id} failed: {entry.get('status')}")
        image = entry["outputs"][node]["images"][0]
        params = {k: image[k] for k in ("filename", "subfolder", "type")}
        view = http.get(f"{base}/view", params=params, timeout=30)
        view.raise_for_status()
        return PolledResult(prompt_id, view.content, time.time(), polls)
    raise TimeoutError(f"prompt {prompt_id} not finished after {timeout_s} s")


def main() -> None:
    from bench.workloads import SOLID

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--comfyui", default="http://127.0.0.1:8188")
    p.add_argument("-o", "--output", type=Path, default=Path("polled.png"))
    args = p.parse_args()
    result = run(args.comfyui, SOLID.graph(SOLID.params()), SOLID.output_node)
    args.output.write_bytes(result.image)
    print(f"{args.output}: {len(result.image)} bytes after {result.polls} polls")


if __name__ == "__main__":
    main()
