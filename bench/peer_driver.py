"""Runs in bench/peer-venv (not the gateway's venv): drives Comfy-Org's comfy-api-proxy with
its SDK comfy-sdk the way their README shows (``client.workflows.from_json(graph)``,
``client.run(wf)``, ``job.get_outputs(node)[0].to_bytes()``), one job per stdin line
``{"graph": ..., "node": ...}``, answering one JSON line with its own timing. ``COMFY_BASE_URL``
points the SDK at the proxy. Imports nothing of ComfyGate.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import Any


def main() -> None:
    sdk: Any = importlib.import_module("comfy_sdk")
    client = sdk.Comfy()
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        answer: dict[str, Any]
        try:
            workflow = client.workflows.from_json(request["graph"])
            job = client.run(workflow)
            data: bytes = job.get_outputs(request["node"])[0].to_bytes()
            elapsed = time.perf_counter() - started
            answer = {
                "ok": True,
                "status": str(job.status),
                "bytes": len(data),
                "png": data[:8] == b"\x89PNG\r\n\x1a\n",
                "elapsed_s": elapsed,
                "answered_at": time.time(),
                "job_id": str(job.id),
            }
        except Exception as exc:
            traceback.print_exc()
            answer = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "elapsed_s": time.perf_counter() - started,
                "answered_at": time.time(),
            }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
