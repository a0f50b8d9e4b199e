"""Legacy group nodes of ComfyUI's frontend (``extra.groupNodes``; instances typed
``workflow>NAME``, or ``workflow/NAME`` before frontend 1.2.63) expanded into plain nodes
before conversion, the way the frontend's ``groupNode.ts`` builds the API prompt.

A definition holds the inner nodes (``nodes``, by index), the links between them (``links``:
``[from index, from slot, to index, to slot, outer origin id, type]``, ``from index`` null for
a link that came from outside), ``external`` (``[index, slot, type]``: outputs also used
outside) and an optional ``config`` (inputs and outputs hidden or shown). An instance becomes
the inner nodes, with ids ``<instance id>:<index>``. Its widgets are the inner nodes' widgets
that are not converted to inputs, node after node in input order, then the converted ones
nothing inside feeds; its ``widgets_values`` hold them in that order (a seed's "control after
generate" value after it; a PrimitiveNode inside is one widget, its value written into every
inner input it feeds). Its inputs are the inner inputs nothing inside feeds, in the same
order; its outputs are the inner outputs not used inside (or listed in ``external``, or shown
by ``config``); a Reroute inside is followed, like any Reroute. What cannot be mapped with
confidence (list-typed PrimitiveNodes or Reroutes carrying widget values inside, values or
slots that do not line up with this ComfyUI's node definitions) is refused.
"""

from __future__ import annotations

import copy
from typing import Any

from comfygate.templates.infer.formats import TemplateImportError
from comfygate.templates.infer.grouplayout import FIX, Layout, Slot, unknown_types
from comfygate.templates.infer.links import Link
from comfygate.templates.infer.subgraphs import OVERRIDES, PRIMITIVE

PREFIXES = ("workflow>", "workflow/")
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


def group_name(node: dict[str, Any]) -> str | None:
    node_type = node.get("type")
    if isinstance(node_type, str) and node_type.startswith(PREFIXES):
        return node_type[len(PREFIXES[0]) :]
    return None


def definitions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    extra = data.get("extra")
    found = extra.get("groupNodes") if isinstance(extra, dict) else None
    return {
        str(name): definition
        for name, definition in (found.items() if isinstance(found, dict) else [])
        if isinstance(definition, dict)
    }


def expand(
    nodes: dict[str, dict[str, Any]],
    links: dict[Any, Link],
    groups: dict[str, dict[str, Any]],
    object_info: dict[str, Any],
) -> None:
    """Replace, in place, every instance of a group node in ``nodes`` by its inner nodes."""
    layouts: dict[str, Layout] = {}
    for node_id in [i for i, n in nodes.items() if group_name(n) is not None]:
        instance = nodes[node_id]
        name = group_name(instance) or ""
        label = f"node {node_id} (group node {name!r})"
        if instance.get("mode") in (2, 4):  # muted, or bypassed: left to the converter
            continue
        if name not in groups:
            raise TemplateImportError(f"{label} has no definition under 'extra.groupNodes'; {FIX}")
        if unknown_types(groups[name], object_info):
            continue  # named with the other unknown node types by the converter
        if name not in layouts:
            layouts[name] = Layout.of(groups[name], object_info, label)
        del nodes[node_id]
        nodes.update(_instance(node_id, instance, layouts[name], links, label))


def _is_control(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value in _CONTROL_VALUES)


def _instance(
    node_id: str,
    instance: dict[str, Any],
    layout: Layout,
    links: dict[Any, Link],
    label: str,
) -> dict[str, dict[str, Any]]:
    """The inner nodes of one instance: ids ``<node_id>:<index>``, their inputs linked to each
    other or to what feeds the instance's inputs, the instance's widget values as overrides;
    and, in ``links``, what the instance's outputs fed now comes from the inner nodes."""
    overrides = _values(instance, layout, label)
    feeds = _feeds(instance, layout, label)
    nodes: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(layout.nodes):
        node = copy.deepcopy(raw)
        inner_id = f"{node_id}:{index}"
        node["id"] = inner_id
        slots = [slot for slot in node.get("inputs") or [] if isinstance(slot, dict)]
        for position, slot in enumerate(slots):
            slot["link"] = None
            if (index, position) in layout.inner_links:
                origin, origin_slot, link_type = layout.inner_links[(index, position)]
                slot["link"] = f"{inner_id}:in{position}"
                links[slot["link"]] = Link(f"{node_id}:{origin}", origin_slot, link_type)
            elif (index, position) in feeds:
                slot["link"] = feeds[(index, position)]
        wired = [p for i, p in [*layout.inner_links, *feeds] if i == index and p >= len(slots)]
        if wired:
            raise TemplateImportError(
                f"{label}, inner node {index} ({raw.get('type')}): its input {wired[0]} is "
                f"connected but the node has no such input; {FIX}"
            )
        for slot in node.get("outputs") or []:
            if isinstance(slot, dict):
                slot["links"] = []
        if index in overrides and node.get("type") == PRIMITIVE:
            node["widgets_values"] = [overrides[index]["value"]]  # the converter inlines it
        elif index in overrides:
            node[OVERRIDES] = overrides[index]
        nodes[inner_id] = node
    for link_id, link in list(links.items()):
        if link.origin != node_id:
            continue
        if link.slot >= len(layout.outputs):
            raise TemplateImportError(
                f"{label}: its output {link.slot} is connected but stands for no output of its "
                f"inner nodes; {FIX}"
            )
        index, out = layout.outputs[link.slot]
        links[link_id] = Link(f"{node_id}:{index}", out, link.type, link.target, link.target_slot)
    return nodes


def _feeds(instance: dict[str, Any], layout: Layout, label: str) -> dict[Slot, Any]:
    """The outer link into each inner input the instance's connected inputs stand for."""
    feeds: dict[Slot, Any] = {}
    for position, slot in enumerate(instance.get("inputs") or []):
        if not isinstance(slot, dict) or slot.get("link") is None:
            continue
        name = slot.get("name")
        if position >= len(layout.inputs):
            raise TemplateImportError(
                f"{label}: its input {name!r} is connected but stands for no input of its inner "
                f"nodes; {FIX}"
            )
        index, inner_position = layout.inputs[position]
        inner_slots = [i for i in layout.nodes[index].get("inputs") or [] if isinstance(i, dict)]
        inner_type = (
            inner_slots[inner_position].get("type") if inner_position < len(inner_slots) else None
        )
        if not _same_type(slot.get("type"), inner_type):
            raise TemplateImportError(
                f"{label}: its input {name!r} ({slot.get('type')}) lines up with an inner input "
                f"of type {inner_type} (saved with another version?); {FIX}"
            )
        feeds[(index, inner_position)] = slot["link"]
    return feeds


def _same_type(outer: Any, inner: Any) -> bool:
    if not isinstance(outer, str) or not isinstance(inner, str) or "*" in (outer, inner):
        return True  # nothing to compare
    return outer == inner


def _values(instance: dict[str, Any], layout: Layout, label: str) -> dict[int, dict[str, Any]]:
    """The instance's widget values, by inner node index and input name."""
    values = instance.get("widgets_values")
    values = [] if values is None else values
    if not isinstance(values, list):
        raise TemplateImportError(f"{label}: 'widgets_values' must be a list")
    overrides: dict[int, dict[str, Any]] = {}
    position = assigned = 0
    for index, name, control in layout.widgets:
        if position >= len(values):
            break
        overrides.setdefault(index, {})[name] = values[position]
        position, assigned = position + 1, assigned + 1
        if control and position < len(values) and _is_control(values[position]):
            position += 1
    if position != len(values) or assigned != len(layout.widgets):
        raise TemplateImportError(
            f"{label}: its {len(values)} widget values do not line up with the "
            f"{len(layout.widgets)} widgets of its inner nodes in this ComfyUI (saved with "
            f"another version?); {FIX}"
        )
    return overrides
