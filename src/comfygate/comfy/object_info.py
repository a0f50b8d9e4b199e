"""Reading ComfyUI's node definitions (``GET /object_info``): the one place that knows their
shape, for the backend pool (model lists, what a backend can run), template checks and
template import.

A node type's definition has ``input`` with ``required``, ``optional`` and ``hidden`` sections
(name -> spec) and ``input_order`` (section -> names, in the order the node's widgets appear).
An input spec is ``[type, {options}]``; a combo is either ``[[choice, ...], {options}]`` (the
old form) or ``["COMBO", {"options": [choice, ...], ...}]`` (the newer one, e.g.
``UpscaleModelLoader`` in 0.3.75). Anything else in a definition is read defensively: a
backend's answer is data, never trusted to be well formed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SECTIONS = ("required", "optional", "hidden")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def declared_inputs(info: Any) -> tuple[dict[str, Any], set[str]]:
    """Every input a node type declares (name -> spec), and the names of the required ones."""
    sections = _dict(_dict(info).get("input"))
    declared: dict[str, Any] = {}
    required: set[str] = set()
    for section in SECTIONS:
        entries = _dict(sections.get(section))
        declared.update(entries)
        if section == "required":
            required.update(entries)
    return declared, required


def ordered_inputs(info: Any) -> Iterator[tuple[str, Any]]:
    """(name, spec) of a node type's required then optional inputs, in ComfyUI's order."""
    sections, order = _dict(_dict(info).get("input")), _dict(_dict(info).get("input_order"))
    for section in ("required", "optional"):
        specs = _dict(sections.get(section))
        names = order[section] if isinstance(order.get(section), list) else list(specs)
        for name in names:
            if name in specs:
                yield name, specs[name]


def input_spec(object_info: Any, class_type: str, name: str) -> Any:
    """The spec of one input of a node type (any section), or None."""
    return declared_inputs(_dict(object_info).get(class_type))[0].get(name)


def spec_kind(spec: Any) -> tuple[str, dict[str, Any], list[Any] | None]:
    """(type, options, choices) of an input spec; choices only for a combo (either form)."""
    if not isinstance(spec, list | tuple) or not spec:
        return "", {}, None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return "COMBO", options, list(spec[0])
    if spec[0] == "COMBO":
        choices = options.get("options")
        return "COMBO", options, list(choices) if isinstance(choices, list) else []
    return (spec[0] if isinstance(spec[0], str) else ""), options, None


def combo_options(spec: Any) -> list[Any] | None:
    """The choices of a combo input (either form), or None if the input is not a combo."""
    return spec_kind(spec)[2]


def is_upload(spec: Any) -> bool:
    """An input whose choices are files uploaded before a run (LoadImage's ``image``)."""
    options = spec_kind(spec)[1]
    return bool(options.get("image_upload") or options.get("upload"))
