"""What one request may cost: limits applied to parameter values by name, in every template.

``MAX_PIXELS`` bounds ``width`` x ``height``, ``MAX_STEPS`` bounds ``steps``,
``MAX_BATCH_SIZE`` bounds ``batch_size``, ``MAX_PROMPT_CHARS`` bounds ``prompt`` and every
parameter whose name ends in ``_prompt``. They apply to the values a job would actually use
(defaults included), on top of each template's own bounds: an operator can make a public
gateway cheaper without editing templates. A raw workflow is held to the same limits on the
values its nodes will receive (``graph_costs.py``: links followed, batches multiplied).

The same limits hold at run time, on what every job (template or raw) returns:
``MAX_BATCH_SIZE`` bounds the number of images a job returns (``outputs_error``), and
``MAX_PIXELS`` the width x height of each (``pixels_error``); the job service stops a job
past them. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from comfygate.errors import ValidationFailed


def is_prompt(name: str) -> bool:
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

        def over(field: str, message: str, limit: int, setting: str) -> ValidationFailed:
            return ValidationFailed(
                f"{prefix}'{field}': {message} ({setting} is {limit})",
                {"limit": limit, "setting": setting},
                field=field,
            )

        width, height = values.get("width"), values.get("height")
        if (
            self.max_pixels is not None
            and _number(width)
            and _number(height)
            and width * height > self.max_pixels
        ):
            raise over(
                "width",
                f"{width}x{height} is {width * height} pixels",
                self.max_pixels,
                "MAX_PIXELS",
            )
        steps = values.get("steps")
        if self.max_steps is not None and _number(steps) and steps > self.max_steps:
            raise over("steps", f"{steps} steps is too many", self.max_steps, "MAX_STEPS")
        batch = values.get("batch_size")
        if self.max_batch_size is not None and _number(batch) and batch > self.max_batch_size:
            raise over(
                "batch_size",
                f"a batch of {batch} is too large",
                self.max_batch_size,
                "MAX_BATCH_SIZE",
            )
        if self.max_prompt_chars is not None:
            for name, value in values.items():
                prompt_like = is_prompt(name) or (where and name == "text")
                if prompt_like and isinstance(value, str) and len(value) > self.max_prompt_chars:
                    raise over(
                        name,
                        f"{len(value)} characters is too long",
                        self.max_prompt_chars,
                        "MAX_PROMPT_CHARS",
                    )

    def outputs_error(self, count: int) -> dict[str, Any] | None:
        """The job error for a job that returned ``count`` images, if that is too many."""
        limit = self.max_batch_size
        if limit is None or count <= limit:
            return None
        return {
            "code": "generation_failed",
            "message": f"the job returned more than {limit} images, the most MAX_BATCH_SIZE "
            "allows: it was stopped",
            "details": {"setting": "MAX_BATCH_SIZE", "limit": limit, "outputs": count},
        }

    def pixels_error(self, node_id: str, width: int, height: int) -> dict[str, Any] | None:
        """The job error for an output of ``width`` x ``height``, if that is too large."""
        limit = self.max_pixels
        if limit is None or width * height <= limit:
            return None
        return {
            "code": "generation_failed",
            "message": f"the job returned a {width}x{height} image ({width * height} pixels), "
            f"more than MAX_PIXELS allows ({limit}): it was stopped",
            "details": {"setting": "MAX_PIXELS", "limit": limit, "node_id": node_id},
        }


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
