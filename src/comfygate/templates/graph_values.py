"""Values in a raw workflow: what an input will receive when it is known before the graph
runs, and an order of the nodes that puts every node after the ones it links to.

An input's value is its literal, or, through links, the ``value`` of a ``Primitive*`` node
(chains followed). ComfyUI 0.3.75 has no arithmetic nodes; the other nodes with number
outputs (``GetImageSize``, ``StringLength``, ``SamplingPercentToSigma``, the Wan video nodes'
sizes) compute them from what flows through the graph, so their output is ``Unknown``: it
exists only once the graph runs. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from comfygate.errors import ValidationFailed
from comfygate.templates.raw import is_link

PRIMITIVES = frozenset(
    {
        "PrimitiveInt",
        "PrimitiveFloat",
        "PrimitiveBoolean",
        "PrimitiveString",
        "PrimitiveStringMultiline",
    }
)
# Nodes whose images the job returns (every other saver is denied in raw workflows).


@dataclass(frozen=True)
class Unknown:
    """A value only known once the graph runs: the output of a node that is not a constant."""

    node_id: str
    class_type: str


def resolve(graph: dict[str, dict[str, Any]], value: Any) -> Any:
    """A literal, or the constant a chain of Primitive nodes passes on, or Unknown."""
    seen: set[str] = set()
    while is_link(value):
        source = graph[value[0]]
        if source["class_type"] not in PRIMITIVES or value[1] != 0 or value[0] in seen:
            return Unknown(value[0], str(source["class_type"])[:100])
        seen.add(value[0])
        value = source["inputs"].get("value")
    return value


# Bounds past any limit are all the same: numbers are clamped to this, so that no product
# of them ever overflows a float (a chain of 500 upscales, a width of 10**400).
CAP = 1 << 62


def clamp(value: float) -> float:
    return max(-CAP, min(CAP, value))


def as_number(value: Any) -> int | float | None:
    """The number ComfyUI makes of an INT or FLOAT input (it casts strings), else None;
    clamped to +-CAP."""
    if isinstance(value, bool):
        return int(value)
    number: int | float
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return None
    else:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return clamp(number)


def order(graph: dict[str, dict[str, Any]]) -> list[str]:
    """The nodes, every node after the ones it links to (Kahn); a cycle is refused."""
    needs = {
        node_id: {v[0] for v in node["inputs"].values() if is_link(v)}
        for node_id, node in graph.items()
    }
    users: dict[str, list[str]] = {node_id: [] for node_id in graph}
    for node_id, sources in needs.items():
        for source in sources:
            users[source].append(node_id)
    ready = [node_id for node_id, sources in needs.items() if not sources]
    done: list[str] = []
    while ready:
        node_id = ready.pop()
        done.append(node_id)
        for user in users[node_id]:
            needs[user].discard(node_id)
            if not needs[user]:
                ready.append(user)
    if len(done) < len(graph):
        stuck = sorted(set(graph) - set(done))[0]
        raise ValidationFailed(
            f"the workflow has a cycle through node {stuck!r}", field=f"workflow.{stuck}"
        )
    return done
