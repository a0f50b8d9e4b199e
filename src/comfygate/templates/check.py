"""Checking a template against one backend's ``/object_info``: what would ComfyUI refuse?

A pure function of the template and the node list (no HTTP): unknown node types, inputs a
node does not declare (except the widgets only ComfyUI's frontend has, such as LoadImage's
``upload``, which ComfyUI ignores), required inputs the workflow lacks, numbers outside the
node's bounds or not numbers at all (an EmptyImage width of 0 fails every run), combo values
(a checkpoint file, a sampler name) the backend does not offer, and model folders a parameter
picks from that hold no model at all on that backend.

A template marked ``optional`` (the built-in SDXL and Flux ones: they need model files many
backends do not have) is *unavailable* rather than failing where only node types or models
are missing: :func:`blocks` says which results should fail a check.

Only values that will reach ComfyUI are checked: a parameter's default replaces the workflow's
value, and a value the caller must give (a required parameter, a drawn seed, a model chosen
from the folder) is not known in advance, so the placeholder in the workflow is not judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from comfygate.comfy.object_info import combo_options, declared_inputs
from comfygate.templates.model import Template
from comfygate.templates.raw import is_link

ProblemKind = Literal["node_type", "input", "model"]

# Widgets ComfyUI's frontend adds to a node and saves with it, which no /object_info
# declares and ComfyUI ignores: LoadImage's upload button, VideoHelperSuite's preview.
FRONTEND_WIDGETS = frozenset({"upload", "choose file to upload", "videopreview"})

# A combo value with one of these endings names a model file: reported as "model" so the
# fix (put the file in the models folder) is clear.
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    node_id: str
    class_type: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class _Unknown:
    """A value known only at request time."""


_UNKNOWN = _Unknown()


def _effective_values(template: Template) -> dict[tuple[str, str], Any]:
    """What a parameter writes into each input it targets, when that is known in advance."""
    values: dict[tuple[str, str], Any] = {}
    for param in template.parameters.values():
        if param.default is not None:
            value: Any = param.default
        elif param.required or param.seed or param.model_folder:
            value = _UNKNOWN
        else:
            continue  # optional with no default: the workflow's own value is sent
        for target in param.parsed_targets:
            values[(target.node, target.input)] = value
    return values


def blocks(template: Template, problems: list[Problem]) -> bool:
    """Whether these problems mean the template fails the check (an optional template that
    only lacks node types or models is unavailable there, not failing)."""
    if not template.optional:
        return bool(problems)
    return any(p.kind == "input" for p in problems)


def _format_widgets(declared: dict[str, Any]) -> set[str]:
    """Inputs a format combo brings with it (VideoHelperSuite: ``{"formats": {fmt: [[name,
    ...], ...]}}`` in the spec's options): set by the frontend, declared nowhere else."""
    names: set[str] = set()
    for spec in declared.values():
        options = spec[1] if isinstance(spec, list) and len(spec) > 1 else None
        formats = options.get("formats") if isinstance(options, dict) else None
        for widgets in formats.values() if isinstance(formats, dict) else ():
            for widget in widgets if isinstance(widgets, list) else ():
                if isinstance(widget, list) and widget and isinstance(widget[0], str):
                    names.add(widget[0])
    return names


def _out_of_bounds(name: str, spec: Any, value: Any) -> str | None:
    """What ComfyUI's validation would say of a number input's value, or None if it passes."""
    if not isinstance(spec, list) or not spec or spec[0] not in ("INT", "FLOAT"):
        return None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    try:
        number = int(value) if spec[0] == "INT" else float(value)
    except (TypeError, ValueError):
        return f"{name} {value!r} is not a number ({spec[0]}): it fails every run"
    minimum, maximum = options.get("min"), options.get("max")
    if isinstance(minimum, int | float) and number < minimum:
        return f"{name} {value!r} is below this backend's minimum {minimum!r}: it fails every run"
    if isinstance(maximum, int | float) and number > maximum:
        return f"{name} {value!r} is above this backend's maximum {maximum!r}: it fails every run"
    return None


def check_template(template: Template, object_info: dict[str, Any]) -> list[Problem]:
    """What would stop ``template`` running on the backend whose ``/object_info`` is given."""
    problems: list[Problem] = []
    values = _effective_values(template)
    model_inputs = {
        (t.node, t.input): param.model_folder
        for param in template.parameters.values()
        if param.model_folder
        for t in param.parsed_targets
    }
    for node_id, node in template.workflow.items():
        class_type = str(node.get("class_type"))
        info = object_info.get(class_type)
        if not isinstance(info, dict):
            problems.append(
                Problem(
                    "node_type",
                    node_id,
                    class_type,
                    f"node type '{class_type}' is not installed on this backend",
                )
            )
            continue
        declared, required = declared_inputs(info)
        inputs: dict[str, Any] = node.get("inputs") or {}
        ignored = FRONTEND_WIDGETS | _format_widgets(declared)
        for name, workflow_value in inputs.items():
            if name not in declared and name in ignored and (node_id, name) not in values:
                continue  # ComfyUI ignores it, and no parameter counts on it
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                problems.append(
                    Problem(
                        "input",
                        node_id,
                        class_type,
                        f"'{name}' is not an input of {class_type} here (it has: {known})",
                    )
                )
                continue
            value = values.get((node_id, name), workflow_value)
            if value is _UNKNOWN or is_link(value):
                continue
            wrong = _out_of_bounds(name, declared[name], value)
            if wrong is not None:
                problems.append(Problem("input", node_id, class_type, wrong))
                continue
            options = combo_options(declared[name])
            if options is None or value in options:
                continue
            is_model = (node_id, name) in model_inputs or (
                isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES)
            )
            problems.append(
                Problem(
                    "model" if is_model else "input",
                    node_id,
                    class_type,
                    f"{name} {value!r} is not among the {len(options)} choices this backend offers",
                )
            )
        for name in sorted(required - set(inputs)):
            problems.append(
                Problem(
                    "input",
                    node_id,
                    class_type,
                    f"required input '{name}' is missing from the workflow (a newer "
                    f"version of {class_type}?)",
                )
            )
    problems.extend(_empty_model_folders(template, object_info))
    return problems


def _empty_model_folders(template: Template, object_info: dict[str, Any]) -> list[Problem]:
    """A parameter that picks from a models folder needs at least one model there. The
    folder's listing is the combo of the input the parameter targets (e.g. the checkpoints
    folder is CheckpointLoaderSimple's ``ckpt_name``)."""
    problems: list[Problem] = []
    for name, param in template.parameters.items():
        if not param.model_folder or param.default is not None:
            continue  # a default is checked as a combo value above
        for target in param.parsed_targets:
            node = template.workflow.get(target.node) or {}
            class_type = str(node.get("class_type"))
            info = object_info.get(class_type)
            if not isinstance(info, dict):
                continue  # already reported as an unknown node type
            options = combo_options(declared_inputs(info)[0].get(target.input))
            if options is not None and not options:
                problems.append(
                    Problem(
                        "model",
                        target.node,
                        class_type,
                        f"no model in folder '{param.model_folder}' on this backend "
                        f"(parameter '{name}', input {target.input})",
                    )
                )
    return problems
