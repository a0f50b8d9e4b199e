"""Template authoring: a template document inferred from a workflow exported from ComfyUI.

``import_workflow(data, name, object_info=None)`` returns an :class:`ImportResult`: the
template document (the JSON dict a template file holds, already checked with
``parse_template``) and notes for the author: which node was chosen when there were several,
what was left out, what to check by hand. Problems that make an import impossible raise
:class:`TemplateImportError` (a :class:`TemplateError`) with a message saying what to do.

Accepted workflows:

* ComfyUI's API format (menu Workflow > Export (API); the legacy "Save (API Format)"):
  ``{node_id: {"class_type": ..., "inputs": {...}}}``, also wrapped as a POST /prompt body
  (``{"prompt": {...}, ...}``). Used as it is.
* ComfyUI's UI format (what "Save" writes: top-level ``nodes`` and ``links`` lists). Only the
  node definitions of a ComfyUI (GET /object_info) say which widget value is which input, so
  it is converted to the API format when ``object_info`` is given and refused without it.
  The conversion follows ComfyUI's frontend: widget values are mapped onto the inputs that
  are not link types (required then optional, in ``input_order``), the "control after
  generate" value after a seed is skipped, muted nodes are left out, bypassed nodes pass their
  input of the same type through, Reroute nodes are followed, PrimitiveNode values are written
  into the inputs they feed, Note and MarkdownNote nodes are dropped. Group nodes, subgraphs
  and node types the ComfyUI does not know (when connected) are refused.

Parameters inferred (a repeated name gets ``_2``, ``_3``...):

* ``prompt`` (required) and ``negative_prompt``: the text of the CLIPTextEncode (or
  CLIPTextEncodeSDXL/SD3/Flux) nodes feeding the first KSampler's ``positive`` and ``negative``
  inputs, followed through conditioning nodes (ConditioningCombine, ControlNetApply...);
* ``seed`` (``seed: true``, no default), ``steps``, ``cfg``, ``sampler``, ``scheduler``,
  ``denoise`` from the first KSampler or KSamplerAdvanced by node id (``noise_seed`` for the
  latter, which has no ``denoise``);
* ``width``, ``height``, ``batch_size`` from each EmptyLatentImage / EmptySD3LatentImage (the
  one feeding the sampler first);
* ``checkpoint`` (``model_folder: "checkpoints"``) from each CheckpointLoaderSimple;
* ``image`` from each LoadImage: a required parameter of type ``image``, declared like the
  built-in img2img's (no default): the client sends a multipart file, a base64 data: URI or an
  https URL, which the gateway checks and uploads to the backend under a name it makes.

Defaults are the workflow's current values. Types, bounds and the sampler/scheduler choices
come from ``object_info`` when given, else from built-in bounds (those of the built-in
txt2img template, widened to hold the workflow's value).
"""

from __future__ import annotations

import copy
import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from comfygate.templates.model import SEED_MAX
from comfygate.templates.raw import is_link
from comfygate.templates.registry import TemplateError, parse_template

EXPORT_HINT = (
    "export the workflow from ComfyUI in API format: menu Workflow > Export (API) "
    "(File > Export (API) in newer versions; in the legacy menu, turn on "
    "'Enable dev mode options' in the settings and use the 'Save (API Format)' button)"
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROMPT_MAX_LENGTH = 10_000
NAME_MAX_LENGTH = 255
IMAGE_DESCRIPTION = (
    "An input image: a multipart file, a base64 data: URI or an https URL (PNG, JPEG or WebP)."
)

# Text encoders and their text inputs; the prompt is written into each that holds text.
_TEXT_ENCODERS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
}
# Conditioning nodes whose output ignores the text that reaches them: not followed.
_TEXT_DISCARDING = frozenset({"ConditioningZeroOut"})
_SAMPLERS = ("KSampler", "KSamplerAdvanced")
_LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")

# Frontend-only node types of the UI format.
_NOTES = frozenset({"Note", "MarkdownNote"})
_REROUTE = "Reroute"
_PRIMITIVE = "PrimitiveNode"
_MUTED, _BYPASSED = 2, 4
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
_PARAM_TYPES = {"INT": "integer", "FLOAT": "number", "STRING": "string", "BOOLEAN": "boolean"}
_KIND_OF = {param_type: kind for kind, param_type in _PARAM_TYPES.items()}


class TemplateImportError(TemplateError):
    """A workflow cannot be made into a template; the message says why and what to do."""


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_workflow` returns.

    ``template``: the template document (name, description, parameters, workflow), valid for
    ``parse_template``; write it as ``NAME.json`` into TEMPLATES_DIR.
    ``notes``: for the author, one sentence each (choices made, parts left out, things to
    check by hand); empty when there is nothing to say. Not part of the template.
    """

    template: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def import_workflow(
    data: Any, name: str, object_info: dict[str, Any] | None = None
) -> ImportResult:
    """Infer a template named ``name`` from a workflow exported from ComfyUI (API format, or UI
    format with ``object_info``, ComfyUI's GET /object_info). See the module docstring."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TemplateImportError(
            f"template name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if object_info is not None and not isinstance(object_info, dict):
        raise TemplateImportError("object_info must be ComfyUI's GET /object_info (an object)")
    notes: list[str] = []
    graph = _api_graph(data, object_info, notes)
    classes = sorted({node["class_type"] for node in graph.values()})
    unknown = [c for c in classes if object_info is not None and c not in object_info]
    if unknown:
        notes.append(f"node types this ComfyUI does not know: {', '.join(unknown)}")
    parameters = _Inference(graph, object_info, notes).run()
    doc: dict[str, Any] = {
        "name": name,
        "description": "Imported from a ComfyUI workflow: " + ", ".join(classes) + ".",
        "parameters": parameters,
        "workflow": graph,
    }
    try:
        parse_template(doc, f"imported template {name!r}")
    except TemplateError as exc:  # a bug here, not the user's: say so plainly
        raise TemplateImportError(f"the inferred template is not valid: {exc}") from None
    return ImportResult(doc, notes)


# --- recognising the format ------------------------------------------------------------------


def _is_node(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("class_type"), str)
        and isinstance(value.get("inputs"), dict)
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), "a value")


def _api_graph(data: Any, object_info: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        if object_info is None:
            raise TemplateImportError(
                "this workflow is in ComfyUI's UI format (what 'Save' writes: nodes and links); "
                "which widget value is which input is known only from a ComfyUI's node "
                "definitions (GET /object_info): give them, or " + EXPORT_HINT
            )
        return _convert_ui(data, object_info, notes)
    if (
        isinstance(data, dict)
        and isinstance(data.get("prompt"), dict)
        and not _is_node(data["prompt"])
    ):
        notes.append("took the workflow from the 'prompt' of a POST /prompt body")
        data = data["prompt"]
    if not isinstance(data, dict):
        raise TemplateImportError(f"a workflow is a JSON object, not {_kind(data)}; {EXPORT_HINT}")
    if not data:
        raise TemplateImportError(f"the workflow has no nodes; {EXPORT_HINT}")
    bad = [key for key, value in data.items() if not _is_node(value)]
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


# --- object_info -----------------------------------------------------------------------------


def _ordered_inputs(info: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, spec) of a node type's required then optional inputs, in ComfyUI's order."""
    spec_groups, order = _dict(info.get("input")), _dict(info.get("input_order"))
    for group in ("required", "optional"):
        specs = _dict(spec_groups.get(group))
        names = order[group] if isinstance(order.get(group), list) else list(specs)
        for input_name in names:
            if input_name in specs:
                yield input_name, specs[input_name]


def _spec_kind(spec: Any) -> tuple[str, dict[str, Any], list[Any] | None]:
    """(type, options, choices) of an input spec: choices for a combo (either form)."""
    if not isinstance(spec, list | tuple) or not spec:
        return "", {}, None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return "COMBO", options, list(spec[0])
    if spec[0] == "COMBO":
        choices = options.get("options")
        return "COMBO", options, list(choices) if isinstance(choices, list) else []
    return (spec[0] if isinstance(spec[0], str) else ""), options, None


def _input_spec(
    object_info: dict[str, Any] | None, class_type: str, input_name: str
) -> tuple[str, dict[str, Any], list[Any] | None] | None:
    info = (object_info or {}).get(class_type)
    if not isinstance(info, dict):
        return None
    for spec_name, spec in _ordered_inputs(info):
        if spec_name == input_name:
            return _spec_kind(spec)
    return None


# --- UI format -> API format -----------------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    origin: str
    slot: int
    type: Any


def _ui_links(raw: Any) -> dict[Any, _Link]:
    if not isinstance(raw, list):
        raise TemplateImportError("UI-format workflow: 'links' must be a list")
    links: dict[Any, _Link] = {}
    for entry in raw:
        if isinstance(entry, list) and len(entry) >= 5:
            link_id, origin, slot = entry[0], entry[1], entry[2]
            link_type = entry[5] if len(entry) > 5 else None
        elif isinstance(entry, dict) and {"id", "origin_id", "origin_slot"} <= entry.keys():
            link_id, origin, slot = entry["id"], entry["origin_id"], entry["origin_slot"]
            link_type = entry.get("type")
        else:
            raise TemplateImportError(
                f"UI-format workflow: link {entry!r} is neither "
                "[id, from_node, from_slot, to_node, to_slot, type] nor an object"
            )
        if not isinstance(slot, int) or isinstance(slot, bool):
            raise TemplateImportError(f"UI-format workflow: link {link_id!r} has no output slot")
        links[link_id] = _Link(str(origin), slot, link_type)
    return links


class _UIConverter:
    def __init__(self, data: dict[str, Any], object_info: dict[str, Any], notes: list[str]):
        self.object_info = object_info
        self.notes = notes
        self.nodes: dict[str, dict[str, Any]] = {}
        for raw in data["nodes"]:
            if not isinstance(raw, dict) or "id" not in raw or not isinstance(raw.get("type"), str):
                raise TemplateImportError(
                    "UI-format workflow: every entry of 'nodes' needs an 'id' and a 'type'"
                )
            self.nodes[str(raw["id"])] = raw
        self.links = _ui_links(data.get("links", []))
        definitions = data.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
        self.subgraphs = {
            sg.get("id")
            for sg in (subgraphs if isinstance(subgraphs, list) else [])
            if isinstance(sg, dict)
        }

    def convert(self) -> dict[str, Any]:
        graph: dict[str, Any] = {}
        for node_id in sorted(self.nodes, key=_id_key):
            node = self.nodes[node_id]
            class_type: str = node["type"]
            label = f"node {node_id} ({class_type})"
            if node.get("mode") in (_MUTED, _BYPASSED) or class_type in _NOTES:
                continue
            if class_type in (_REROUTE, _PRIMITIVE):
                continue  # followed or inlined where they are used
            if class_type in self.subgraphs or class_type.startswith(("workflow>", "workflow/")):
                kind = "a subgraph" if class_type in self.subgraphs else "a group node"
                raise TemplateImportError(
                    f"{label} is {kind}, which this import does not expand: convert it to "
                    f"nodes in ComfyUI first, or {EXPORT_HINT}"
                )
            info = self.object_info.get(class_type)
            if not isinstance(info, dict):
                if self._connected(node):
                    raise TemplateImportError(
                        f"{label}: this ComfyUI does not know the node type (a custom node that "
                        f"is not installed?); install it, or {EXPORT_HINT}"
                    )
                self.notes.append(
                    f"left out {label}: unknown to this ComfyUI, connected to nothing"
                )
                continue
            graph[node_id] = {"class_type": class_type, "inputs": self._inputs(node_id, node, info)}
        if not graph:
            raise TemplateImportError(f"the workflow has no nodes to run; {EXPORT_HINT}")
        return graph

    def _connected(self, node: dict[str, Any]) -> bool:
        inputs, outputs = _list(node.get("inputs")), _list(node.get("outputs"))
        return any(isinstance(i, dict) and i.get("link") is not None for i in inputs) or any(
            isinstance(o, dict) and o.get("links") for o in outputs
        )

    def _inputs(self, node_id: str, node: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        class_type: str = node["type"]
        label = f"node {node_id} ({class_type})"
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if values is None:
            values = []
        if not isinstance(values, list | dict):
            raise TemplateImportError(f"{label}: 'widgets_values' must be a list")
        position = 0
        for input_name, spec in _ordered_inputs(info):
            kind, options, choices = _spec_kind(spec)
            if kind not in _WIDGET_TYPES or options.get("forceInput"):
                continue
            if isinstance(values, dict):
                found = input_name in values
                value = values.get(input_name)
            else:
                found = position < len(values)
                value = values[position] if found else None
                position += found
                with_control = options.get("control_after_generate") or (
                    kind == "INT" and input_name in ("seed", "noise_seed")
                )
                if (
                    found
                    and with_control
                    and position < len(values)
                    and values[position] in _CONTROL_VALUES
                ):
                    position += 1
            if not found:
                value = _spec_default(kind, options, choices)
                self.notes.append(
                    f"{label} has no value for {input_name!r}: used {value!r}, "
                    "ComfyUI's default (check it)"
                )
            elif not _fits(kind, value):
                raise TemplateImportError(
                    f"{label}: the value {value!r} for {input_name!r} is not {kind}: the "
                    f"workflow's widget values do not match this ComfyUI's {class_type} (saved "
                    f"with another version?); {EXPORT_HINT}"
                )
            inputs[input_name] = value
        for slot in _list(node.get("inputs")):
            if not isinstance(slot, dict) or slot.get("link") is None:
                continue
            widget_name = _dict(slot.get("widget")).get("name")
            slot_name = widget_name if isinstance(widget_name, str) else slot.get("name")
            if not isinstance(slot_name, str):
                raise TemplateImportError(f"{label}: an input has no name")
            source = self._resolve(slot["link"], label)
            if source is None:
                inputs.pop(slot_name, None)
            else:
                inputs[slot_name] = source[1]
        return inputs

    def _resolve(self, link_id: Any, where: str) -> tuple[str, Any] | None:
        """Where a link's value comes from, through Reroutes and bypassed nodes:
        ("link", [node_id, slot]) or ("value", a PrimitiveNode's value); None if from
        nothing that runs (a muted node, a Note, a missing node)."""
        for _ in range(len(self.nodes) + 1):
            link = self.links.get(link_id)
            if link is None:
                self.notes.append(f"{where}: link {link_id!r} is not in 'links': left unconnected")
                return None
            origin = self.nodes.get(link.origin)
            if origin is None or origin.get("mode") == _MUTED or origin["type"] in _NOTES:
                why = "a muted node" if origin is not None else "a node the workflow lacks"
                self.notes.append(
                    f"{where}: an input comes from {why} (node {link.origin}): left unconnected"
                )
                return None
            if origin["type"] == _PRIMITIVE:
                values = origin.get("widgets_values")
                if not isinstance(values, list) or not values:
                    raise TemplateImportError(f"PrimitiveNode {link.origin} has no value")
                return ("value", values[0])
            if origin["type"] == _REROUTE or origin.get("mode") == _BYPASSED:
                next_link = self._pass_through(origin, link)
                if next_link is None:
                    return None
                link_id = next_link
                continue
            return ("link", [link.origin, link.slot])
        raise TemplateImportError(f"{where}: its links go round in a loop")

    def _pass_through(self, node: dict[str, Any], link: _Link) -> Any:
        """The link into a Reroute or bypassed node that stands for its output ``link.slot``:
        the input at the same index if its type matches, else the first of the same type."""
        inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        if node["type"] == _REROUTE:
            return inputs[0].get("link") if inputs else None
        outputs = _list(node.get("outputs"))
        out_type = link.type
        if out_type is None and link.slot < len(outputs) and isinstance(outputs[link.slot], dict):
            out_type = outputs[link.slot].get("type")
        candidates = []
        if link.slot < len(inputs):
            candidates.append(inputs[link.slot])
        candidates.extend(inputs)
        for candidate in candidates:
            if candidate.get("link") is not None and candidate.get("type") == out_type:
                return candidate["link"]
        return None


def _spec_default(kind: str, options: dict[str, Any], choices: list[Any] | None) -> Any:
    if "default" in options:
        return options["default"]
    if choices:
        return choices[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def _fits(kind: str, value: Any) -> bool:
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


def _convert_ui(
    data: dict[str, Any], object_info: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    return _UIConverter(data, object_info, notes).convert()


def _id_key(node_id: str) -> tuple[int, int, str]:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


# --- inference -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fallback:
    """What a parameter is when object_info says nothing: type, bounds, choices."""

    type: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: tuple[Any, ...] | None = None
    max_length: int | None = None


@cache
def _builtin_choices(parameter: str) -> tuple[Any, ...] | None:
    """The sampler/scheduler choices of the built-in txt2img template."""
    text = (resources.files("comfygate.templates") / "builtin" / "txt2img.json").read_text(
        encoding="utf-8"
    )
    enum = json.loads(text).get("parameters", {}).get(parameter, {}).get("enum")
    return tuple(enum) if isinstance(enum, list) else None


class _Inference:
    def __init__(
        self, graph: dict[str, Any], object_info: dict[str, Any] | None, notes: list[str]
    ) -> None:
        self.graph = graph
        self.object_info = object_info
        self.notes = notes
        self.params: dict[str, dict[str, Any]] = {}

    def run(self) -> dict[str, dict[str, Any]]:
        ids = sorted(self.graph, key=_id_key)
        samplers = [i for i in ids if self.graph[i]["class_type"] in _SAMPLERS]
        sampler_id = samplers[0] if samplers else None
        if len(samplers) > 1:
            self.notes.append(
                f"{len(samplers)} samplers ({', '.join(samplers)}): parameters come from the "
                f"first by node id, {samplers[0]} ({self.graph[samplers[0]]['class_type']}); "
                "the others keep their values (add targets by hand to change them too)"
            )
        if sampler_id is None:
            self.notes.append(
                "no KSampler or KSamplerAdvanced: no prompt or sampler parameters inferred"
            )
        else:
            self._prompts(sampler_id)
            self._sampler(sampler_id)
        self._latents(ids, sampler_id)
        for node_id in ids:
            if self.graph[node_id]["class_type"] == "CheckpointLoaderSimple":
                self._checkpoint(node_id)
        for node_id in ids:
            if self.graph[node_id]["class_type"] == "LoadImage":
                self._image(node_id)
        self._outputs()
        if not self.params:
            self.notes.append(
                "no parameters recognised: add them by hand (README, section Templates)"
            )
        return self.params

    # prompts

    def _prompts(self, sampler_id: str) -> None:
        inputs = self.graph[sampler_id]["inputs"]
        positive = self._encoders(inputs.get("positive"))
        negative = self._encoders(inputs.get("negative"))
        label = f"{self.graph[sampler_id]['class_type']} {sampler_id}"
        if positive:
            self._prompt("prompt", positive, "What to draw.", required=True, side="positive")
        else:
            self.notes.append(f"{label}: no text encoder with a text found for 'positive'")
        negative = [n for n in negative if n not in positive[:1]]
        if negative:
            self._prompt("negative_prompt", negative, "What to avoid.", side="negative")
        elif inputs.get("negative") is not None:
            self.notes.append(f"{label}: no text encoder of its own found for 'negative'")

    def _prompt(
        self, name: str, encoders: list[str], description: str, *, side: str, required: bool = False
    ) -> None:
        node_id = encoders[0]
        node = self.graph[node_id]
        fields = [
            f for f in _TEXT_ENCODERS[node["class_type"]] if isinstance(node["inputs"].get(f), str)
        ]
        texts = [node["inputs"][f] for f in fields]
        param: dict[str, Any] = {
            "type": "string",
            "max_length": max(PROMPT_MAX_LENGTH, *(len(t) for t in texts)),
            "description": description,
        }
        if required:
            param["required"] = True
        else:
            param["default"] = texts[0]
        if len(set(texts)) > 1:
            self.notes.append(
                f"node {node_id} ({node['class_type']}) holds different texts in "
                f"{', '.join(fields)}: {name!r} writes the same text into all of them"
            )
        param["targets"] = [f"{node_id}.{f}" for f in fields]
        if len(encoders) > 1:
            rest = ", ".join(encoders[1:])
            self.notes.append(
                f"several text encoders feed the {side} conditioning: {name!r} writes node "
                f"{node_id}; node(s) {rest} keep their text"
            )
        self._add(name, param)

    def _encoders(self, start: Any) -> list[str]:
        """Text encoders (with literal text) that a conditioning link comes from, nearest
        first: through conditioning inputs, and the positive/negative pairs of nodes like
        ControlNetApplyAdvanced (output 0 is the positive, 1 the negative)."""
        found: list[str] = []
        queue: deque[Any] = deque([start])
        seen: set[tuple[str, int]] = set()
        while queue:
            link = queue.popleft()
            if not is_link(link) or (link[0], link[1]) in seen or link[0] not in self.graph:
                continue
            seen.add((link[0], link[1]))
            node = self.graph[link[0]]
            class_type, inputs = node["class_type"], node["inputs"]
            if class_type in _TEXT_ENCODERS:
                if any(isinstance(inputs.get(f), str) for f in _TEXT_ENCODERS[class_type]):
                    found.append(link[0])
                else:
                    self.notes.append(
                        f"node {link[0]} ({class_type}) gets its text from another node: "
                        "not made a parameter"
                    )
                continue
            if class_type in _TEXT_DISCARDING:
                continue
            if is_link(inputs.get("positive")) and is_link(inputs.get("negative")):
                side = {0: "positive", 1: "negative"}.get(link[1])
                if side is not None:
                    queue.append(inputs[side])
                continue
            queue.extend(v for k, v in inputs.items() if k.startswith("conditioning"))
        return found

    # sampler, latent, models

    def _sampler(self, node_id: str) -> None:
        advanced = self.graph[node_id]["class_type"] == "KSamplerAdvanced"
        self._param(
            "seed",
            node_id,
            "noise_seed" if advanced else "seed",
            _Fallback("integer", 0, SEED_MAX),
            "Noise seed; the same seed and parameters give the same image.",
            seed=True,
        )
        self._param("steps", node_id, "steps", _Fallback("integer", 1, 150), "Sampling steps.")
        self._param(
            "cfg", node_id, "cfg", _Fallback("number", 0.0, 30.0), "Classifier-free guidance scale."
        )
        self._param(
            "sampler",
            node_id,
            "sampler_name",
            _Fallback("string", enum=_builtin_choices("sampler")),
            "Sampler.",
        )
        self._param(
            "scheduler",
            node_id,
            "scheduler",
            _Fallback("string", enum=_builtin_choices("scheduler")),
            "Noise schedule.",
        )
        if not advanced:
            self._param(
                "denoise",
                node_id,
                "denoise",
                _Fallback("number", 0.0, 1.0),
                "How much of the latent is replaced by noise (1: all of it).",
            )

    def _latents(self, ids: list[str], sampler_id: str | None) -> None:
        latents = [i for i in ids if self.graph[i]["class_type"] in _LATENTS]
        feeding: Any = None
        if sampler_id is not None:
            feeding = self.graph[sampler_id]["inputs"].get("latent_image")
        if is_link(feeding) and feeding[0] in latents:
            first: str = feeding[0]
            latents.remove(first)
            latents.insert(0, first)
        for node_id in latents:
            for side in ("width", "height"):
                self._param(
                    side,
                    node_id,
                    side,
                    _Fallback("integer", 64, 2048),
                    f"Image {side} in pixels (a multiple of 8).",
                )
            self._param(
                "batch_size", node_id, "batch_size", _Fallback("integer", 1, 8), "Images per job."
            )

    def _image(self, node_id: str) -> None:
        """LoadImage's file as an ``image`` parameter, the shape of the built-in img2img's:
        required, with no default (it would name a file on one ComfyUI: the registry refuses
        it). The gateway binds the name of the image it checked and uploaded, so the
        workflow's own file name never reaches ComfyUI."""
        if self._literal("image", node_id, "image") is None:
            return
        param: dict[str, Any] = {
            "type": "image",
            "required": True,
            "description": IMAGE_DESCRIPTION,
            "targets": [f"{node_id}.image"],
        }
        self._add("image", param)

    def _checkpoint(self, node_id: str) -> None:
        name = self._param(
            "checkpoint",
            node_id,
            "ckpt_name",
            _Fallback("string", max_length=NAME_MAX_LENGTH),
            "Checkpoint file name in the models folder 'checkpoints'.",
            choices=False,
            model_folder="checkpoints",
        )
        spec = _input_spec(self.object_info, "CheckpointLoaderSimple", "ckpt_name")
        if name is None or spec is None or spec[2] is None:
            return
        value = self.params[name].get("default")
        if value not in spec[2]:
            self.notes.append(
                f"{name!r}: the workflow's checkpoint {value!r} is not on this ComfyUI"
            )

    def _outputs(self) -> None:
        classes = {node["class_type"] for node in self.graph.values()}
        if "PreviewImage" in classes and "SaveImage" not in classes:
            self.notes.append(
                "the images come from PreviewImage only: use SaveImage, or set "
                '"include_temp_outputs": true in the template, or the jobs return no image'
            )

    # one parameter

    def _param(
        self,
        base: str,
        node_id: str,
        input_name: str,
        fallback: _Fallback,
        description: str,
        *,
        seed: bool = False,
        required: bool = False,
        choices: bool = True,
        model_folder: str | None = None,
    ) -> str | None:
        """Make input ``input_name`` of node ``node_id`` a parameter named after ``base``;
        returns its name, or None (with a note) when the input holds no usable value."""
        node = self.graph[node_id]
        label = f"node {node_id} ({node['class_type']}) input {input_name!r}"
        literal = self._literal(base, node_id, input_name)
        if literal is None:
            return None
        (value,) = literal
        spec = _input_spec(self.object_info, node["class_type"], input_name)
        kind, options, enum = spec if spec is not None else ("", {}, None)
        from_info = kind in _PARAM_TYPES or kind == "COMBO"
        param_type = "string" if kind == "COMBO" else _PARAM_TYPES.get(kind, fallback.type)
        param: dict[str, Any] = {"type": param_type, "description": description}
        if from_info:
            minimum, maximum = options.get("min"), options.get("max")
            if not choices:
                enum = None
        else:
            minimum, maximum = fallback.minimum, fallback.maximum
            enum = list(fallback.enum) if fallback.enum is not None and choices else None
        if param_type not in ("integer", "number"):
            minimum = maximum = None
        if not _fits(_KIND_OF[param_type], value):
            self.notes.append(f"{label} holds {value!r}, not a {param_type}: no {base!r} parameter")
            return None
        default: Any = float(value) if param_type == "number" else value
        problem = None
        if enum is not None and default not in enum:
            if from_info:
                problem = f"{default!r} is not one of this ComfyUI's choices"
            else:
                enum.append(default)
        if minimum is not None and default < minimum:
            if from_info:
                problem = f"{default!r} is below this ComfyUI's minimum {minimum!r}"
            else:
                minimum = default
        if maximum is not None and default > maximum:
            if from_info:
                problem = f"{default!r} is above this ComfyUI's maximum {maximum!r}"
            else:
                maximum = default
        for key, bound in (("minimum", minimum), ("maximum", maximum)):
            if bound is not None:
                param[key] = bound
        if enum is not None:
            param["enum"] = enum
        elif param_type == "string" and fallback.max_length is not None:
            param["max_length"] = fallback.max_length
        if seed:
            param["seed"] = True
        elif required:
            param["required"] = True
        elif problem is None:
            param["default"] = default
        else:
            self.notes.append(f"{label}: {problem}: {base!r} has no default")
        if model_folder is not None:
            param["model_folder"] = model_folder
        param["targets"] = [f"{node_id}.{input_name}"]
        return self._add(base, param)

    def _literal(self, base: str, node_id: str, input_name: str) -> tuple[Any] | None:
        """(value,) of input ``input_name`` of node ``node_id`` when the workflow holds it as a
        value; None (with a note saying no ``base`` parameter) when it is missing or linked."""
        node = self.graph[node_id]
        label = f"node {node_id} ({node['class_type']}) input {input_name!r}"
        if input_name not in node["inputs"]:
            self.notes.append(f"{label} is missing: no {base!r} parameter")
            return None
        value = node["inputs"][input_name]
        if is_link(value):
            self.notes.append(f"{label} comes from another node: no {base!r} parameter")
            return None
        return (value,)

    def _add(self, base: str, param: dict[str, Any]) -> str:
        name, n = base, 1
        while name in self.params:
            n += 1
            name = f"{base}_{n}"
        self.params[name] = param
        return name
