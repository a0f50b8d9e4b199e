"""The prompt as a graph: links between nodes, the order nodes run in (ComfyUI's
``comfy_execution.graph.ExecutionList``) and the cache key of a node's result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from .folders import Folders


def is_link(obj: Any) -> bool:
    """ComfyUI's ``is_link``: ``[node_id: str, output_index: int | float]``."""
    if not isinstance(obj, list) or len(obj) != 2:
        return False
    if not isinstance(obj[0], str):
        return False
    return isinstance(obj[1], int | float) and not isinstance(obj[1], bool)


def _linked_ids(node: dict[str, Any]) -> list[str]:
    """The ids of the nodes whose outputs ``node`` takes as inputs (in input order)."""
    return [value[0] for value in node["inputs"].values() if is_link(value)]


def descendants(prompt: dict[str, Any], node_id: str) -> set[str]:
    """``node_id`` and every node that depends on it, directly or not."""
    found = {node_id}
    changed = True
    while changed:
        changed = False
        for other, node in prompt.items():
            if other in found:
                continue
            if any(linked in found for linked in _linked_ids(node)):
                found.add(other)
                changed = True
    return found


def ancestors(prompt: dict[str, Any], node_ids: Sequence[str]) -> list[str]:
    """``node_ids`` and every node of the prompt they depend on, directly or not."""
    seen: list[str] = []
    stack = list(node_ids)
    while stack:
        node_id = stack.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen.append(node_id)
        stack.extend(_linked_ids(prompt[node_id]))
    return seen


class ExecutionList:
    """The nodes left to run and what blocks them (``comfy_execution.graph.ExecutionList``)."""

    def __init__(
        self,
        prompt: dict[str, Any],
        definitions: dict[str, Any],
        is_cached: Callable[[str], bool],
    ) -> None:
        self.prompt = prompt
        self.defs = definitions
        self.is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[Any, bool]]] = {}

    def add_node(self, node_id: str) -> None:
        node_ids = [node_id]
        links: list[tuple[str, Any, str]] = []
        while node_ids:
            unique_id = node_ids.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if is_link(value):
                    from_id, from_socket = value
                    if not self.is_cached(from_id):
                        node_ids.append(from_id)
                    links.append((from_id, from_socket, unique_id))
        for from_id, from_socket, to_id in links:
            if not self.is_cached(from_id):
                self.add_node(from_id)
                if to_id not in self.blocking[from_id]:
                    self.blocking[from_id][to_id] = {}
                    self.block_count[to_id] += 1
                self.blocking[from_id][to_id][from_socket] = True

    def is_empty(self) -> bool:
        return not self.pending

    def _is_output(self, node_id: str) -> bool:
        return bool(self.defs[self.prompt[node_id]["class_type"]]["output_node"])

    def stage(self) -> str:
        """The next node to run (``ux_friendly_pick_node`` of the real server)."""
        available = [n for n in self.pending if self.block_count[n] == 0]
        if not available:
            raise RuntimeError("dependency cycle")
        for node_id in available:
            if self._is_output(node_id):
                return node_id
        for node_id in available:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in available:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return available[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]


def signature(prompt: dict[str, Any], node_id: str, folders: Folders, memo: dict[str, str]) -> str:
    """Cache key of a node: its class, literal inputs and the keys of its ancestors."""
    if node_id in memo:
        return memo[node_id]
    memo[node_id] = "<cycle>"
    node = prompt[node_id]
    parts: list[Any] = [node["class_type"]]
    if node["class_type"] == "LoadImage":  # IS_CHANGED: the file's hash
        data = folders.resolve_annotated(str(node["inputs"].get("image", "")))
        parts.append(hashlib.sha256(data).hexdigest() if data is not None else None)
    for name in sorted(node["inputs"]):
        value = node["inputs"][name]
        if is_link(value) and value[0] in prompt:
            parts.append([name, "link", signature(prompt, value[0], folders, memo), value[1]])
        else:
            parts.append([name, "value", value])
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    memo[node_id] = digest
    return digest
