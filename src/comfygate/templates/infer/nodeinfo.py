"""Reading ComfyUI's node definitions (GET /object_info): inputs in order, their kinds,
bounds and choices. And telling a file that is no /object_info from one that is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from comfygate.templates.infer.formats import TemplateImportError

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
PARAM_TYPES = {"INT": "integer", "FLOAT": "number", "STRING": "string", "BOOLEAN": "boolean"}
KIND_OF = {param_type: kind for kind, param_type in PARAM_TYPES.items()}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def check_object_info(object_info: Any) -> dict[str, Any]:
    """``object_info`` itself when it looks like GET /object_info: an object of node
    definitions, each with an ``input`` object. Anything else is refused, saying so."""
    hint = "it should be what a ComfyUI answers to GET /object_info (save it with curl)"
    if not isinstance(object_info, dict):
        raise TemplateImportError(f"the given object_info is not an object: {hint}")
    definitions = [v for v in object_info.values() if isinstance(v, dict) and "input" in v]
    if not definitions or len(definitions) < len(object_info) / 2:
        raise TemplateImportError(
            f"the given object_info holds no node definitions (an object of node types, each "
            f"with 'input'): {hint}"
        )
    return object_info


def ordered_inputs(info: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, spec) of a node type's required then optional inputs, in ComfyUI's order."""
    spec_groups, order = _dict(info.get("input")), _dict(info.get("input_order"))
    for group in ("required", "optional"):
        specs = _dict(spec_groups.get(group))
        names = order[group] if isinstance(order.get(group), list) else list(specs)
        for input_name in names:
            if input_name in specs:
                yield input_name, specs[input_name]


def spec_kind(spec: Any) -> tuple[str, dict[str, Any], list[Any] | None]:
    """(type, options, choices) of an input spec: choices for a combo (either form)."""
    if not isinstance(spec, list | tuple) or not spec:
        return "", {}, None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return "COMBO", options, list(spec[0])
    if spec[0] == "COMBO":
        choices = options.get("options")
        return "COMBO", options, list(choices) if isinstance(choices, list) else []
    return (spec[0] if isinstance(spec[0], str) else ""), options, None


def input_spec(
    object_info: dict[str, Any] | None, class_type: str, input_name: str
) -> tuple[str, dict[str, Any], list[Any] | None] | None:
    info = (object_info or {}).get(class_type)
    if not isinstance(info, dict):
        return None
    for spec_name, spec in ordered_inputs(info):
        if spec_name == input_name:
            return spec_kind(spec)
    return None


def spec_default(kind: str, options: dict[str, Any], choices: list[Any] | None) -> Any:
    if "default" in options:
        return options["default"]
    if choices:
        return choices[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of input kind ``kind`` (``True`` is no INT, though ``True == 1``)."""
    match kind:
        case "INT":
            return isinstance(value, int) and not isinstance(value, bool)
        case "FLOAT":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "STRING":
            return isinstance(value, str)
        case "BOOLEAN":
            return isinstance(value, bool)
        case _:  # combo: usually strings, some nodes offer numbers
            return not isinstance(value, dict | list)
