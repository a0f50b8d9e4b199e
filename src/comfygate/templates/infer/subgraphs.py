"""Subgraphs of a UI-format workflow (frontend 1.2x: ``definitions.subgraphs``) expanded into
plain nodes before conversion, the way ComfyUI's own API export does it.

An instance of subgraph ``S`` (a node whose ``type`` is S's id) becomes S's nodes, with ids
``<instance id>:<inner id>`` (nested subgraphs chain them: ``75:12:3``). Inside S, links from
the input node (id -10) take what feeds the instance's input of that name, or the value the
instance holds for it (its widget, or a ``proxyWidgets`` entry); links to the output node (id
-20) are what the instance's outputs give. Values a ``proxyWidgets`` entry promotes from an
inner node override that node's own widget value.
"""

from __future__ import annotations

import copy
from typing import Any

from comfygate.templates.infer.formats import TemplateImportError
from comfygate.templates.infer.links import Link, parse_links
from comfygate.templates.infer.nodeinfo import WIDGET_TYPES

INPUT_NODE, OUTPUT_NODE = "-10", "-20"
PRIMITIVE = "PrimitiveNode"
OVERRIDES = "_widget_overrides"  # set on inner nodes: {widget name: value}
_MAX_DEPTH = 16
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


def definitions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    defs = data.get("definitions")
    found = defs.get("subgraphs") if isinstance(defs, dict) else None
    return {
        str(sg["id"]): sg
        for sg in (found if isinstance(found, list) else [])
        if isinstance(sg, dict) and "id" in sg
    }


def expand(
    nodes: dict[str, dict[str, Any]],
    links: dict[Any, Link],
    subgraphs: dict[str, dict[str, Any]],
    depth: int = 0,
) -> None:
    """Replace, in place, every instance of a subgraph in ``nodes`` by the subgraph's nodes."""
    for node_id in [i for i, n in nodes.items() if n.get("type") in subgraphs]:
        instance = nodes[node_id]
        if instance.get("mode") in (2, 4):  # muted, or bypassed: left to the converter
            continue
        if depth >= _MAX_DEPTH:
            raise TemplateImportError(f"node {node_id}: subgraphs nested too deep (a loop?)")
        del nodes[node_id]
        inner_nodes, inner_links = _instance(node_id, instance, subgraphs[instance["type"]], links)
        expand(inner_nodes, inner_links, subgraphs, depth + 1)
        nodes.update(inner_nodes)
        links.update(inner_links)


def _instance(
    node_id: str, instance: dict[str, Any], sg: dict[str, Any], outer: dict[Any, Link]
) -> tuple[dict[str, dict[str, Any]], dict[Any, Link]]:
    label = f"node {node_id} (subgraph {sg.get('name') or sg['id']!r})"
    sg_inputs = [i for i in sg.get("inputs") or [] if isinstance(i, dict)]
    values, overrides = _instance_values(instance, sg_inputs)
    linked = {
        slot.get("name"): slot["link"]
        for slot in instance.get("inputs") or []
        if isinstance(slot, dict) and slot.get("link") is not None
    }

    def rename(link_id: Any) -> str:
        return f"{node_id}:{link_id}"

    nodes: dict[str, dict[str, Any]] = {}
    for raw in sg.get("nodes") or []:
        if not isinstance(raw, dict) or "id" not in raw:
            raise TemplateImportError(f"{label}: every inner node needs an 'id' and a 'type'")
        node = copy.deepcopy(raw)
        inner_id = f"{node_id}:{raw['id']}"
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and slot.get("link") is not None:
                slot["link"] = rename(slot["link"])
        for slot in node.get("outputs") or []:
            if isinstance(slot, dict) and isinstance(slot.get("links"), list):
                slot["links"] = [rename(link) for link in slot["links"]]
        if str(raw["id"]) in overrides:
            node[OVERRIDES] = overrides[str(raw["id"])]
        nodes[inner_id] = node
    links: dict[Any, Link] = {}
    outputs: dict[int, Link] = {}
    unfed: set[str] = set()
    for link_id, link in parse_links(sg.get("links") or []).items():
        if link.origin == INPUT_NODE:
            name = sg_inputs[link.slot].get("name") if link.slot < len(sg_inputs) else None
            if name in linked and linked[name] in outer:
                source: Link | None = outer[linked[name]]
            elif name in values:
                source = _value_source(nodes, node_id, link.slot, values[name], link.type)
            else:
                source = None  # the inner node keeps its own widget value
        else:
            source = Link(f"{node_id}:{link.origin}", link.slot, link.type)
        if source is None:
            unfed.add(rename(link_id))
            continue
        if link.target == OUTPUT_NODE:
            outputs[link.target_slot] = source
        else:
            links[rename(link_id)] = Link(source.origin, source.slot, source.type)
    for node in nodes.values():  # an input nothing feeds keeps the inner node's widget value
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and slot.get("link") in unfed:
                slot["link"] = None
    for link_id, link in list(outer.items()):
        if link.origin == node_id and link.slot in outputs:
            given = outputs[link.slot]
            outer[link_id] = Link(
                given.origin, given.slot, given.type, link.target, link.target_slot
            )
    return nodes, links


def _value_source(
    nodes: dict[str, dict[str, Any]], node_id: str, slot: int, value: Any, link_type: Any
) -> Link:
    """A PrimitiveNode standing for the value the instance holds for its input ``slot``."""
    primitive_id = f"{node_id}:input{slot}"
    nodes[primitive_id] = {"id": primitive_id, "type": PRIMITIVE, "widgets_values": [value]}
    return Link(primitive_id, 0, link_type)


def _instance_values(
    instance: dict[str, Any], sg_inputs: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The instance's widget values: by subgraph input name, and by inner node id for the
    inner widgets it promotes."""
    values = instance.get("widgets_values")
    values = values if isinstance(values, list) else []
    properties = instance.get("properties")
    proxy = properties.get("proxyWidgets") if isinstance(properties, dict) else None
    by_input: dict[str, Any] = {}
    overrides: dict[str, dict[str, Any]] = {}
    if isinstance(proxy, list) and proxy:
        entries = [p for p in proxy if isinstance(p, list) and len(p) == 2]
        for (inner, name), value in zip(entries, values, strict=False):
            if str(inner) == "-1":
                by_input[str(name)] = value
            else:
                overrides.setdefault(str(inner), {})[str(name)] = value
        return by_input, overrides
    linked = {
        slot.get("name")
        for slot in instance.get("inputs") or []
        if isinstance(slot, dict) and slot.get("link") is not None
    }
    position = 0
    for sg_input in sg_inputs:
        if sg_input.get("type") not in WIDGET_TYPES or sg_input.get("name") in linked:
            continue
        if position >= len(values):
            break
        by_input[str(sg_input.get("name"))] = values[position]
        position += 1
        if position < len(values) and values[position] in _CONTROL_VALUES:
            position += 1
    return by_input, overrides
