"""Making one node input (and every input tied to it) a template parameter: type, bounds and
choices from ``/object_info`` (or built-in fallbacks), the workflow's value as the default,
and one parameter per user-level value (an equal value in a tied role joins it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from comfygate.templates.infer.nodeinfo import KIND_OF, PARAM_TYPES, fits, input_spec
from comfygate.templates.raw import is_link

Input = tuple[str, str]  # (node id, input name)
NAME_MAX_LENGTH = 255
# Nodes that only hold a value for others (API format): a parameter writes their value.
PRIMITIVES = frozenset(
    {
        "PrimitiveInt",
        "PrimitiveFloat",
        "PrimitiveString",
        "PrimitiveStringMultiline",
        "PrimitiveBoolean",
    }
)
Tie = Literal["equal", "always"] | None


@dataclass(frozen=True)
class Fallback:
    """What a parameter is when object_info says nothing: type, bounds, choices."""

    type: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: tuple[Any, ...] | None = None
    max_length: int | None = None


@cache
def builtin_choices(parameter: str) -> tuple[Any, ...] | None:
    """The sampler/scheduler choices of the built-in txt2img template."""
    text = (resources.files("comfygate.templates") / "builtin" / "txt2img.json").read_text(
        encoding="utf-8"
    )
    enum = json.loads(text).get("parameters", {}).get(parameter, {}).get("enum")
    return tuple(enum) if isinstance(enum, list) else None


class Params:
    """The parameters inferred so far, by name, with the workflow value each stands for."""

    def __init__(
        self,
        graph: dict[str, Any],
        object_info: dict[str, Any] | None,
        notes: list[str],
        ties: list[list[Input]] | None = None,
    ) -> None:
        self.graph = graph
        self.object_info = object_info
        self.notes = notes
        self.params: dict[str, dict[str, Any]] = {}
        self.values: dict[str, Any] = {}
        self.pass_ends: list[Input] = []  # end_at_step of first passes (SDXL base)
        self._tied: dict[Input, list[Input]] = {}
        for group in ties or []:
            for member in group:
                self._tied[member] = group

    def same(self, name: str, value: Any) -> bool:
        return _same(self.values.get(name), value)

    def choices(self, node_id: str, input_name: str) -> list[Any] | None:
        spec = input_spec(self.object_info, self.graph[node_id]["class_type"], input_name)
        return spec[2] if spec is not None else None

    def targeted(self, node_id: str, input_name: str) -> bool:
        target = f"{node_id}.{input_name}"
        return any(target in p["targets"] for p in self.params.values())

    def literal(self, node_id: str, input_name: str) -> tuple[Input, Any] | None:
        """Where the value of an input is held and the value: the input itself, or the
        ``value`` of the Primitive node it is linked to; None when missing or computed."""
        value = self.graph[node_id]["inputs"].get(input_name)
        if is_link(value) and value[0] in self.graph:
            source = self.graph[value[0]]
            held = source["inputs"].get("value")
            if source["class_type"] in PRIMITIVES and held is not None and not is_link(held):
                return (value[0], "value"), held
            return None
        if input_name not in self.graph[node_id]["inputs"]:
            return None
        return (node_id, input_name), value

    def param(
        self,
        base: str,
        node_id: str,
        input_name: str,
        fallback: Fallback,
        description: str,
        *,
        tie: Tie = None,
        seed: bool = False,
        choices: bool = True,
        model_folder: str | None = None,
        quiet: bool = False,
    ) -> str | None:
        """Make input ``input_name`` of node ``node_id`` a parameter named after ``base``;
        returns its name, or None (with a note unless ``quiet``) when the input holds no
        usable value. With ``tie``, an existing ``base`` parameter whose value is equal
        (``"equal"``) or any (``"always"``) takes this input as one more target."""
        node = self.graph[node_id]
        label = f"node {node_id} ({node['class_type']}) input {input_name!r}"
        found = self.literal(node_id, input_name)
        if found is None:
            if not quiet:
                why = (
                    "is missing" if input_name not in node["inputs"] else "comes from another node"
                )
                self.notes.append(f"{label} {why}: no {base!r} parameter")
            return None
        (holder, holder_input), value = found
        if self.targeted(holder, holder_input):
            return None  # already written by a parameter (one node feeding two roles)
        joined = self._join(base, tie, value)
        if joined is not None:
            self.target(joined, holder, holder_input)
            return joined
        holder_class = self.graph[holder]["class_type"]
        spec = input_spec(self.object_info, node["class_type"], input_name) or input_spec(
            self.object_info, holder_class, holder_input
        )
        kind, options, enum = spec if spec is not None else ("", {}, None)
        from_info = kind in PARAM_TYPES or kind == "COMBO"
        param_type = "string" if kind == "COMBO" else PARAM_TYPES.get(kind, fallback.type)
        param: dict[str, Any] = {"type": param_type, "description": description}
        if from_info:
            minimum, maximum = options.get("min"), options.get("max")
            if not choices:
                enum = None
        else:
            minimum, maximum = fallback.minimum, fallback.maximum
            enum = list(fallback.enum) if fallback.enum is not None and choices else None
        if param_type not in ("integer", "number"):
            minimum = maximum = None
        if not fits(KIND_OF[param_type], value):
            self.notes.append(f"{label} holds {value!r}, not a {param_type}: no {base!r} parameter")
            return None
        default: Any = float(value) if param_type == "number" else value
        problem = None
        if enum is not None and default not in enum:
            if from_info:
                problem = f"{default!r} is not one of this ComfyUI's choices"
            else:
                enum.append(default)
        if minimum is not None and default < minimum:
            if from_info:
                problem = f"{default!r} is below this ComfyUI's minimum {minimum!r}"
            else:
                minimum = default
        if maximum is not None and default > maximum:
            if from_info:
                problem = f"{default!r} is above this ComfyUI's maximum {maximum!r}"
            else:
                maximum = default
        for key, bound in (("minimum", minimum), ("maximum", maximum)):
            if bound is not None:
                param[key] = bound
        if enum is not None:
            param["enum"] = enum
        elif param_type == "string" and fallback.max_length is not None:
            param["max_length"] = fallback.max_length
        if seed:
            param["seed"] = True
        elif problem is None:
            param["default"] = default
        else:
            self.notes.append(f"{label}: {problem}: {base!r} has no default")
        if model_folder is not None:
            param["model_folder"] = model_folder
        param["targets"] = []
        name = self.add(base, param, value)
        self.target(name, holder, holder_input)
        return name

    def _join(self, base: str, tie: Tie, value: Any) -> str | None:
        if tie is None or base not in self.params:
            return None
        if tie == "always" or _same(self.values.get(base), value):
            return base
        return None

    def target(self, name: str, node_id: str, input_name: str) -> None:
        targets: list[str] = self.params[name]["targets"]
        for member in self._tied.get((node_id, input_name), [(node_id, input_name)]):
            target = f"{member[0]}.{member[1]}"
            if target not in targets and member[0] in self.graph:
                targets.append(target)

    def add(self, base: str, param: dict[str, Any], value: Any = None) -> str:
        name, n = base, 1
        while name in self.params:
            n += 1
            name = f"{base}_{n}"
        self.params[name] = param
        self.values[name] = value
        return name


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (``True`` is not ``1``; ``7`` is ``7.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)
