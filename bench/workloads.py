"""The two workloads, as gateway request bodies and as the identical ComfyUI graphs that the
direct client, the polling client and the peer send (built with the gateway's own templates).

Each run gets values no earlier run had (a fresh colour, a fresh seed), so ComfyUI's output
cache never answers for one tool and not for another.
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from typing import Any

from comfygate.templates import TemplateRegistry, bind, resolve_params, validate_params

RANDOM_SD15 = "random-sd15-fp16.safetensors"
_REGISTRY = TemplateRegistry.load()
_colours = itertools.count(random.SystemRandom().randrange(1, 1 << 23))


@dataclass(frozen=True)
class Workload:
    name: str
    template: str
    output_node: str
    fixed: dict[str, Any]

    def params(self) -> dict[str, Any]:
        """Fresh values for one run."""
        values = dict(self.fixed)
        if self.template == "solid":
            values["color"] = next(_colours) % (1 << 24)
        else:
            values["seed"] = random.SystemRandom().randrange(1 << 48)
        return values

    def body(self, params: dict[str, Any]) -> dict[str, Any]:
        """A gateway request body (POST /v1/generate, /v1/jobs)."""
        return {"template": self.template, **params}

    def graph(self, params: dict[str, Any], prefix: str | None = None) -> dict[str, Any]:
        """The ComfyUI graph the gateway would send for these values; by default its file
        goes to a folder of its own, as the gateway's do (``SaveImage`` lists the folder it
        writes into to number the file: a client writing into a crowded ``output/`` pays
        for every file there)."""
        template = _REGISTRY.get(self.template)
        values = resolve_params(template, validate_params(template, params))
        return bind(template, values, prefix or f"bench/{uuid.uuid4().hex}/out")


SOLID = Workload("model-free (solid 64x64)", "solid", "3", {"width": 64, "height": 64})


def sd15(steps: int = 2) -> Workload:
    return Workload(
        f"SD 1.5 txt2img 64x64, {steps} steps",
        "txt2img",
        "9",
        {
            "prompt": "a lighthouse at dusk",
            "width": 64,
            "height": 64,
            "steps": steps,
            "checkpoint": RANDOM_SD15,
        },
    )
