"""Raw workflows (POST /v1/workflows/run): which graphs the gateway lets through, and why.

A raw workflow is a ComfyUI API-format graph sent as is. ComfyUI runs whatever a graph says
and has no notion of users, so the gateway checks every node before anything is sent:

* the shape: an object of at most ``MAX_NODES`` nodes, ids of up to 64 safe characters,
  each node ``{"class_type": str, "inputs": object}`` (``_meta`` is dropped), every link
  ``[node_id, output_index]`` naming a node of the graph;
* the node type, against an allowlist (``RAW_WORKFLOW_NODES``; by default
  ``DEFAULT_ALLOWED`` in ``raw_nodes.py``: the node types of ComfyUI 0.3.75 as the setup
  installs it, minus ``DENIED``);
* ``LoadImage``: only images the gateway checked and named (``cg-<sha256>.<ext>``); the API
  turns a data: URI or https URL in its ``image`` input into such a name first;
* every ``filename_prefix`` is replaced with the job's own (``binding.apply_output_prefix``),
  so no output lands outside the job's files;
* the cost limits (``MAX_PIXELS``, ``MAX_BATCH_SIZE``, ``MAX_STEPS``, ``MAX_PROMPT_CHARS``)
  on the values the nodes will actually receive, links followed and batch multipliers
  counted: ``graph_costs.py``.

The node lists, and why each denied kind is denied: ``raw_nodes.py``.

Custom nodes installed on a backend are not in the default list: an operator who wants one
names it in ``RAW_WORKFLOW_NODES`` (``default`` in that list keeps the built-in ones). Pure
functions; the API resolves images, the job service runs the graph.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from comfygate.errors import ValidationFailed
from comfygate.templates.raw_nodes import DEFAULT_ALLOWED as DEFAULT_ALLOWED
from comfygate.templates.raw_nodes import DENIED as DENIED

MAX_NODES = 500
RAW_TEMPLATE = "workflow"  # the `template` of a raw workflow's job
# Used with fullmatch: "^...$" would also take a trailing newline ("1\n").
_NODE_ID = re.compile(r"[A-Za-z0-9_:.-]{1,64}")
GATEWAY_IMAGE_NAME = re.compile(r"cg-[0-9a-f]{32}\.(?:png|jpg|webp)")
IMAGE_NODE = "LoadImage"
IMAGE_INPUT = "image"


def allowed_nodes(setting: list[str]) -> frozenset[str]:
    """The allowlist from RAW_WORKFLOW_NODES: empty means the default; ``default`` in the
    list includes it."""
    if not setting:
        return DEFAULT_ALLOWED
    names = {n for n in setting if n != "default"}
    return frozenset(names | (DEFAULT_ALLOWED if "default" in setting else set()))


def check_shape(workflow: Any) -> dict[str, dict[str, Any]]:
    """A clean copy of the graph: the checked structure, ``_meta`` dropped."""
    if not isinstance(workflow, dict) or not workflow:
        raise ValidationFailed("'workflow' must be a non-empty object of nodes", field="workflow")
    if len(workflow) > MAX_NODES:
        raise ValidationFailed(
            f"'workflow' has {len(workflow)} nodes (limit {MAX_NODES})", field="workflow"
        )
    graph: dict[str, dict[str, Any]] = {}
    for node_id, node in workflow.items():
        where = f"workflow.{str(node_id)[:64]}"
        if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
            raise ValidationFailed(
                f"node id {str(node_id)[:64]!r} must be 1 to 64 letters, digits or _:.-",
                field=where,
            )
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs"), dict)
            or set(node) - {"class_type", "inputs", "_meta"}
        ):
            raise ValidationFailed(
                f"node {node_id!r} must be {{'class_type': str, 'inputs': object}} "
                "(ComfyUI's API format: 'Save (API format)')",
                field=where,
            )
        graph[node_id] = {
            "class_type": node["class_type"],
            "inputs": copy.deepcopy(node["inputs"]),
        }
    for node_id, node in graph.items():
        for name, value in node["inputs"].items():
            if _loose_link(value):
                # ComfyUI takes [id, 0.0] and [id, true] as links too: one reading only.
                raise ValidationFailed(
                    f"node {node_id!r} input {name!r}: a link's output index must be an integer",
                    field=f"workflow.{node_id}.inputs.{name}",
                )
            if is_link(value) and value[0] not in graph:
                raise ValidationFailed(
                    f"node {node_id!r} input {name!r} links to node {value[0]!r}, "
                    "which the workflow does not have",
                    field=f"workflow.{node_id}.inputs.{name}",
                )
    return graph


def is_link(value: Any) -> bool:
    """A link in an API-format graph: ``[source node id, output index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _loose_link(value: Any) -> bool:
    """What ComfyUI's own ``is_link`` takes for a link but ``is_link`` does not: an index
    that is a float or a bool."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
        and not is_link(value)
    )


def check_nodes(graph: dict[str, dict[str, Any]], allowed: frozenset[str]) -> None:
    """Every node type on the allowlist."""
    for node_id, node in graph.items():
        class_type = node["class_type"]
        if class_type not in allowed:
            why = DENIED.get(class_type, "not on the gateway's allowlist (RAW_WORKFLOW_NODES)")
            raise ValidationFailed(
                f"node {node_id!r}: {class_type[:100]!r} is not allowed in raw workflows: {why}",
                {"node_id": node_id, "node_type": class_type[:100]},
                field=f"workflow.{node_id}.class_type",
            )


def check_images(graph: dict[str, dict[str, Any]], names: set[str]) -> None:
    """Every LoadImage loads one of ``names``: images the gateway checked and named."""
    for node_id, value in image_inputs(graph):
        if (
            not isinstance(value, str)
            or not GATEWAY_IMAGE_NAME.fullmatch(value)
            or value not in names
        ):
            raise ValidationFailed(
                f"node {node_id!r} (LoadImage): 'image' must be a data: URI or an https URL "
                "of the image",
                field=f"workflow.{node_id}.inputs.image",
            )


def image_inputs(graph: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    """(node id, value) of every LoadImage ``image`` input, for the API to resolve."""
    return [
        (node_id, node["inputs"].get(IMAGE_INPUT))
        for node_id, node in graph.items()
        if node["class_type"] == IMAGE_NODE
    ]
