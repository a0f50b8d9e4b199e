"""The layout of a legacy group node's definition (``extra.groupNodes``), as the frontend's
``GroupNodeConfig`` (``groupNode.ts``) builds it: which inner widget each of an instance's
widget values is, which inner input each of its inputs is, which inner output each of its
outputs is. Read by ``groupnodes``, which expands the instances."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comfygate.templates.infer.formats import EXPORT_HINT, TemplateImportError
from comfygate.templates.infer.nodeinfo import WIDGET_TYPES, ordered_inputs, spec_kind
from comfygate.templates.infer.subgraphs import PRIMITIVE

NOTES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
FIX = f"in ComfyUI, right-click it and 'Convert to nodes', or {EXPORT_HINT}"
_SEEDS = frozenset({"seed", "noise_seed"})
_PRIMITIVE_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})  # not COMBO: its filter

Slot = tuple[int, int]  # (inner node index, slot)


def unknown_types(definition: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    """The node types inside a group node that this ComfyUI does not know."""
    inner = definition.get("nodes")
    types = [n.get("type") for n in inner if isinstance(n, dict)] if isinstance(inner, list) else []
    frontend_only = NOTES | {PRIMITIVE, REROUTE}
    return sorted({str(t) for t in types if t not in object_info and t not in frontend_only})


@dataclass
class Layout:
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
    def of(cls, definition: dict[str, Any], object_info: dict[str, Any], label: str) -> Layout:
        raw_nodes = definition.get("nodes")
        if not isinstance(raw_nodes, list) or not all(isinstance(n, dict) for n in raw_nodes):
            raise TemplateImportError(f"{label}: its definition has no list of 'nodes'; {FIX}")
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
                    f"(saved with another version?); {FIX}"
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
                f"expanded; {FIX}"
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
                f"expanded; {FIX}"
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
                    f"(saved with another version?); {FIX}"
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
                    f"is not expanded; {FIX}"
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
