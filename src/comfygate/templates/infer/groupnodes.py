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
from dataclasses import dataclass, field
from typing import Any

from comfygate.templates.infer.formats import EXPORT_HINT, TemplateImportError
from comfygate.templates.infer.links import Link
from comfygate.templates.infer.nodeinfo import WIDGET_TYPES, ordered_inputs, spec_kind
from comfygate.templates.infer.subgraphs import OVERRIDES, PRIMITIVE

PREFIXES = ("workflow>", "workflow/")
NOTES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
_SEEDS = frozenset({"seed", "noise_seed"})
_PRIMITIVE_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})  # not COMBO: its filter
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_FIX = f"in ComfyUI, right-click it and 'Convert to nodes', or {EXPORT_HINT}"

Slot = tuple[int, int]  # (inner node index, slot)


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
    layouts: dict[str, _Layout] = {}
    for node_id in [i for i, n in nodes.items() if group_name(n) is not None]:
        instance = nodes[node_id]
        name = group_name(instance) or ""
        label = f"node {node_id} (group node {name!r})"
        if instance.get("mode") in (2, 4):  # muted, or bypassed: left to the converter
            continue
        if name not in groups:
            raise TemplateImportError(f"{label} has no definition under 'extra.groupNodes'; {_FIX}")
        if unknown_types(groups[name], object_info):
            continue  # named with the other unknown node types by the converter
        if name not in layouts:
            layouts[name] = _Layout.of(groups[name], object_info, label)
        del nodes[node_id]
        nodes.update(_instance(node_id, instance, layouts[name], links, label))


def unknown_types(definition: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    """The node types inside a group node that this ComfyUI does not know."""
    inner = definition.get("nodes")
    types = [n.get("type") for n in inner if isinstance(n, dict)] if isinstance(inner, list) else []
    frontend_only = NOTES | {PRIMITIVE, REROUTE}
    return sorted({str(t) for t in types if t not in object_info and t not in frontend_only})


@dataclass
class _Layout:
    """How one definition maps onto its instances' widgets, inputs and outputs."""

    nodes: list[dict[str, Any]]
    inner_links: dict[Slot, tuple[int, int, Any]]  # target -> (origin index, slot, type)
    used_inside: set[Slot]  # inner outputs that feed an inner input
    external: set[Slot]  # inner outputs the definition lists as also used outside
    config: dict[str, Any]
    outside_types: dict[Slot, Any]  # inner inputs fed from outside when the group was made
    widgets: list[tuple[int, str, bool]] = field(default_factory=list)  # (index, name, control)
    inputs: list[Slot] = field(default_factory=list)  # instance input n -> inner input
    outputs: list[Slot] = field(default_factory=list)  # instance output n -> inner output

    @classmethod
    def of(cls, definition: dict[str, Any], object_info: dict[str, Any], label: str) -> _Layout:
        raw_nodes = definition.get("nodes")
        if not isinstance(raw_nodes, list) or not all(isinstance(n, dict) for n in raw_nodes):
            raise TemplateImportError(f"{label}: its definition has no list of 'nodes'; {_FIX}")
        inner_links: dict[Slot, tuple[int, int, Any]] = {}
        outside_types: dict[Slot, Any] = {}
        for entry in definition.get("links") or []:
            if not isinstance(entry, list) or len(entry) < 4:
                raise TemplateImportError(f"{label}: its definition has a bad link {entry!r}")
            origin, origin_slot, target, target_slot = entry[:4]
            if origin is None:  # came from outside: an input of the group node
                if isinstance(target, int) and isinstance(target_slot, int):
                    outside_types[(target, target_slot)] = _at(entry, 5)
                continue
            if not all(isinstance(v, int) for v in (origin, origin_slot, target, target_slot)):
                raise TemplateImportError(f"{label}: its definition has a bad link {entry!r}")
            inner_links[(target, target_slot)] = (origin, origin_slot, _at(entry, 5))
        # Entries whose first item is not an index (some saves hold the node itself) match
        # nothing in the frontend either.
        external = {
            (e[0], e[1])
            for e in definition.get("external") or []
            if isinstance(e, list) and len(e) > 2 and isinstance(e[0], int) and e[2]
        }
        config = definition.get("config")
        layout = cls(
            raw_nodes,
            inner_links,
            {(origin, slot) for origin, slot, _ in inner_links.values()},
            external,
            config if isinstance(config, dict) else {},
            outside_types,
        )
        layout._map(object_info, label)
        return layout

    def _map(self, object_info: dict[str, Any], label: str) -> None:
        """The frontend's GroupNodeConfig.registerType: inner node after inner node, its
        widgets, its unfed inputs and its outputs; then the converted widgets nothing feeds."""
        converted_later: list[tuple[int, dict[str, Any], list[tuple[int, str]]]] = []
        for index, node in enumerate(self.nodes):
            node_type = node.get("type")
            where = f"{label}, inner node {index} ({node_type})"
            if node_type == REROUTE:
                self._reroute(index, where)
                continue
            if node_type == PRIMITIVE:
                self._primitive(index, where)
                continue
            info = object_info.get(str(node_type))
            if not isinstance(info, dict):
                continue  # a note, or a PrimitiveNode feeding nothing: not part of the group
            slots, converted = self._widgets_and_slots(index, node, info, where)
            self._inputs(index, node, slots, _part(_part(self.config, str(index)), "input"), where)
            self._outputs(index, info, self._shown_outputs(index))
            order = sorted(converted, key=str)  # JavaScript's default sort: as strings
            if order != list(range(len(slots), len(slots) + len(order))):
                raise TemplateImportError(
                    f"{where}: its widgets turned into inputs are not after its other inputs "
                    f"(saved with another version?); {_FIX}"
                )
            converted_later.append((index, info, [(i, converted[i]) for i in order]))
        for index, info, converted_inputs in converted_later:
            specs = dict(ordered_inputs(info))
            for position, name in converted_inputs:
                if (index, position) not in self.inner_links:
                    self.widgets.append((index, name, _with_control(name, specs[name])))
                    self.inputs.append((index, position))

    def _primitive(self, index: int, where: str) -> None:
        """A PrimitiveNode feeding inner widgets is one widget of the group, of the type of
        its first link, with a "control after generate" value after it."""
        types = [t for (origin, _, t) in self.inner_links.values() if origin == index]
        if not types:
            return  # feeds nothing: not part of the group
        if types[0] not in _PRIMITIVE_TYPES:
            raise TemplateImportError(
                f"{where}: a PrimitiveNode of type {types[0]} inside a group node is not "
                f"expanded; {_FIX}"
            )
        self.widgets.append((index, "value", True))
        self._outputs(index, {"output": [types[0]]}, self._shown_outputs(index))

    def _reroute(self, index: int, where: str) -> None:
        """A Reroute used inside only is no part of the group (the converter follows it);
        one fed from outside is an input of the group, one feeding outside an output."""
        types = {t for (i, _), (o, _, t) in self.inner_links.items() if index in (i, o)}
        types |= {t for (o, _), t in self.outside_types.items() if o == index}
        if types & WIDGET_TYPES:
            raise TemplateImportError(
                f"{where}: a Reroute carrying a widget value inside a group node is not "
                f"expanded; {_FIX}"
            )
        fed_inside, used_inside = (index, 0) in self.inner_links, (index, 0) in self.used_inside
        if fed_inside and used_inside and (index, 0) not in self.external:
            return  # the frontend leaves it out of the group's definition
        if not fed_inside:
            self.inputs.append((index, 0))
        self._outputs(index, {"output": ["*"]}, self._shown_outputs(index))

    def _shown_outputs(self, index: int) -> dict[str, Any]:
        return _part(_part(self.config, str(index)), "output")

    def _inputs(
        self,
        index: int,
        node: dict[str, Any],
        slots: list[str],
        shown: dict[str, Any],
        where: str,
    ) -> None:
        inner_inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        for position, slot_name in enumerate(slots):
            if position < len(inner_inputs) and inner_inputs[position].get("name") != slot_name:
                raise TemplateImportError(
                    f"{where}: its inputs are not in the order this ComfyUI defines them "
                    f"(saved with another version?); {_FIX}"
                )
            hidden = _visible(shown, slot_name) is False
            if (index, position) not in self.inner_links and not hidden:
                self.inputs.append((index, position))

    def _outputs(self, index: int, info: dict[str, Any], shown: dict[str, Any]) -> None:
        outputs = info.get("output")
        for out in range(len(outputs) if isinstance(outputs, list) else 0):
            visible = _visible(shown, str(out))
            if visible is None:  # hidden when used inside only
                slot = (index, out)
                visible = slot not in self.used_inside or slot in self.external
            if visible:
                self.outputs.append((index, out))

    def _widgets_and_slots(
        self, index: int, node: dict[str, Any], info: dict[str, Any], where: str
    ) -> tuple[list[str], dict[int, str]]:
        """The node's input names that are sockets, in order; its widgets turned into inputs,
        by their index in its ``inputs``. Its other widgets are added to ``self.widgets``."""
        inner_inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        slots: list[str] = []
        converted: dict[int, str] = {}
        for name, spec in ordered_inputs(info):
            kind, options, _ = spec_kind(spec)
            if kind not in WIDGET_TYPES:
                slots.append(name)
                continue
            if kind == "COMBO" and options.get("control_after_generate"):
                raise TemplateImportError(
                    f"{where}: a list widget with 'control after generate' inside a group node "
                    f"is not expanded; {_FIX}"
                )
            as_input = next(
                (
                    position
                    for position, slot in enumerate(inner_inputs)
                    if slot.get("name") == name and (slot.get("widget") or {}).get("name") == name
                ),
                None,
            )
            if as_input is not None:
                converted[as_input] = name
            else:
                self.widgets.append((index, name, _with_control(name, spec)))
        return slots, converted


def _with_control(name: str, spec: Any) -> bool:
    _, options, _ = spec_kind(spec)
    return name in _SEEDS or bool(options.get("control_after_generate"))


def _at(entry: list[Any], position: int) -> Any:
    return entry[position] if len(entry) > position else None


def _part(config: dict[str, Any], key: str) -> dict[str, Any]:
    found = config.get(key)
    return found if isinstance(found, dict) else {}


def _visible(config: dict[str, Any], key: str) -> bool | None:
    """What a definition's ``config`` says of an input or output: shown, hidden, or nothing."""
    visible = _part(config, key).get("visible")
    return visible if isinstance(visible, bool) else None


def _is_control(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value in _CONTROL_VALUES)


def _instance(
    node_id: str,
    instance: dict[str, Any],
    layout: _Layout,
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
                f"connected but the node has no such input; {_FIX}"
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
                f"inner nodes; {_FIX}"
            )
        index, out = layout.outputs[link.slot]
        links[link_id] = Link(f"{node_id}:{index}", out, link.type, link.target, link.target_slot)
    return nodes


def _feeds(instance: dict[str, Any], layout: _Layout, label: str) -> dict[Slot, Any]:
    """The outer link into each inner input the instance's connected inputs stand for."""
    feeds: dict[Slot, Any] = {}
    for position, slot in enumerate(instance.get("inputs") or []):
        if not isinstance(slot, dict) or slot.get("link") is None:
            continue
        name = slot.get("name")
        if position >= len(layout.inputs):
            raise TemplateImportError(
                f"{label}: its input {name!r} is connected but stands for no input of its inner "
                f"nodes; {_FIX}"
            )
        index, inner_position = layout.inputs[position]
        inner_slots = [i for i in layout.nodes[index].get("inputs") or [] if isinstance(i, dict)]
        inner_type = (
            inner_slots[inner_position].get("type") if inner_position < len(inner_slots) else None
        )
        if not _same_type(slot.get("type"), inner_type):
            raise TemplateImportError(
                f"{label}: its input {name!r} ({slot.get('type')}) lines up with an inner input "
                f"of type {inner_type} (saved with another version?); {_FIX}"
            )
        feeds[(index, inner_position)] = slot["link"]
    return feeds


def _same_type(outer: Any, inner: Any) -> bool:
    if not isinstance(outer, str) or not isinstance(inner, str) or "*" in (outer, inner):
        return True  # nothing to compare
    return outer == inner


def _values(instance: dict[str, Any], layout: _Layout, label: str) -> dict[int, dict[str, Any]]:
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
            f"another version?); {_FIX}"
        )
    return overrides
