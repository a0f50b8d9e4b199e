"""Prompts: the text encoders that a pass's positive and negative conditioning come from,
followed upstream through conditioning nodes (ControlNet, FluxGuidance, LTXV, Wan...), and
the Flux guidance on the way."""

from __future__ import annotations

from typing import Any

from comfygate.templates.infer.graph import Graph, Pass
from comfygate.templates.infer.params import Fallback, Params

PROMPT_MAX_LENGTH = 10_000

# Text encoders and their text inputs; the prompt is written into each that holds text.
TEXT_ENCODERS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "CLIPTextEncodeHiDream": ("clip_l", "clip_g", "t5xxl", "llama"),
    "CLIPTextEncodeLumina2": ("user_prompt",),
    "CLIPTextEncodePixArtAlpha": ("text",),
    "TextEncodeAceStepAudio": ("tags",),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "TextEncodeHunyuanVideo_ImageToVideo": ("prompt",),
}
# More text an encoder takes, as parameters of their own.
EXTRA_TEXT = {"TextEncodeAceStepAudio": (("lyrics", "lyrics", "Song lyrics."),)}
# Conditioning nodes whose output ignores the text that reaches them: not followed.
TEXT_DISCARDING = frozenset({"ConditioningZeroOut"})
_CONDITIONING = ("conditioning", "conditioning_1", "conditioning_2", "conditioning_to")
GUIDANCE = "Guidance scale the model is conditioned on (Flux)."


def encoders(graph: Graph, starts: list[Any]) -> list[str]:
    """Text encoders that conditioning links come from, nearest first: through conditioning
    inputs, and the positive/negative pairs of nodes like ControlNetApplyAdvanced (output 0 is
    the positive, 1 the negative)."""
    found: list[str] = []
    queue = list(starts)
    seen: set[tuple[str, int]] = set()
    while queue:
        link = queue.pop(0)
        node_id = graph.source(link)
        if node_id is None or (node_id, link[1]) in seen:
            continue
        seen.add((node_id, link[1]))
        node = graph.nodes[node_id]
        class_type, inputs = node["class_type"], node["inputs"]
        if class_type in TEXT_ENCODERS:
            found.append(node_id)
            continue
        if class_type in TEXT_DISCARDING:
            continue
        if "positive" in inputs and "negative" in inputs:
            side = {0: "positive", 1: "negative"}.get(link[1])
            if side is not None:
                queue.append(inputs[side])
            continue
        queue.extend(v for k, v in inputs.items() if k in _CONDITIONING)
    return found


def prompts(graph: Graph, params: Params, p: Pass, prefix: str) -> None:
    """The prompts of pass ``p``; a later pass (``prefix``: ``refiner_``, ``hires_``) joins
    the first pass's parameter when its text is the same, else gets one of its own."""
    label = f"{graph.nodes[p.node_id]['class_type']} {p.node_id}"
    positive = encoders(graph, p.positive)
    negative = [n for n in encoders(graph, p.negative) if n not in positive[:1]]
    if positive:
        _prompt(graph, params, "prompt", prefix, positive, "What to draw.", "positive")
    elif not prefix:
        params.notes.append(f"{label}: no text encoder with a text found for 'positive'")
    if negative:
        _prompt(graph, params, "negative_prompt", prefix, negative, "What to avoid.", "negative")
    elif any(n is not None for n in p.negative) and not prefix:
        params.notes.append(f"{label}: no text encoder of its own found for 'negative'")
    for node_id, _ in graph.upstream(p.positive, ("conditioning", "positive")):
        if "guidance" in graph.inputs(node_id):
            params.param(
                "guidance",
                node_id,
                "guidance",
                Fallback("number", 0.0, 100.0),
                GUIDANCE,
                tie="equal",
            )


def _prompt(
    graph: Graph,
    params: Params,
    base: str,
    prefix: str,
    found: list[str],
    description: str,
    side: str,
) -> None:
    texts: list[tuple[tuple[str, str], str]] = []
    for node_id in found:
        class_type = graph.nodes[node_id]["class_type"]
        fields = [params.literal(node_id, f) for f in TEXT_ENCODERS[class_type]]
        held = [(where, v) for where, v in (f for f in fields if f) if isinstance(v, str)]
        if held:
            texts = held
            break
        params.notes.append(
            f"node {node_id} ({class_type}) gets its text from another node: not made a parameter"
        )
    if not texts or all(params.targeted(*where) for where, _ in texts):
        return
    node_id = found[0]
    value = texts[0][1]
    joined = [n for n in (base, prefix + base) if n in params.params and params.values[n] == value]
    if joined:
        name = joined[0]
    else:
        param: dict[str, Any] = {
            "type": "string",
            "max_length": max(PROMPT_MAX_LENGTH, *(len(t) for _, t in texts)),
            "description": description,
            "targets": [],
        }
        if base == "prompt" and not prefix:
            param["required"] = True
        else:
            param["default"] = value
        name = params.add(prefix + base, param, value)
        if len({t for _, t in texts}) > 1:
            params.notes.append(
                f"node {node_id} ({graph.nodes[node_id]['class_type']}) holds different texts "
                f"in {', '.join(w[1] for w, _ in texts)}: {name!r} writes the same text into "
                "all of them"
            )
    for (holder, field), _ in texts:
        params.target(name, holder, field)
    for extra, input_name, text in EXTRA_TEXT.get(graph.nodes[node_id]["class_type"], ()):
        fallback = Fallback("string", max_length=PROMPT_MAX_LENGTH)
        params.param(extra, node_id, input_name, fallback, text, quiet=True)
    if len(found) > 1 and not prefix:
        rest = ", ".join(found[1:])
        params.notes.append(
            f"several text encoders feed the {side} conditioning: {name!r} writes node "
            f"{node_id}; node(s) {rest} keep their text"
        )
