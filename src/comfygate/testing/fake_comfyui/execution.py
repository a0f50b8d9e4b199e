"""Running one prompt, the way ComfyUI's ``execution.PromptExecutor`` does: which nodes run and
in what order, the "classic" output cache (identical sub-graphs of the previous prompt are
reported in ``execution_cached`` and not run again; cached output nodes still send
``executed``), the websocket messages of a run and the failures it can end with.

What a node computes lives in :mod:`.nodes`; this module is everything around it.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .catalogue import input_info
from .folders import Folders
from .graph import ExecutionList, ancestors, descendants, is_link, signature
from .nodes import NodeError, function_of, run_node
from .state import QueueItem
from .tracebacks import full_type_name, node_raise_tb

if TYPE_CHECKING:
    from .server import Server

# Binary websocket event types (ComfyUI's BinaryEventTypes).
_PREVIEW_IMAGE = 1
_PREVIEW_IMAGE_WITH_METADATA = 4
_JPEG = 1  # the image type of a PREVIEW_IMAGE frame


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class Failure:
    """A run-time failure injected by :meth:`FakeComfyUI.fail_next_execution`."""

    node_id: str | None
    message: str
    exception_type: str


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


def _format_value(x: Any) -> Any:
    """ComfyUI's ``format_value`` for ``current_inputs``."""
    if x is None or isinstance(x, int | float | bool | str):
        return x
    return str(x)


class PromptRun:
    """One prompt being run by the worker; also the :class:`.nodes.RunContext` of its nodes."""

    def __init__(self, server: Server, item: QueueItem, failure: Failure | None) -> None:
        self.server = server
        self.fake = server.fake
        self.item = item
        self.prompt = item.prompt
        self.prompt_id = item.prompt_id
        self.extra_data = item.extra_data
        client_id = item.extra_data.get("client_id")
        self.client_id: str | None = None if client_id is None else str(client_id)
        self.failure = failure
        self.defs = server.definitions()
        self.messages: list[list[Any]] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, tuple[Any, ...]] = {}
        self.ui_outputs: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.sigs: dict[str, str] = {}
        self.success = False
        self.service_share = 0.0
        self.fail_node: str | None = None

    # -- what nodes see (RunContext) ---------------------------------------------------------
    @property
    def folders(self) -> Folders:
        return self.fake._folders

    @property
    def previews(self) -> bool:
        return self.fake.previews

    @property
    def step_time_s(self) -> float:
        return self.fake.step_time_s

    async def busy(self, seconds: float) -> None:
        await self.server.busy(seconds)

    def sampler_step(self, node_id: str, step: int, steps: int, preview: bytes | None) -> None:
        server = self.server
        self._set_progress(node_id, "running", step, steps)
        with_metadata = server.supports_preview_metadata(self.client_id)
        if preview is not None and with_metadata:
            metadata = json.dumps(
                {
                    "node_id": node_id,
                    "prompt_id": self.prompt_id,
                    "display_node_id": node_id,
                    "parent_node_id": None,
                    "real_node_id": node_id,
                    "image_type": "image/jpeg",
                }
            ).encode()
            header = struct.pack(">II", _PREVIEW_IMAGE_WITH_METADATA, len(metadata))
            server.send_bytes(header + metadata + preview, self.client_id)
        server.send(
            "progress",
            {"value": step, "max": steps, "prompt_id": self.prompt_id, "node": node_id},
            self.client_id,
        )
        if preview is not None and not with_metadata:
            server.send_bytes(struct.pack(">II", _PREVIEW_IMAGE, _JPEG) + preview, self.client_id)

    # -- messages ---------------------------------------------------------------------------
    def add_message(self, event: str, data: dict[str, Any], *, broadcast: bool) -> None:
        """A message that is also kept in the history entry's ``status.messages``."""
        data = {**data, "timestamp": now_ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            self.server.send(event, data, self.client_id)

    def _send_executed(self, node_id: str, output: Any) -> None:
        if self.client_id is not None:
            self.server.send(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": output,
                    "prompt_id": self.prompt_id,
                },
                self.client_id,
            )

    def _set_progress(
        self, node_id: str, state: str, value: float | None = None, maximum: float | None = None
    ) -> None:
        """Update a node's progress (``value`` None: its maximum) and send ``progress_state``."""
        entry = self.progress.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        entry["state"] = state
        if maximum is not None:
            entry["max"] = maximum
        entry["value"] = entry["max"] if value is None else value
        self._send_progress_state()

    def _send_progress_state(self) -> None:
        """Every node that is not pending, with its progress."""
        nodes = {
            node_id: {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, entry in self.progress.items()
            if entry["state"] != "pending"
        }
        self.server.send(
            "progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.client_id
        )

    # -- the prompt ------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Run the prompt; returns the ``outputs`` and ``meta`` of its history entry."""
        server = self.server
        cache = self.fake._cache
        server.interrupt.clear()
        server.client_id = self.client_id
        self.add_message("execution_start", {"prompt_id": self.prompt_id}, broadcast=False)

        memo: dict[str, str] = {}
        self.sigs = {n: signature(self.prompt, n, self.fake._folders, memo) for n in self.prompt}
        used = set(self.sigs.values()) if self.fake.caching else set()
        for key in [k for k in cache if k not in used]:
            del cache[key]
        if self.failure is not None:
            reachable = ancestors(self.prompt, self.item.outputs_to_execute)
            wanted = self.failure.node_id
            self.fail_node = wanted if wanted in reachable else self.item.outputs_to_execute[0]
            for node_id in descendants(self.prompt, self.fail_node):
                cache.pop(self.sigs[node_id], None)

        cached_nodes = [n for n in self.prompt if self.sigs[n] in cache]
        self.add_message(
            "execution_cached",
            {"nodes": cached_nodes, "prompt_id": self.prompt_id},
            broadcast=False,
        )
        execution_list = ExecutionList(self.prompt, self.defs, lambda n: self.sigs[n] in cache)
        for node_id in self.item.outputs_to_execute:
            execution_list.add_node(node_id)
        to_run = [n for n in execution_list.pending if self.sigs[n] not in cache]
        self.service_share = self.fake.service_time_s / len(to_run) if to_run else 0.0

        while not execution_list.is_empty():
            node_id = execution_list.stage()
            error = await self._execute(node_id)
            if error is not None:
                self._handle_error(node_id, error)
                break
            execution_list.complete(node_id)
        else:
            self.success = True
            self.add_message("execution_success", {"prompt_id": self.prompt_id}, broadcast=False)

        server.last_node_id = None
        return {
            "outputs": {n: ui["output"] for n, ui in self.ui_outputs.items()},
            "meta": {n: ui["meta"] for n, ui in self.ui_outputs.items()},
        }

    def _handle_error(self, node_id: str, error: Interrupted | NodeError) -> None:
        message: dict[str, Any] = {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
        }
        if isinstance(error, Interrupted):
            self.add_message("execution_interrupted", message, broadcast=True)
            return
        message.update(
            {
                "exception_message": f"{error.message}\n",
                "exception_type": error.exception_type,
                "traceback": error.traceback,
                "current_inputs": error.current_inputs,
                "current_outputs": list(self.prompt),
            }
        )
        self.add_message("execution_error", message, broadcast=False)

    def _output_of(self, node_id: str) -> tuple[Any, ...] | None:
        if node_id in self.outputs:
            return self.outputs[node_id]
        entry = self.fake._cache.get(self.sigs.get(node_id, ""))
        return entry.outputs if entry is not None else None

    def _input_data(self, node_id: str) -> dict[str, Any]:
        """The node's inputs (links resolved) plus its hidden inputs, like get_input_data."""
        node = self.prompt[node_id]
        definition = self.defs[node["class_type"]]
        data: dict[str, Any] = {}
        for name, value in node["inputs"].items():
            _, category, _ = input_info(definition, name)
            if is_link(value):
                outputs = self._output_of(value[0])
                index = int(value[1])
                if outputs is not None and index < len(outputs):
                    data[name] = outputs[index]
            elif category is not None:
                data[name] = value
        for name, kind in definition["input"].get("hidden", {}).items():
            if kind == "PROMPT":
                data[name] = self.prompt
            elif kind == "EXTRA_PNGINFO":
                data[name] = self.extra_data.get("extra_pnginfo")
        return data

    async def _execute(self, node_id: str) -> Interrupted | NodeError | None:
        """Run one node (or replay its cached result); the error it ended with, if any."""
        server = self.server
        class_type = self.prompt[node_id]["class_type"]
        cached = self.fake._cache.get(self.sigs[node_id])
        if cached is not None and node_id != self.fail_node:
            self._send_executed(node_id, cached.ui.get("output") if cached.ui is not None else None)
            if cached.ui is not None:
                self.ui_outputs[node_id] = cached.ui
            self.outputs[node_id] = cached.outputs
            self._set_progress(node_id, "finished")
            return None

        self._set_progress(node_id, "running", 0.0, 1.0)
        if self.client_id is not None:
            server.last_node_id = node_id
            server.send(
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id},
                self.client_id,
            )
        inputs = self._input_data(node_id)
        try:
            server.check_interrupt()
            await server.busy(self.service_share)
            if node_id == self.fail_node and self.failure is not None:
                failure = self.failure
                raise NodeError(
                    failure.exception_type,
                    failure.message,
                    node_raise_tb(function_of(class_type), failure.exception_type, failure.message),
                )
            outputs, ui = await run_node(self, node_id, class_type, inputs)
        except Interrupted as ex:
            return ex
        except Exception as ex:
            if isinstance(ex, NodeError):
                error = ex
            else:  # what ComfyUI reports for any exception a node raises
                error = NodeError(
                    full_type_name(type(ex)),
                    str(ex),
                    node_raise_tb(function_of(class_type), type(ex).__name__, str(ex)),
                )
            error.current_inputs = {k: [_format_value(v)] for k, v in inputs.items()}
            return error

        ui_entry: dict[str, Any] | None = None
        if ui:
            ui_entry = {
                "meta": {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                },
                "output": ui,
            }
            self.ui_outputs[node_id] = ui_entry
            self._send_executed(node_id, ui)
        self.outputs[node_id] = outputs
        if self.fake.caching:
            self.fake._cache[self.sigs[node_id]] = CacheEntry(outputs, ui_entry)
        self._set_progress(node_id, "finished")
        self.executed.append(node_id)
        return None
