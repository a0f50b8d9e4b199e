"""An optimal direct ComfyUI client: the floor the gateway's overhead is measured against.

It does the least a correct client must: one websocket kept open for all runs (so no connect
per job), ``POST /prompt`` with its own prompt id, wait on the websocket for ``executing`` with
``node: null`` for that prompt (ComfyUI sends it after writing /history), one
``GET /history/{id}``, one ``GET /view`` per output. No validation, no storage, no retries.
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

    def wait(self, prompt_id: str) -> None:
        """Until ComfyUI says the prompt ended (bounded by ``timeout_s``)."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            opcode, payload = self.ws.recv_data()
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue  # preview frames
            message = json.loads(payload)
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if message.get("type") == "execution_error":
                raise RuntimeError(f"execution failed: {data.get('exception_message')}")
            if message.get("type") == "executing" and data.get("node") is None:
                return
        raise TimeoutError(f"prompt {prompt_id} did not end in {self.timeout_s} s")

    def fetch(self, prompt_id: str, node: str) -> bytes:
        history = self.session.get(f"{self.base_url}/history/{prompt_id}", timeout=30).json()
        image = history[prompt_id]["outputs"][node]["images"][0]
        params = {k: image[k] for k in ("filename", "subfolder", "type")}
        resp = self.session.get(f"{self.base_url}/view", params=params, timeout=30)
        resp.raise_for_status()
        return resp.content

    def run(self, graph: dict[str, Any], node: str) -> bytes:
        prompt_id = self.submit(graph)
        self.wait(prompt_id)
        return self.fetch(prompt_id, node)
