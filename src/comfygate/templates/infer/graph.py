"""Walking an API-format graph: what feeds an input, through which nodes, and which sampler
passes there are (KSampler, KSamplerAdvanced, SamplerCustom, SamplerCustomAdvanced) with
where each keeps its seed, steps, cfg, sampler, scheduler, conditioning and latent."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from comfygate.templates.infer.formats import id_key
from comfygate.templates.raw import is_link

Input = tuple[str, str]

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
# Inputs a latent (or the image it is encoded from) arrives by.
LATENT_INPUTS = (
    "latent_image",
    "samples",
    "latent",
    "pixels",
    "image",
    "images",
    "init_image",
    "start_image",
)


@dataclass
class Pass:
    """One sampler node: where its values live (``role -> (node, input)``) and the links it
    takes its conditioning, latent and model from."""

    node_id: str
    values: dict[str, Input] = field(default_factory=dict)
    positive: list[Any] = field(default_factory=list)
    negative: list[Any] = field(default_factory=list)
    latent: Any = None
    model: Any = None


class Graph:
    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = nodes

    def ids(self) -> list[str]:
        return sorted(self.nodes, key=id_key)

    def of_class(self, *classes: str) -> list[str]:
        return [i for i in self.ids() if self.nodes[i]["class_type"] in classes]

    def source(self, link: Any) -> str | None:
        return link[0] if is_link(link) and link[0] in self.nodes else None

    def inputs(self, node_id: str) -> dict[str, Any]:
        inputs: dict[str, Any] = self.nodes[node_id]["inputs"]
        return inputs

    def upstream(self, links: Iterable[Any], through: tuple[str, ...]) -> Iterator[tuple[str, int]]:
        """(node id, output slot) of every node reached from ``links`` by following the
        inputs named in ``through``, nearest first, each once."""
        queue: deque[Any] = deque(links)
        seen: set[tuple[str, int]] = set()
        while queue:
            link = queue.popleft()
            node_id = self.source(link)
            if node_id is None or (node_id, link[1]) in seen:
                continue
            seen.add((node_id, link[1]))
            yield node_id, link[1]
            queue.extend(v for k, v in self.inputs(node_id).items() if k in through)

    def reaches(self, start: Any, target: str, through: tuple[str, ...]) -> bool:
        return any(n == target for n, _ in self.upstream([start], through))

    def model_root(self, link: Any) -> str | None:
        """The loader a model link starts from (through LoRAs, patches, samplings)."""
        found = None
        for node_id, _ in self.upstream([link], ("model",)):
            found = node_id
        return found

    def passes(self) -> list[Pass]:
        """The sampler passes, a pass fed by another's latent after it, else by node id."""
        passes = [self._pass(i) for i in self.of_class(*SAMPLERS)]
        ordered: list[Pass] = []
        pending = list(passes)
        while pending:
            for candidate in pending:
                earlier = [
                    p
                    for p in pending
                    if p is not candidate
                    and self.reaches(candidate.latent, p.node_id, LATENT_INPUTS)
                ]
                if not earlier:
                    break
            ordered.append(candidate)
            pending.remove(candidate)
        return ordered

    def _pass(self, node_id: str) -> Pass:
        node = self.nodes[node_id]
        inputs, kind = node["inputs"], node["class_type"]
        p = Pass(node_id, latent=inputs.get("latent_image"), model=inputs.get("model"))
        if kind == "KSampler":
            p.values.update(
                seed=(node_id, "seed"),
                steps=(node_id, "steps"),
                cfg=(node_id, "cfg"),
                sampler=(node_id, "sampler_name"),
                scheduler=(node_id, "scheduler"),
                denoise=(node_id, "denoise"),
            )
        elif kind == "KSamplerAdvanced":
            if inputs.get("add_noise") != "disable":
                p.values["seed"] = (node_id, "noise_seed")
            p.values.update(
                steps=(node_id, "steps"),
                cfg=(node_id, "cfg"),
                sampler=(node_id, "sampler_name"),
                scheduler=(node_id, "scheduler"),
                start_at_step=(node_id, "start_at_step"),
                end_at_step=(node_id, "end_at_step"),
            )
        elif kind == "SamplerCustom":
            if inputs.get("add_noise") is not False:
                p.values["seed"] = (node_id, "noise_seed")
            p.values["cfg"] = (node_id, "cfg")
        if kind in ("KSampler", "KSamplerAdvanced", "SamplerCustom"):
            p.positive, p.negative = [inputs.get("positive")], [inputs.get("negative")]
        if kind == "SamplerCustomAdvanced":
            noise = self.source(inputs.get("noise"))
            if noise is not None and "noise_seed" in self.inputs(noise):
                p.values["seed"] = (noise, "noise_seed")
            self._guider(p, self.source(inputs.get("guider")))
        if kind in ("SamplerCustom", "SamplerCustomAdvanced"):
            self._sampler_select(p, self.source(inputs.get("sampler")))
            self._sigmas(p, inputs.get("sigmas"))
        return p

    def _guider(self, p: Pass, guider: str | None) -> None:
        if guider is None:
            return
        inputs = self.inputs(guider)
        p.model = inputs.get("model")
        if "cfg" in inputs:
            p.values["cfg"] = (guider, "cfg")
        p.positive = [
            inputs[k] for k in ("positive", "conditioning", "cond1", "cond2") if k in inputs
        ]
        p.negative = [inputs[k] for k in ("negative",) if k in inputs]

    def _sampler_select(self, p: Pass, node_id: str | None) -> None:
        if node_id is not None and "sampler_name" in self.inputs(node_id):
            p.values["sampler"] = (node_id, "sampler_name")

    def _sigmas(self, p: Pass, link: Any) -> None:
        """The scheduler node the sigmas come from (through SplitSigmas and the like)."""
        for node_id, _ in self.upstream([link], ("sigmas",)):
            inputs = self.inputs(node_id)
            if "steps" in inputs or "scheduler" in inputs:
                for role, name in (("steps", "steps"), ("scheduler", "scheduler")):
                    if name in inputs:
                        p.values[role] = (node_id, name)
                if "denoise" in inputs:
                    p.values["denoise"] = (node_id, "denoise")
                return
