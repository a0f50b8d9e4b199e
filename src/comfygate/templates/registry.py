"""Loading templates: the built-in ones from the package, the user's from TEMPLATES_DIR.

A template that is malformed, or whose parameters point at a node or input the workflow does
not have, is refused at load with a message naming the file and the problem.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from comfygate.errors import NotFound
from comfygate.templates.model import RESERVED_KEYS, Template

log = logging.getLogger(__name__)


class TemplateError(Exception):
    """A template file cannot be used; the message names the file and the problem."""


def parse_template(data: Any, source: str) -> Template:
    if not isinstance(data, dict):
        raise TemplateError(f"{source}: a template is a JSON object")
    try:
        template = Template.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TemplateError(f"{source}: {where}: {err['msg']}") from None
    for node_id, node in template.workflow.items():
        if not isinstance(node.get("class_type"), str) or not isinstance(node.get("inputs"), dict):
            raise TemplateError(
                f"{source}: workflow node {node_id!r} needs 'class_type' and 'inputs' "
                "(is this ComfyUI's API format? use 'Save (API format)')"
            )
    for name, param in template.parameters.items():
        if name in RESERVED_KEYS:
            raise TemplateError(f"{source}: parameter name {name!r} is reserved")
        try:
            targets = param.parsed_targets
        except ValueError as exc:
            raise TemplateError(f"{source}: parameter {name!r}: {exc}") from None
        for target in targets:
            target_node = template.workflow.get(target.node)
            if target_node is None:
                raise TemplateError(
                    f"{source}: parameter {name!r} targets node {target.node!r}, "
                    "which the workflow does not have"
                )
            if target.input not in target_node["inputs"]:
                raise TemplateError(
                    f"{source}: parameter {name!r} targets input {target.input!r} of node "
                    f"{target.node!r} ({target_node['class_type']}), which has no such input"
                )
        if param.type == "image" and (param.default is not None or param.enum is not None):
            # A default or a choice would be a file name on ComfyUI: only images the gateway
            # checked and named are ever bound.
            raise TemplateError(f"{source}: image parameter {name!r} cannot have a default")
        if param.required and param.default is not None:
            raise TemplateError(f"{source}: parameter {name!r} is required and has a default")
        if param.default is not None:
            try:
                TypeAdapter(param.annotation()).validate_python(param.default)
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"]
                raise TemplateError(f"{source}: default of {name!r} is invalid: {msg}") from None
    return template


def with_defaults(template: Template, overrides: dict[str, Any]) -> Template:
    data = template.model_dump(mode="json")
    for param, value in overrides.items():
        if param not in data["parameters"]:
            raise TemplateError(
                f"TEMPLATE_DEFAULTS: template {template.name!r} has no parameter {param!r}"
            )
        data["parameters"][param]["default"] = value
        data["parameters"][param]["required"] = False
    return parse_template(data, f"TEMPLATE_DEFAULTS for {template.name!r}")


def load_file(path: Path) -> Template:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise TemplateError(f"{path}: not valid JSON: {exc}") from None
    template = parse_template(data, str(path))
    if template.name != path.stem:
        raise TemplateError(f"{path}: name {template.name!r} must match the file name")
    return template


class TemplateRegistry:
    """The templates a gateway serves, by name. User templates may override built-in ones."""

    def __init__(self, templates: dict[str, Template]) -> None:
        self._templates = dict(sorted(templates.items()))

    @classmethod
    def load(
        cls,
        templates_dir: Path | None = None,
        defaults: dict[str, dict[str, Any]] | None = None,
    ) -> TemplateRegistry:
        """Built-in templates, then the user's (which may replace them), then the operator's
        default overrides (TEMPLATE_DEFAULTS), each checked like a template file's own."""
        found: dict[str, Template] = {}
        builtin = resources.files("comfygate.templates") / "builtin"
        for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                source = f"built-in template {entry.name}"
                template = parse_template(json.loads(entry.read_text(encoding="utf-8")), source)
                found[template.name] = template
        if templates_dir is not None:
            if not templates_dir.is_dir():
                raise TemplateError(f"TEMPLATES_DIR {templates_dir} is not a directory")
            for path in sorted(templates_dir.glob("*.json")):
                template = load_file(path)
                if template.name in found:
                    log.info("template %s overrides the built-in one", template.name)
                found[template.name] = template
        for name, overrides in (defaults or {}).items():
            if name not in found:
                raise TemplateError(f"TEMPLATE_DEFAULTS names no template {name!r}")
            found[name] = with_defaults(found[name], overrides)
        return cls(found)

    def get(self, name: str) -> Template:
        try:
            return self._templates[name]
        except KeyError:
            raise NotFound(f"no template named '{name}'", {"template": name}) from None

    def all(self) -> list[Template]:
        return list(self._templates.values())

    def __contains__(self, name: object) -> bool:
        return name in self._templates
