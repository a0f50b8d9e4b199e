"""Reading ComfyUI's node definitions (GET /object_info): inputs in order, their kinds,
bounds and choices. And telling a file that is no /object_info from one that is."""

from __future__ import annotations

from typing import Any

from comfygate.comfy.object_info import ordered_inputs, spec_kind
from comfygate.templates.infer.formats import TemplateImportError

__all__ = ["ordered_inputs", "spec_kind"]  # read here by the UI conversion and group nodes

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
