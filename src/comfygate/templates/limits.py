"""What one request may cost: limits applied to parameter values by name, in every template.

``MAX_PIXELS`` bounds ``width`` x ``height``, ``MAX_STEPS`` bounds ``steps``,
``MAX_BATCH_SIZE`` bounds ``batch_size``, ``MAX_PROMPT_CHARS`` bounds ``prompt`` and every
parameter whose name ends in ``_prompt``. They apply to the values a job would actually use
(defaults included), on top of each template's own bounds: an operator can make a public
gateway cheaper without editing templates. A raw workflow is held to the same limits through
its node inputs of the same names (``text`` counts as a prompt there). Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from comfygate.errors import ValidationFailed


def _is_prompt(name: str) -> bool:
    return name == "prompt" or name.endswith("_prompt")


@dataclass(frozen=True)
class CostLimits:
    max_pixels: int | None = None
    max_steps: int | None = None
    max_batch_size: int | None = None
    max_prompt_chars: int | None = None

    def check(self, values: dict[str, Any], *, where: str = "") -> None:
        """Raise ValidationFailed naming the first field over a limit."""
        prefix = f"{where}: " if where else ""

        def over(field: str, message: str, limit: int) -> ValidationFailed:
            return ValidationFailed(
                f"{prefix}'{field}': {message} (limit {limit})", {"limit": limit}, field=field
            )

        width, height = values.get("width"), values.get("height")
        if (
            self.max_pixels is not None
            and _number(width)
            and _number(height)
            and width * height > self.max_pixels
        ):
            raise over("width", f"{width}x{height} is {width * height} pixels", self.max_pixels)
        steps = values.get("steps")
        if self.max_steps is not None and _number(steps) and steps > self.max_steps:
            raise over("steps", f"{steps} steps is too many", self.max_steps)
        batch = values.get("batch_size")
        if self.max_batch_size is not None and _number(batch) and batch > self.max_batch_size:
            raise over("batch_size", f"a batch of {batch} is too large", self.max_batch_size)
        if self.max_prompt_chars is not None:
            for name, value in values.items():
                prompt_like = _is_prompt(name) or (where and name == "text")
                if prompt_like and isinstance(value, str) and len(value) > self.max_prompt_chars:
                    raise over(name, f"{len(value)} characters is too long", self.max_prompt_chars)

    def check_graph(self, graph: dict[str, Any]) -> None:
        """The same limits over every node's inputs of a raw workflow."""
        for node_id, node in graph.items():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if isinstance(inputs, dict):
                self.check(inputs, where=f"node {node_id}")


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
