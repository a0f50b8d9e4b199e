"""What a template is: an API-format ComfyUI workflow plus typed parameter declarations.

A template file is JSON::

    {"name": "txt2img", "description": "...",
     "parameters": {"prompt": {"type": "string", "required": true,
                               "targets": ["6.text"], "max_length": 10000}, ...},
     "workflow": {"3": {"class_type": "KSampler", "inputs": {...}}, ...}}

Each parameter is written to one or more node inputs (``"node_id.input_name"``). The request
model built from the declarations is what validates a request and what OpenAPI shows.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, create_model

SEED_MAX = 0xFFFFFFFFFFFFFFFF  # ComfyUI's KSampler accepts seeds up to 2**64 - 1

# The JSON Schema of an image parameter's value, beside "type": "string".
IMAGE_SCHEMA_EXTRA: dict[str, Any] = {
    "anyOf": [{"format": "data-uri"}, {"format": "uri"}],
    "x-image": True,
    "examples": ["data:image/png;base64,iVBORw0KGgo...", "https://example.com/cat.png"],
}

# Keys of a generate/job body that are not template parameters.
RESERVED_KEYS = frozenset({"template", "timeout_s", "cache", "webhook_url"})


class Target(BaseModel):
    model_config = ConfigDict(frozen=True)
    node: str
    input: str

    @classmethod
    def parse(cls, value: Any) -> Target:
        if isinstance(value, str):
            node, sep, name = value.rpartition(".")
            if not sep or not node or not name:
                raise ValueError(f"target {value!r} must be 'node_id.input_name'")
            return cls(node=node, input=name)
        return cls.model_validate(value)

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # "image": an input image (LoadImage's file), given as a multipart file, a data: URI or
    # an https URL; checked by the gateway, stored under a name it makes, uploaded to the
    # backend before the job runs. The value bound into the graph is that name.
    type: Literal["string", "integer", "number", "boolean", "image"]
    description: str = ""
    required: bool = False
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: list[Any] | None = None
    max_length: int | None = None
    # A seed parameter: drawn at random when omitted, reported in X-Seed.
    seed: bool = False
    # Model folder of ComfyUI (e.g. "checkpoints"): when omitted and no default is set, the
    # first such model the backend offers is used.
    model_folder: str | None = None
    targets: list[Any] = Field(min_length=1)

    @cached_property
    def parsed_targets(self) -> list[Target]:
        return [Target.parse(t) for t in self.targets]

    def annotation(self) -> Any:
        """The Python type with constraints for the request model (strict: no '20' for 20)."""
        base: Any
        match self.type:
            case "string":
                base = Annotated[str, Field(strict=True, max_length=self.max_length)]
            case "integer":
                base = Annotated[StrictInt, Field(ge=self.minimum, le=self.maximum)]
            case "number":
                base = Annotated[
                    float, Field(strict=True, ge=self.minimum, le=self.maximum, allow_inf_nan=False)
                ]
            case "boolean":
                base = StrictBool
            case "image":
                base = Annotated[str, Field(strict=True, json_schema_extra=IMAGE_SCHEMA_EXTRA)]
        if self.enum is not None:
            base = Literal[tuple(self.enum)]
        return base


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    workflow: dict[str, dict[str, Any]]
    # Also keep PreviewImage (temp) files as outputs.
    include_temp_outputs: bool = False
    # Needs model files (or node types) many backends lack, like the built-in SDXL and Flux
    # templates: `templates check` shows it as unavailable there instead of failing.
    optional: bool = False

    @cached_property
    def digest(self) -> str:
        """Content hash: changes whenever the template changes (cache keys use it)."""
        # ``optional`` only changes how a check reports it, not what a job makes.
        dumped = self.model_dump(mode="json", exclude={"optional"})
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @cached_property
    def seed_parameter(self) -> str | None:
        return next((name for name, p in self.parameters.items() if p.seed), None)

    @cached_property
    def request_model(self) -> type[BaseModel]:
        """A pydantic model of this template's parameters (unknown keys refused)."""
        fields: dict[str, Any] = {}
        for name, param in self.parameters.items():
            field_info = Field(
                ... if param.required else None, description=param.description or None
            )
            annotation = param.annotation() if param.required else param.annotation() | None
            fields[name] = (annotation, field_info)
        model_name = "".join(part.capitalize() for part in self.name.replace("-", "_").split("_"))
        return create_model(
            f"{model_name or 'Template'}Params",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )

    def public(self) -> dict[str, Any]:
        """What GET /v1/templates/{name} shows: name, description, parameters as JSON Schema."""
        schema = self.request_model.model_json_schema()
        for name, param in self.parameters.items():
            prop = schema.get("properties", {}).get(name)
            if prop is None:
                continue
            if param.default is not None:
                prop["default"] = param.default
            if param.seed:
                prop["x-seed"] = True
                prop["description"] = (prop.get("description") or "") + " (random when omitted)"
            if param.model_folder:
                prop["x-model-folder"] = param.model_folder
        return {"name": self.name, "description": self.description, "parameters": schema}
