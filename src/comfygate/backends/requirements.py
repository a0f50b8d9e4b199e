"""What a bound graph needs from a backend: node types, and values of list inputs (model
files, samplers...) that the backend's ``/object_info`` must offer. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comfygate.comfy.object_info import combo_options, input_spec, is_upload


@dataclass(frozen=True)
class Requirements:
    node_types: frozenset[str]
    # (class_type, input name, value) for inputs whose declared type is a list of choices.
    choices: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Missing:
    node_types: tuple[str, ...] = ()
    values: tuple[tuple[str, str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.node_types or self.values)

    def describe(self) -> str:
        parts = []
        if self.node_types:
            parts.append("node types " + ", ".join(self.node_types))
        if self.values:
            parts.append(", ".join(f"{v!r} for {c}.{i}" for c, i, v in self.values))
        return "; ".join(parts)


def requirements(graph: dict[str, Any]) -> Requirements:
    types: set[str] = set()
    choices: set[tuple[str, str, str]] = set()
    for node in graph.values():
        class_type = node.get("class_type")
        if not isinstance(class_type, str):
            continue
        types.add(class_type)
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, str):
                choices.add((class_type, name, value))
    return Requirements(frozenset(types), frozenset(choices))


def missing(req: Requirements, object_info: dict[str, Any]) -> Missing:
    if not object_info:
        return Missing(node_types=tuple(sorted(req.node_types)))
    absent = tuple(sorted(t for t in req.node_types if t not in object_info))
    values = []
    for class_type, name, value in sorted(req.choices):
        info = object_info.get(class_type)
        if not isinstance(info, dict):
            continue
        spec = input_spec(object_info, class_type, name)
        choices = combo_options(spec)
        allowed = None if choices is None else [str(v) for v in choices]
        # LoadImage-style inputs list files the gateway uploads just before it submits.
        if allowed is not None and value not in allowed and not is_upload(spec):
            values.append((class_type, name, value))
    return Missing(absent, tuple(values))
