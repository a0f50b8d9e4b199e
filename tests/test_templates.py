"""Templates: loading, refusing bad template files, validation, and structural binding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfygate.errors import NotFound, ValidationFailed
from comfygate.templates import (
    TemplateError,
    TemplateRegistry,
    bind,
    resolve_params,
    validate_params,
)
from comfygate.templates.model import SEED_MAX

REGISTRY = TemplateRegistry.load()
TXT2IMG = REGISTRY.get("txt2img")


def test_builtin_templates() -> None:
    names = [t.name for t in REGISTRY.all()]
    assert "txt2img" in names
    assert "solid" in names
    params = TXT2IMG.public()["parameters"]
    for name in (
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "cfg",
        "sampler",
        "scheduler",
        "width",
        "height",
        "batch_size",
        "checkpoint",
    ):
        assert name in params["properties"], name
    assert params["required"] == ["prompt"]
    assert params["additionalProperties"] is False


def test_unknown_template_is_not_found() -> None:
    with pytest.raises(NotFound):
        REGISTRY.get("nope")


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({}, "prompt", "required"),
        ({"prompt": 3}, "prompt", "string"),
        ({"prompt": "x", "steps": 0}, "steps", "greater than or equal"),
        ({"prompt": "x", "steps": "20"}, "steps", "integer"),
        ({"prompt": "x", "steps": 2.5}, "steps", "integer"),
        ({"prompt": "x", "cfg": "7"}, "cfg", "number"),
        ({"prompt": "x", "sampler": "nope"}, "sampler", "euler"),
        ({"prompt": "x", "colour": 1}, "colour", "unknown parameter"),
        ({"prompt": "x", "seed": SEED_MAX + 1}, "seed", "less than or equal"),
        ({"prompt": "x" * 10_001}, "prompt", "at most 10000"),
        ({"prompt": "x", "batch_size": True}, "batch_size", "integer"),
    ],
)
def test_validation_names_the_field(raw: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_params(TXT2IMG, raw)
    assert info.value.details["field"] == field
    assert fragment in info.value.message


def test_defaults_and_random_seed_are_recorded() -> None:
    given_values = validate_params(TXT2IMG, {"prompt": "a cat"})
    values = resolve_params(TXT2IMG, given_values, {"checkpoints": ["b.ckpt", "a.safetensors"]})
    assert values["steps"] == 20
    assert values["checkpoint"] == "a.safetensors"
    assert 0 <= values["seed"] <= SEED_MAX
    again = resolve_params(TXT2IMG, given_values, {"checkpoints": ["a.safetensors"]})
    assert again["seed"] != values["seed"]  # 1 in 2**64 to fail


def test_no_checkpoint_anywhere_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed, match="no backend offers a model") as info:
        resolve_params(TXT2IMG, {"prompt": "x"}, {"checkpoints": []})
    assert info.value.details["field"] == "checkpoint"


def test_bind_writes_values_and_job_prefix_into_a_copy() -> None:
    values = resolve_params(TXT2IMG, {"prompt": "a cat", "seed": 5}, {"checkpoints": ["m.ckpt"]})
    graph = bind(TXT2IMG, values, "comfygate_job1")
    assert graph["6"]["inputs"]["text"] == "a cat"
    assert graph["3"]["inputs"]["seed"] == 5
    assert graph["4"]["inputs"]["ckpt_name"] == "m.ckpt"
    assert graph["9"]["inputs"]["filename_prefix"] == "comfygate_job1"
    assert TXT2IMG.workflow["6"]["inputs"]["text"] == ""  # the template is untouched


def _shape(graph: dict[str, Any]) -> Any:
    return {
        node_id: (
            node["class_type"],
            sorted(node["inputs"]),
            {k: v for k, v in node["inputs"].items() if isinstance(v, list)},
        )
        for node_id, node in graph.items()
    }


@given(
    prompt=st.text(max_size=300) | st.sampled_from(['"}, "9": {"class_type": "X"', "{}", "\n\n"]),
    negative=st.text(max_size=100),
    seed=st.integers(0, SEED_MAX),
)
def test_binding_never_changes_the_graph_shape(prompt: str, negative: str, seed: int) -> None:
    raw = {"prompt": prompt, "negative_prompt": negative, "seed": seed}
    values = resolve_params(TXT2IMG, validate_params(TXT2IMG, raw), {"checkpoints": ["m"]})
    graph = bind(TXT2IMG, values, "p")
    assert _shape(graph) == _shape(TXT2IMG.workflow)
    assert graph["6"]["inputs"]["text"] == prompt
    assert graph["7"]["inputs"]["text"] == negative
    assert json.loads(json.dumps(graph))["6"]["inputs"]["text"] == prompt


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


GOOD = {
    "name": "mine",
    "parameters": {"w": {"type": "integer", "default": 8, "targets": ["1.width"]}},
    "workflow": {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    },
}


def test_user_templates_load_from_templates_dir(tmp_path: Path) -> None:
    _write(tmp_path, "mine", GOOD)
    registry = TemplateRegistry.load(tmp_path)
    assert registry.get("mine").parameters["w"].default == 8
    assert "txt2img" in registry


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda t: t["parameters"]["w"].update(targets=["7.width"]), "node '7'"),
        (lambda t: t["parameters"]["w"].update(targets=["1.depth"]), "input 'depth'"),
        (lambda t: t["parameters"]["w"].update(targets=["width"]), "node_id.input_name"),
        (lambda t: t["parameters"]["w"].update(type="complex"), "parameters.w.type"),
        (lambda t: t["parameters"]["w"].update(default="big"), "default of 'w'"),
        (lambda t: t["workflow"]["1"].pop("class_type"), "API format"),
        (
            lambda t: t["parameters"].update(template={"type": "string", "targets": ["1.width"]}),
            "reserved",
        ),
        (lambda t: t.update(name="other"), "match the file name"),
    ],
)
def test_bad_template_is_refused_naming_file_and_problem(
    tmp_path: Path, mutate: Any, fragment: str
) -> None:
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    path = _write(tmp_path, "mine", data)
    with pytest.raises(TemplateError) as info:
        TemplateRegistry.load(tmp_path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_malformed_json_template_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken", "{not json")
    with pytest.raises(TemplateError, match="not valid JSON") as info:
        TemplateRegistry.load(tmp_path)
    assert str(path) in str(info.value)


def test_template_digest_changes_with_content() -> None:
    from comfygate.templates.registry import parse_template

    a = parse_template(GOOD, "a")
    changed = json.loads(json.dumps(GOOD))
    changed["workflow"]["1"]["inputs"]["height"] = 2
    assert parse_template(changed, "b").digest != a.digest
    assert parse_template(json.loads(json.dumps(GOOD)), "c").digest == a.digest


def test_operator_default_overrides(tmp_path: Path) -> None:
    registry = TemplateRegistry.load(None, {"txt2img": {"steps": 8, "width": 128}})
    template = registry.get("txt2img")
    values = resolve_params(template, {"prompt": "x"}, {"checkpoints": ["m"]})
    assert (values["steps"], values["width"], values["height"]) == (8, 128, 512)
    assert template.digest != TXT2IMG.digest  # cached results of other defaults don't apply


@pytest.mark.parametrize(
    ("defaults", "fragment"),
    [
        ({"nope": {"steps": 1}}, "names no template 'nope'"),
        ({"txt2img": {"stepz": 1}}, "no parameter 'stepz'"),
        ({"txt2img": {"steps": 0}}, "default of 'steps' is invalid"),
    ],
)
def test_bad_default_overrides_are_refused(defaults: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TemplateError, match=fragment):
        TemplateRegistry.load(None, defaults)
