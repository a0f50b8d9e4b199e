"""Recognising what was given: ComfyUI's API format (bare, in a POST /prompt body, or in a
RunPod-style ``{"input": {"workflow": ...}}`` request), or its UI format (nodes and links).
And the one error every refusal of the import is."""

from __future__ import annotations

import copy
from typing import Any

from comfygate.templates.raw import is_link
from comfygate.templates.registry import TemplateError

EXPORT_HINT = (
    "export the workflow from ComfyUI in API format: menu Workflow > Export (API) "
    "(File > Export (API) in newer versions; in the legacy menu, turn on "
    "'Enable dev mode options' in the settings and use the 'Save (API Format)' button)"
)

# Keys under which request bodies of ComfyUI and of other gateways carry the graph.
_WRAPPERS = (
    ("prompt",),  # ComfyUI's POST /prompt
    ("input", "workflow"),  # RunPod's worker-comfyui
    ("input", "prompt"),
    ("workflow",),
)


class TemplateImportError(TemplateError):
    """A workflow cannot be made into a template; the message says why and what to do."""


def id_key(node_id: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of node ids: numeric ones by number, ``75:3`` after ``75``, before ``76``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in node_id.split(":"))


def is_node(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("class_type"), str)
        and isinstance(value.get("inputs"), dict)
    )


def is_ui(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), "a value")


def unwrap(data: Any, notes: list[str]) -> Any:
    """The workflow inside a request body that carries one (noted), else ``data``."""
    for path in _WRAPPERS:
        inner: Any = data
        for key in path:
            inner = inner.get(key) if isinstance(inner, dict) else None
        if isinstance(inner, dict) and not is_node(inner) and inner is not data:
            if path == ("prompt",):
                notes.append("took the workflow from the 'prompt' of a POST /prompt body")
            else:
                where = "".join(f"[{key!r}]" for key in path)
                notes.append(f"took the workflow from {where} of a request body")
            return inner
    return data


def api_graph(data: Any, notes: list[str]) -> dict[str, Any]:
    """A checked copy of an API-format graph, ids as strings."""
    if not isinstance(data, dict):
        raise TemplateImportError(f"a workflow is a JSON object, not {_kind(data)}; {EXPORT_HINT}")
    if not data:
        raise TemplateImportError(f"the workflow has no nodes; {EXPORT_HINT}")
    bad = [key for key, value in data.items() if not is_node(value)]
    if len(bad) == len(data):
        raise TemplateImportError(
            "this is neither ComfyUI's API format ({node_id: {class_type, inputs}}) nor its UI "
            f"format (nodes and links); {EXPORT_HINT}"
        )
    if bad:
        raise TemplateImportError(
            f"workflow entry {bad[0]!r} is not a node (a node has 'class_type' and 'inputs'); "
            f"{EXPORT_HINT}"
        )
    graph: dict[str, Any] = copy.deepcopy({str(k): v for k, v in data.items()})
    for node_id, node in graph.items():
        for input_name, value in node["inputs"].items():
            if is_link(value) and value[0] not in graph:
                notes.append(
                    f"node {node_id} ({node['class_type']}) input {input_name!r} is linked to "
                    f"node {value[0]}, which the workflow does not have: ComfyUI will refuse it"
                )
    return graph
