"""UI format (what ComfyUI's 'Save' writes: ``nodes`` and ``links``) to API format.

Only a ComfyUI's node definitions (GET /object_info) say which widget value is which input.
The conversion follows ComfyUI's frontend: subgraphs are expanded first (``subgraphs``), then
legacy group nodes (``workflow>...``, ``groupnodes``);
widget values are mapped onto the inputs that are not link types (required then optional, in
``input_order``); the "control after generate" value after a seed (a string, or a boolean in
early-2023 saves) is skipped; muted nodes are left out; bypassed nodes pass their input of the
same type through; Reroute nodes are followed; PrimitiveNode values are written into every
input they feed (and those inputs are remembered as tied: one parameter writes them all);
Note and MarkdownNote nodes are dropped. Node types the ComfyUI does not know are named all
at once when connected, left out with a note when not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from comfygate.templates.infer import groupnodes
from comfygate.templates.infer.formats import EXPORT_HINT, TemplateImportError, id_key
from comfygate.templates.infer.grouplayout import unknown_types
from comfygate.templates.infer.links import Link, parse_links
from comfygate.templates.infer.nodeinfo import (
    WIDGET_TYPES,
    fits,
    ordered_inputs,
    spec_default,
    spec_kind,
)
from comfygate.templates.infer.subgraphs import OVERRIDES, PRIMITIVE, definitions, expand

NOTES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
MUTED, BYPASSED = 2, 4
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})

Input = tuple[str, str]  # (node id, input name)


@dataclass
class Converted:
    """The API-format graph and the groups of inputs one PrimitiveNode feeds."""

    graph: dict[str, Any]
    ties: list[list[Input]] = field(default_factory=list)


def convert_ui(data: dict[str, Any], object_info: dict[str, Any], notes: list[str]) -> Converted:
    return _UIConverter(data, object_info, notes).convert()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_control(value: Any) -> bool:
    # isinstance, not ``in``: True == 1, and a real value of 1 must not be skipped.
    return isinstance(value, bool) or (isinstance(value, str) and value in _CONTROL_VALUES)


class _UIConverter:
    def __init__(self, data: dict[str, Any], object_info: dict[str, Any], notes: list[str]):
        self.object_info = object_info
        self.notes = notes
        self.nodes: dict[str, dict[str, Any]] = {}
        for raw in data["nodes"]:
            if not isinstance(raw, dict) or "id" not in raw or not isinstance(raw.get("type"), str):
                raise TemplateImportError(
                    "UI-format workflow: every entry of 'nodes' needs an 'id' and a 'type'"
                )
            self.nodes[str(raw["id"])] = raw
        self.links: dict[Any, Link] = parse_links(data.get("links", []))
        expand(self.nodes, self.links, definitions(data))
        self.groups = groupnodes.definitions(data)
        groupnodes.expand(self.nodes, self.links, self.groups, object_info)
        self.fed: dict[str, list[Input]] = defaultdict(list)  # PrimitiveNode -> inputs

    def convert(self) -> Converted:
        graph: dict[str, Any] = {}
        unknown: list[str] = []
        for node_id in sorted(self.nodes, key=id_key):
            node = self.nodes[node_id]
            class_type: str = node["type"]
            label = f"node {node_id} ({class_type})"
            if node.get("mode") in (MUTED, BYPASSED) or class_type in NOTES:
                continue
            if class_type in (REROUTE, PRIMITIVE):
                continue  # followed or inlined where they are used
            info = self.object_info.get(class_type)
            if not isinstance(info, dict):
                group = groupnodes.group_name(node)
                if group is not None:  # a group node holding unknown node types
                    inner = unknown_types(self.groups[group], self.object_info)
                    label = f"node {node_id} (group node {group!r}, holding {', '.join(inner)})"
                if self._connected(node):
                    unknown.append(label)
                else:
                    self.notes.append(
                        f"left out {label}: unknown to this ComfyUI, connected to nothing"
                    )
                continue
            graph[node_id] = {"class_type": class_type, "inputs": self._inputs(node_id, node, info)}
        if unknown:
            raise TemplateImportError(
                f"{len(unknown)} node(s) of types this ComfyUI does not know (custom nodes that "
                f"are not installed?): {', '.join(unknown)}; install them, or {EXPORT_HINT}"
            )
        if not graph:
            raise TemplateImportError(f"the workflow has no nodes to run; {EXPORT_HINT}")
        ties = [inputs for inputs in self.fed.values() if len(inputs) > 1]
        return Converted(graph, ties)

    def _connected(self, node: dict[str, Any]) -> bool:
        inputs, outputs = _list(node.get("inputs")), _list(node.get("outputs"))
        return any(isinstance(i, dict) and i.get("link") is not None for i in inputs) or any(
            isinstance(o, dict) and o.get("links") for o in outputs
        )

    def _inputs(self, node_id: str, node: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        class_type: str = node["type"]
        label = f"node {node_id} ({class_type})"
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if values is None:
            values = []
        if not isinstance(values, list | dict):
            raise TemplateImportError(f"{label}: 'widgets_values' must be a list")
        overrides: dict[str, Any] = node.get(OVERRIDES) or {}
        position = 0
        for input_name, spec in ordered_inputs(info):
            kind, options, choices = spec_kind(spec)
            if kind not in WIDGET_TYPES or options.get("forceInput"):
                continue
            if isinstance(values, dict):
                found = input_name in values
                value = values.get(input_name)
            else:
                found = position < len(values)
                value = values[position] if found else None
                position += found
                with_control = options.get("control_after_generate") or (
                    kind == "INT" and input_name in ("seed", "noise_seed")
                )
                if found and with_control and position < len(values):
                    position += _is_control(values[position])
            if input_name in overrides:
                found, value = True, overrides[input_name]
            if not found:
                value = spec_default(kind, options, choices)
                self.notes.append(
                    f"{label} has no value for {input_name!r}: used {value!r}, "
                    "ComfyUI's default (check it)"
                )
            elif not fits(kind, value):
                raise TemplateImportError(
                    f"{label}: the value {value!r} for {input_name!r} is not {kind}: the "
                    f"workflow's widget values do not match this ComfyUI's {class_type} (saved "
                    f"with another version?); {EXPORT_HINT}"
                )
            inputs[input_name] = value
        for slot in _list(node.get("inputs")):
            if not isinstance(slot, dict) or slot.get("link") is None:
                continue
            widget_name = (slot.get("widget") or {}).get("name")
            slot_name = widget_name if isinstance(widget_name, str) else slot.get("name")
            if not isinstance(slot_name, str):
                raise TemplateImportError(f"{label}: an input has no name")
            source = self._resolve(slot["link"], label)
            if source is None:
                if widget_name is None:
                    inputs.pop(slot_name, None)
            elif source[0] == "value":
                inputs[slot_name] = source[2]
                self.fed[source[1]].append((node_id, slot_name))
            else:
                inputs[slot_name] = [source[1], source[2]]
        return inputs

    def _resolve(self, link_id: Any, where: str) -> tuple[str, str, Any] | None:
        """Where a link's value comes from, through Reroutes and bypassed nodes:
        ("link", node_id, slot) or ("value", primitive_id, value); None if from nothing that
        runs (a muted node, a Note, a missing node)."""
        for _ in range(len(self.nodes) + 1):
            link = self.links.get(link_id)
            if link is None:
                self.notes.append(f"{where}: link {link_id!r} is not in 'links': left unconnected")
                return None
            origin = self.nodes.get(link.origin)
            if origin is None or origin.get("mode") == MUTED or origin["type"] in NOTES:
                why = "a muted node" if origin is not None else "a node the workflow lacks"
                self.notes.append(
                    f"{where}: an input comes from {why} (node {link.origin}): left unconnected"
                )
                return None
            if origin["type"] == PRIMITIVE:
                values = origin.get("widgets_values")
                if not isinstance(values, list) or not values:
                    raise TemplateImportError(f"PrimitiveNode {link.origin} has no value")
                return ("value", link.origin, values[0])
            if origin["type"] == REROUTE or origin.get("mode") == BYPASSED:
                next_link = self._pass_through(origin, link)
                if next_link is None:
                    return None
                link_id = next_link
                continue
            return ("link", link.origin, link.slot)
        raise TemplateImportError(f"{where}: its links go round in a loop")

    def _pass_through(self, node: dict[str, Any], link: Link) -> Any:
        """The link into a Reroute or bypassed node that stands for its output ``link.slot``:
        the input at the same index if its type matches, else the first of the same type."""
        inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        if node["type"] == REROUTE:
            return inputs[0].get("link") if inputs else None
        outputs = _list(node.get("outputs"))
        out_type = link.type
        if out_type is None and link.slot < len(outputs) and isinstance(outputs[link.slot], dict):
            out_type = outputs[link.slot].get("type")
        candidates = []
        if link.slot < len(inputs):
            candidates.append(inputs[link.slot])
        candidates.extend(inputs)
        for candidate in candidates:
            if candidate.get("link") is not None and candidate.get("type") == out_type:
                return candidate["link"]
        return None
