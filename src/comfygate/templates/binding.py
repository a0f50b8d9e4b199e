"""Binding: typed values written into a deep copy of a template's workflow (pure functions).

Values are set in the graph structure, never substituted into JSON text, so a prompt full of
quotes, braces or JSON cannot change the graph's shape.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from pydantic import ValidationError

from comfygate.errors import ValidationFailed
from comfygate.templates.model import SEED_MAX, Template

# Node types whose files are the job's results; each gets a filename_prefix unique to the job.
OUTPUT_PREFIX_INPUT = "filename_prefix"


def validate_params(template: Template, raw: dict[str, Any]) -> dict[str, Any]:
    """Check request values against the template's schema; raise ValidationFailed naming the
    field. Returns only the values given (None for omitted optional ones is dropped)."""
    try:
        model = template.request_model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(template.parameters)) or "none"
            raise ValidationFailed(
                f"unknown parameter '{field}' for template '{template.name}' (known: {known})",
                field=field,
            ) from None
        if err["type"] == "missing":
            raise ValidationFailed(f"'{field}' is required", field=field) from None
        raise ValidationFailed(
            f"'{field}': {err['msg']}", {"errors": len(exc.errors())}, field=field
        ) from None
    return {k: v for k, v in model.model_dump().items() if v is not None}


def resolve_params(
    template: Template, given: dict[str, Any], model_choices: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Fill in defaults, draw a random seed, pick a default model: the values actually used,
    recorded on the job so it can be replayed exactly."""
    values: dict[str, Any] = {}
    for name, param in template.parameters.items():
        if name in given:
            values[name] = given[name]
        elif param.default is not None:
            values[name] = param.default
        elif param.seed:
            values[name] = (
                secrets.randbelow(SEED_MAX + 1)
                if param.maximum is None
                else (secrets.randbelow(int(param.maximum) + 1))
            )
        elif param.model_folder:
            choices = (model_choices or {}).get(param.model_folder) or []
            if not choices:
                raise ValidationFailed(
                    f"'{name}' was not given and no backend offers a model in "
                    f"'{param.model_folder}': add one to the models directory or name one",
                    field=name,
                )
            values[name] = sorted(choices)[0]
    return values


def bind(template: Template, values: dict[str, Any], output_prefix: str) -> dict[str, Any]:
    """A deep copy of the workflow with each value written into its node input(s) and every
    output node's filename_prefix replaced by ``output_prefix``."""
    graph = copy.deepcopy(template.workflow)
    for name, value in values.items():
        for target in template.parameters[name].parsed_targets:
            graph[target.node]["inputs"][target.input] = value
    return apply_output_prefix(graph, output_prefix)


def apply_output_prefix(graph: dict[str, Any], output_prefix: str) -> dict[str, Any]:
    """Replace every node's ``filename_prefix`` with ``output_prefix`` (in place): a job's
    files are its own, and no prefix can reach outside ComfyUI's output folder."""
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and OUTPUT_PREFIX_INPUT in inputs:
            inputs[OUTPUT_PREFIX_INPUT] = output_prefix
    return graph
