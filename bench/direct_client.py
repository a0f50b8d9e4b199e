"""An optimal direct ComfyUI client: the floor the gateway's overhead is measured against.

It does the least a correct client must: one websocket kept open for all runs (so no connect
per job), ``POST /prompt`` with its own prompt id, the output files as the websocket's
``executed`` messages name them, done at ``execution_success`` (ComfyUI has written the files
by then; no need to wait for it to write /history, or to read it), one ``GET /view`` per
output. No validation, no storage, no retries. (Until 2 December 2026 it waited for
``executing`` with ``node: null`` and read ``/history``, as ComfyUI's own example client
does; the gateway now ends a job the faster way, so the floor does too.)
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
import websocket


class DirectClient:
    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.timeout_s = timeout_s
        self.session = requests.Session()
        ws_url = self.base_url.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}"
        self.ws = websocket.create_connection(ws_url, timeout=timeout_s, suppress_origin=True)

    def close(self) -> None:
        self.ws.close()
        self.session.close()

    def __enter__(self) -> DirectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, graph: dict[str, Any]) -> str:
        prompt_id = str(uuid.uuid4())
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        resp = self.session.post(f"{self.base_url}/prompt", json=body, timeout=30)
        resp.raise_for_status()
        return prompt_id

    def wait(self, prompt_id: str) -> dict[str, Any]:
        """Until ComfyUI says the prompt succeeded (bounded by ``timeout_s``); returns the
        outputs its ``executed`` messages reported, node by node."""
        outputs: dict[str, Any] = {}
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            opcode, payload = self.ws.recv_data()
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue  # preview frames
            message = json.loads(payload)
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            kind = message.get("type")
            if kind == "executed":
                outputs[str(data.get("node"))] = data.get("output") or {}
            elif kind == "execution_success":
                return outputs
            elif kind in ("execution_error", "execution_interrupted"):
                raise RuntimeError(f"{kind}: {data.get('exception_message')}")
        raise TimeoutError(f"prompt {prompt_id} did not end in {self.timeout_s} s")

    def fetch(self, outputs: dict[str, Any], node: str) -> bytes:
        image = outputs[node]["images"][0]
        params = {k: image[k] for k in ("filename", "subfolder", "type")}
        resp = self.session.get(f"{self.base_url}/view", params=params, timeout=30)
        resp.raise_for_status()
        return resp.content

    def run(self, graph: dict[str, Any], node: str) -> bytes:
        prompt_id = self.submit(graph)
        return self.fetch(self.wait(prompt_id), node)
