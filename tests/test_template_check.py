"""check_template against recorded /object_info entries, and GET /v1/templates/check."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from comfygate.templates import Template, TemplateRegistry
from comfygate.templates.check import Problem, check_template, combo_options
from comfygate.templates.registry import parse_template
from comfygate.testing.fake_comfyui import DEFAULT_CHECKPOINT, FakeComfyUI, _node_definitions
from tests.conftest import MakeApp, body

SAMPLES = Path(__file__).parent / "fixtures" / "comfyui-samples"


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    recorded = json.loads((SAMPLES / "02-object_info_selected.json").read_text())
    info: dict[str, Any] = recorded["response"]["body_selected"]
    return info


def _builtin(name: str) -> dict[str, Any]:
    data: dict[str, Any] = TemplateRegistry.load().get(name).model_dump(mode="json")
    return data


def _template(data: dict[str, Any]) -> Template:
    return parse_template(data, "test template")


def _kinds(problems: list[Problem]) -> list[tuple[str, str, str]]:
    return [(p.kind, p.node_id, p.class_type) for p in problems]


def test_builtin_templates_pass_on_the_recorded_comfyui(object_info: dict[str, Any]) -> None:
    # img2img's ImageScale, VAEEncode and RepeatLatentBatch are not in the recording: the
    # fake carries their definitions, copied from a real 0.3.75.
    extra = _node_definitions([DEFAULT_CHECKPOINT], [])
    info = {**{k: v for k, v in extra.items() if k not in object_info}, **object_info}
    for template in TemplateRegistry.load().all():
        assert check_template(template, info) == [], template.name


def test_unknown_node_type(object_info: dict[str, Any]) -> None:
    info = {k: v for k, v in object_info.items() if k != "ImageInvert"}
    problems = check_template(_template(_builtin("solid")), info)
    assert _kinds(problems) == [("node_type", "2", "ImageInvert")]
    assert "not installed" in problems[0].detail


def test_input_the_node_does_not_declare(object_info: dict[str, Any]) -> None:
    data = _builtin("txt2img")
    data["workflow"]["5"]["inputs"]["depth"] = 3
    problems = check_template(_template(data), object_info)
    assert _kinds(problems) == [("input", "5", "EmptyLatentImage")]
    assert "'depth'" in problems[0].detail
    assert "batch_size, height, width" in problems[0].detail


def test_required_input_missing_from_the_workflow(object_info: dict[str, Any]) -> None:
    data = _builtin("txt2img")
    del data["workflow"]["3"]["inputs"]["denoise"]
    problems = check_template(_template(data), object_info)
    assert _kinds(problems) == [("input", "3", "KSampler")]
    assert "required input 'denoise'" in problems[0].detail


def test_a_default_model_the_backend_lacks(object_info: dict[str, Any]) -> None:
    data = _builtin("txt2img")
    data["parameters"]["checkpoint"]["default"] = "sdxl.safetensors"
    problems = check_template(_template(data), object_info)
    assert _kinds(problems) == [("model", "4", "CheckpointLoaderSimple")]
    assert "'sdxl.safetensors'" in problems[0].detail


def test_a_fixed_combo_value_the_backend_lacks(object_info: dict[str, Any]) -> None:
    data = _builtin("txt2img")
    del data["parameters"]["sampler"]  # now the workflow's value is what ComfyUI gets
    data["workflow"]["3"]["inputs"]["sampler_name"] = "warp_drive"
    problems = check_template(_template(data), object_info)
    assert _kinds(problems) == [("input", "3", "KSampler")]
    assert "'warp_drive'" in problems[0].detail


def test_the_workflow_value_under_a_defaulted_parameter_is_not_judged(
    object_info: dict[str, Any],
) -> None:
    data = _builtin("txt2img")
    data["workflow"]["3"]["inputs"]["sampler_name"] = "warp_drive"  # "sampler" overrides it
    assert check_template(_template(data), object_info) == []


def test_an_empty_model_folder(object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = []
    problems = check_template(_template(_builtin("txt2img")), info)
    assert _kinds(problems) == [("model", "4", "CheckpointLoaderSimple")]
    assert "no model in folder 'checkpoints'" in problems[0].detail


def test_a_value_given_per_request_is_not_judged_but_a_fixed_one_is(
    object_info: dict[str, Any],
) -> None:
    # The recorded ComfyUI has no input images: LoadImage's list is empty.
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    per_request = {
        "name": "load",
        "parameters": {"image": {"type": "string", "required": True, "targets": ["1.image"]}},
        "workflow": workflow,
    }
    assert check_template(_template(per_request), object_info) == []
    fixed = {"name": "load", "workflow": workflow}
    assert _kinds(check_template(_template(fixed), object_info)) == [("input", "1", "LoadImage")]


def test_newer_combo_format() -> None:
    assert combo_options(["COMBO", {"options": ["a", "b"]}]) == ["a", "b"]
    assert combo_options([["a"], {}]) == ["a"]
    assert combo_options(["INT", {"min": 0}]) is None
    assert combo_options("PROMPT") is None


def test_problems_serialise() -> None:
    problem = Problem("model", "4", "CheckpointLoaderSimple", "no model")
    assert problem.to_dict() == {
        "kind": "model",
        "node_id": "4",
        "class_type": "CheckpointLoaderSimple",
        "detail": "no model",
    }


# --- GET /v1/templates/check -------------------------------------------------------------


def test_check_route_all_ok(client: FlaskClient, fake: FakeComfyUI) -> None:
    resp = client.get("/v1/templates/check")
    assert resp.status_code == 200
    [backend] = body(resp)["backends"]
    assert backend["status"] == "healthy"
    assert backend["checked"] is True
    assert {t["name"]: t["ok"] for t in backend["templates"]} == {
        "img2img": True,
        "solid": True,
        "txt2img": True,
    }
    assert fake.url not in resp.get_data(as_text=True)
    # The route is matched before /v1/templates/<name>, which still works.
    assert body(client.get("/v1/templates/txt2img"))["name"] == "txt2img"


@pytest.fixture
def bare() -> Iterator[FakeComfyUI]:
    """A ComfyUI with no checkpoint; requested before make_app, so it outlives the gateway."""
    with FakeComfyUI(checkpoints=[]) as server:
        yield server


def test_check_route_reports_a_missing_checkpoint(bare: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([bare.url]).test_client()
    [backend] = body(client.get("/v1/templates/check"))["backends"]
    results = {t["name"]: t for t in backend["templates"]}
    assert results["solid"]["ok"] is True
    assert results["txt2img"]["ok"] is False
    [problem] = results["txt2img"]["problems"]
    assert problem["kind"] == "model"
    assert problem["node_id"] == "4"
    assert problem["class_type"] == "CheckpointLoaderSimple"


def test_check_route_with_an_unreachable_backend(make_app: MakeApp) -> None:
    client = make_app(["http://127.0.0.1:9"]).test_client()
    [backend] = body(client.get("/v1/templates/check"))["backends"]
    assert backend["checked"] is False
    assert backend["status"] == "unhealthy"
    assert backend["templates"] == []
    assert "127.0.0.1:9" not in json.dumps(backend.get("error"))
