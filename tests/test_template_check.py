"""check_template against recorded /object_info entries, and GET /v1/templates/check."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from comfygate.comfy.local import LocalComfyUI
from comfygate.comfy.object_info import combo_options
from comfygate.templates import Template, TemplateRegistry, bind, resolve_params, validate_params
from comfygate.templates.check import Problem, blocks, check_template
from comfygate.templates.registry import parse_template
from comfygate.testing.fake_comfyui import DEFAULT_CHECKPOINT, FakeComfyUI, _node_definitions
from tests.conftest import MakeApp, body
from tests.corpus import object_info as real_object_info

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
        if not template.optional:
            assert check_template(template, info) == [], template.name


OPTIONAL_BUILTINS = ("flux-dev", "flux-schnell", "sdxl", "sdxl-refiner")


def _with_models(info: dict[str, Any], template: Template) -> dict[str, Any]:
    """``info`` as a backend that holds the model files the template's defaults name."""
    info = copy.deepcopy(info)
    for param in template.parameters.values():
        for target in param.parsed_targets if param.model_folder else []:
            class_type = template.workflow[target.node]["class_type"]
            spec = info[class_type]["input"]["required"][target.input]
            assert combo_options(spec) is not None
            # The choices list itself, in either combo form.
            choices = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
            choices.append(param.default)
    return info


@pytest.mark.parametrize("name", OPTIONAL_BUILTINS)
def test_sdxl_and_flux_builtins_validate_against_the_real_comfyui(name: str) -> None:
    template = TemplateRegistry.load().get(name)
    assert template.optional
    info = real_object_info()
    # The real 0.3.75 as the tests install it has none of their model files: only models
    # are missing, so the template is unavailable there, not failing.
    problems = check_template(template, info)
    assert problems
    assert {p.kind for p in problems} == {"model"}
    assert not blocks(template, problems)
    # With the files in its models folders, nothing is missing.
    assert check_template(template, _with_models(info, template)) == []


@pytest.mark.parametrize("name", OPTIONAL_BUILTINS)
def test_sdxl_and_flux_builtins_bind(name: str) -> None:
    template = TemplateRegistry.load().get(name)
    given = validate_params(template, {"prompt": "a red fox", "width": 768, "steps": 8})
    values = resolve_params(template, given)
    graph = bind(template, values, "job")
    for param_name, param in template.parameters.items():
        for target in param.parsed_targets:
            assert graph[target.node]["inputs"][target.input] == values[param_name]
    assert {t.node for t in template.parameters["width"].parsed_targets} <= graph.keys()
    assert (
        values["seed"]
        == graph[template.parameters["seed"].parsed_targets[0].node]["inputs"][
            template.parameters["seed"].parsed_targets[0].input
        ]
    )


def test_a_value_every_run_fails_on_is_a_problem(object_info: dict[str, Any]) -> None:
    data = _builtin("solid")
    del data["parameters"]["width"]  # the workflow's own value is what ComfyUI gets
    data["workflow"]["1"]["inputs"]["width"] = 0
    problems = check_template(_template(data), object_info)
    assert _kinds(problems) == [("input", "1", "EmptyImage")]
    assert "width 0 is below this backend's minimum 1" in problems[0].detail
    data["workflow"]["1"]["inputs"]["width"] = "wide"
    [problem] = check_template(_template(data), object_info)
    assert "is not a number" in problem.detail


def test_a_default_every_run_fails_on_is_a_problem(object_info: dict[str, Any]) -> None:
    data = _builtin("txt2img")
    data["parameters"]["steps"]["default"] = 1
    data["parameters"]["steps"]["minimum"] = 0
    data["workflow"]["3"]["inputs"]["steps"] = 0  # under a default: not judged
    assert check_template(_template(data), object_info) == []
    data["parameters"]["steps"]["default"] = 0
    [problem] = check_template(_template(data), object_info)
    assert (problem.kind, problem.node_id) == ("input", "3")
    assert "steps 0 is below this backend's minimum 1" in problem.detail


def test_frontend_widgets_comfyui_ignores_are_not_problems(object_info: dict[str, Any]) -> None:
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "x.png", "upload": "image"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    parameters: dict[str, Any] = {
        "image": {"type": "image", "required": True, "targets": ["1.image"]}
    }
    per_request = {"name": "load", "parameters": parameters, "workflow": workflow}
    assert check_template(_template(per_request), object_info) == []
    # A parameter that writes such an input would do nothing: that is a problem.
    parameters["button"] = {
        "type": "string",
        "default": "image",
        "targets": ["1.upload"],
    }
    assert _kinds(check_template(_template(per_request), object_info)) == [
        ("input", "1", "LoadImage")
    ]


def test_format_widgets_of_a_custom_saver_are_not_problems() -> None:
    # VideoHelperSuite declares its format's own widgets inside the format combo's options.
    info = {
        "VHS_VideoCombine": {
            "input": {
                "required": {
                    "images": ["IMAGE"],
                    "frame_rate": ["FLOAT", {"default": 8, "min": 1}],
                    "format": [
                        ["image/gif", "video/h264-mp4"],
                        {"formats": {"video/h264-mp4": [["pix_fmt", ["yuv420p"]], ["crf", "INT"]]}},
                    ],
                }
            }
        },
        "EmptyImage": {"input": {"required": {"width": ["INT", {"min": 1}]}}},
    }
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "format": "video/h264-mp4",
                "pix_fmt": "yuv420p",
                "crf": 19,
                "videopreview": {},
            },
        },
    }
    assert check_template(_template({"name": "v", "workflow": workflow}), info) == []


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
        "flux-dev": False,
        "flux-schnell": False,
        "img2img": True,
        "sdxl": False,
        "sdxl-refiner": False,
        "solid": True,
        "txt2img": True,
    }
    # The SDXL and Flux ones need model files this backend lacks: optional, so unavailable.
    optional = {t["name"] for t in backend["templates"] if t["optional"]}
    assert optional == set(OPTIONAL_BUILTINS)
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


@pytest.mark.comfyui
def test_the_recorded_object_info_is_the_real_comfyuis(real_comfyui: LocalComfyUI) -> None:
    """The fixture the corpus and the SDXL/Flux checks use is what a real 0.3.75 answers
    (less the audio nodes its install cannot load, recorded apart)."""
    live: dict[str, Any] = requests.get(f"{real_comfyui.url}/object_info", timeout=60).json()
    recorded = real_object_info()
    audio = json.loads((SAMPLES.parent / "object_info-comfyui-0.3.75-audio.json").read_text())
    assert set(live) == set(recorded) - set(audio)
    for name in OPTIONAL_BUILTINS:
        template = TemplateRegistry.load().get(name)
        assert {p.kind for p in check_template(template, live)} == {"model"}, name
