"""Template authoring: a template document inferred from a workflow exported from ComfyUI.

``import_workflow(data, name, object_info=None)`` returns an :class:`ImportResult`: the
template document (the JSON dict a template file holds, already checked with
``parse_template``) and notes for the author: what was tied, left out, or to check by hand.
Problems that make an import impossible raise :class:`TemplateImportError` (a
:class:`TemplateError`) with a message saying what to do.

Accepted (``formats``): ComfyUI's API format (Workflow > Export (API)), also inside a POST
/prompt body or a RunPod-style ``{"input": {"workflow": ...}}`` request; its UI format (what
'Save' writes) with ``object_info`` (GET /object_info), converted by ``ui`` after expanding
subgraphs (``subgraphs``).

Parameters follow the graph (``graph``), not a list of node names: every sampler pass
(KSampler, KSamplerAdvanced, SamplerCustom, SamplerCustomAdvanced with its RandomNoise,
guider, KSamplerSelect and scheduler) gives ``seed`` (one for every pass that adds noise),
``steps``, ``cfg``, ``sampler``, ``scheduler``, ``denoise``; the text encoders its positive and
negative conditioning come from give ``prompt`` (required) and ``negative_prompt``
(``prompts``), FluxGuidance on the way ``guidance``; the node its latent comes from gives
``width``, ``height``, ``batch_size``, ``length`` (video frames) or ``seconds`` (audio). A
later pass (SDXL refiner, hires fix) writes the same parameter where it holds the same value,
and ``refiner_...``/``hires_...`` ones where not. Loaders give model choices with a
``model_folder`` (``checkpoint``, ``unet``, ``clip``, ``vae``, ``lora`` with
``lora_strength``, ``controlnet``, ``upscale_model``...), LoadImage an ``image``, video savers
``fps`` (``rules``). Inputs one PrimitiveNode (or Primitive* node) feeds are written together.
Defaults are the workflow's values; types, bounds and choices come from ``object_info`` when
given, else from built-in bounds (``params``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from comfygate.templates.infer import rules
from comfygate.templates.infer.formats import (
    EXPORT_HINT,
    TemplateImportError,
    api_graph,
    is_ui,
    unwrap,
)
from comfygate.templates.infer.graph import Graph
from comfygate.templates.infer.nodeinfo import check_object_info
from comfygate.templates.infer.params import Params
from comfygate.templates.infer.prompts import prompts
from comfygate.templates.infer.ui import convert_ui
from comfygate.templates.registry import TemplateError, parse_template

__all__ = ["EXPORT_HINT", "ImportResult", "TemplateImportError", "default_name", "import_workflow"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_workflow` returns.

    ``template``: the template document (name, description, parameters, workflow), valid for
    ``parse_template``; write it as ``NAME.json`` into TEMPLATES_DIR.
    ``notes``: for the author, one sentence each; empty when there is nothing to say.
    """

    template: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def default_name(stem: str) -> str:
    """A template name made from a file name: unsafe runs become '-', at most 64 characters,
    starting and ending with a letter or digit ('' when nothing is left)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-_.")[:64]
    return name.rstrip("-_.")


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
    if object_info is not None:
        object_info = check_object_info(object_info)
    notes: list[str] = []
    data = unwrap(data, notes)
    ties: list[list[tuple[str, str]]] = []
    if is_ui(data):
        if object_info is None:
            raise TemplateImportError(
                "this workflow is in ComfyUI's UI format (what 'Save' writes: nodes and links); "
                "which widget value is which input is known only from a ComfyUI's node "
                "definitions (GET /object_info): give them, or " + EXPORT_HINT
            )
        converted = convert_ui(data, object_info, notes)
        graph, ties = converted.graph, converted.ties
    else:
        graph = api_graph(data, notes)
    classes = sorted({node["class_type"] for node in graph.values()})
    unknown = [c for c in classes if object_info is not None and c not in object_info]
    if unknown:
        notes.append(f"node types this ComfyUI does not know: {', '.join(unknown)}")
    parameters = infer_parameters(graph, object_info, notes, ties)
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


def infer_parameters(
    nodes: dict[str, Any],
    object_info: dict[str, Any] | None,
    notes: list[str],
    ties: list[list[tuple[str, str]]] | None = None,
) -> dict[str, dict[str, Any]]:
    graph = Graph(nodes)
    params = Params(nodes, object_info, notes, ties)
    passes = graph.passes()
    if not passes:
        notes.append("no sampler (KSampler, SamplerCustomAdvanced...): no prompt or seed inferred")
    roles: dict[str, str] = {}  # loader node -> the prefix of the pass it feeds
    for index, p in enumerate(passes):
        prefix = rules.pass_prefix(graph, passes, index)
        root = graph.model_root(p.model)
        if prefix == "refiner_" and root is not None:
            roles.setdefault(root, prefix)
        prompts(graph, params, p, prefix)
        rules.sampling(graph, params, p, prefix)
        rules.sizes(graph, params, p, prefix)
    for node_id in graph.ids():  # latents no pass was found to use: numbered, not tied
        if graph.nodes[node_id]["class_type"].startswith("Empty"):
            rules.size_node(graph, params, node_id, tie=None)
    rules.frame_rates(graph, params)
    rules.echoes(graph, params)
    rules.loaders(graph, params, roles)
    rules.images(graph, params)
    rules.outputs(graph, params)
    if len(passes) > 1:
        names = ", ".join(f"{p.node_id} ({nodes[p.node_id]['class_type']})" for p in passes)
        notes.append(
            f"{len(passes)} sampler passes ({names}): a parameter writes every pass that holds "
            "the same value; the seed writes every pass that adds noise"
        )
    if not params.params:
        notes.append("no parameters recognised: add them by hand (README, section Templates)")
    return params.params
