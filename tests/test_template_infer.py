"""Template authoring: templates inferred from workflows exported from ComfyUI (API and UI
format), checked against the recorded SD 1.5 graph and the recorded object_info; imported
templates run on a gateway over the fake ComfyUI."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from comfygate.templates import TemplateError, TemplateRegistry, bind, resolve_params
from comfygate.templates.infer import (
    EXPORT_HINT,
    ImportResult,
    TemplateImportError,
    import_workflow,
)
from comfygate.templates.model import SEED_MAX, Template
from comfygate.templates.registry import parse_template
from comfygate.testing.fake_comfyui import DEFAULT_CHECKPOINT, FakeComfyUI
from tests.conftest import MakeApp, body
from tests.test_image_params import data_uri, gateway_name, png

SAMPLES = Path(__file__).parent / "fixtures" / "comfyui-samples"
SD15: dict[str, Any] = json.loads((SAMPLES / "54-prompt_post_sd15_cold.json").read_text())[
    "request"
]["json"]["prompt"]
OBJECT_INFO: dict[str, Any] = json.loads((SAMPLES / "02-object_info_selected.json").read_text())[
    "response"
]["body_selected"]
SAMPLERS: list[str] = OBJECT_INFO["KSampler"]["input"]["required"]["sampler_name"][0]
SCHEDULERS: list[str] = OBJECT_INFO["KSampler"]["input"]["required"]["scheduler"][0]

EXPECTED_TARGETS = {
    "prompt": ["6.text"],
    "negative_prompt": ["7.text"],
    "seed": ["3.seed"],
    "steps": ["3.steps"],
    "cfg": ["3.cfg"],
    "sampler": ["3.sampler_name"],
    "scheduler": ["3.scheduler"],
    "denoise": ["3.denoise"],
    "width": ["5.width"],
    "height": ["5.height"],
    "batch_size": ["5.batch_size"],
    "checkpoint": ["4.ckpt_name"],
}


def _template(result: ImportResult) -> Template:
    return parse_template(result.template, "test")


def _params(result: ImportResult) -> dict[str, Any]:
    params: dict[str, Any] = result.template["parameters"]
    return params


# --- API format ------------------------------------------------------------------------------


def test_api_export_gives_the_txt2img_parameters() -> None:
    result = import_workflow(SD15, "sd15")
    template = _template(result)
    assert template.name == "sd15"
    assert {n: [str(t) for t in p.parsed_targets] for n, p in template.parameters.items()} == (
        EXPECTED_TARGETS
    )
    assert template.workflow == SD15
    assert result.notes == []
    params = template.parameters
    assert params["prompt"].required
    assert params["prompt"].default is None
    assert params["prompt"].type == "string"
    assert params["negative_prompt"].default == "blurry"
    assert params["seed"].seed
    assert params["seed"].default is None
    assert (params["seed"].minimum, params["seed"].maximum) == (0, SEED_MAX)
    assert (params["steps"].type, params["steps"].default) == ("integer", 4)
    assert (params["cfg"].type, params["cfg"].default) == ("number", 7.0)
    assert (params["denoise"].minimum, params["denoise"].maximum) == (0.0, 1.0)
    assert params["sampler"].default == "euler"
    assert "dpmpp_2m" in (params["sampler"].enum or [])
    assert params["scheduler"].default == "normal"
    assert "karras" in (params["scheduler"].enum or [])
    assert (params["width"].default, params["height"].default) == (64, 64)
    assert params["batch_size"].default == 1
    assert params["checkpoint"].model_folder == "checkpoints"
    assert params["checkpoint"].default == "random-sd15-fp16.safetensors"
    assert template.request_model.model_validate({"prompt": "x", "steps": 30})


def test_built_in_bounds_hold_the_workflow_values() -> None:
    graph = copy.deepcopy(SD15)
    graph["5"]["inputs"].update(width=4096, batch_size=16)
    graph["3"]["inputs"]["sampler_name"] = "brand_new_sampler"
    params = _params(import_workflow(graph, "big"))
    assert (params["width"]["maximum"], params["width"]["default"]) == (4096, 4096)
    assert params["batch_size"]["maximum"] == 16
    assert "brand_new_sampler" in params["sampler"]["enum"]
    assert params["sampler"]["default"] == "brand_new_sampler"


def test_object_info_gives_types_bounds_and_choices() -> None:
    result = import_workflow(SD15, "sd15", OBJECT_INFO)
    _template(result)
    params = _params(result)
    assert {n: p["targets"] for n, p in params.items()} == EXPECTED_TARGETS
    assert (params["steps"]["minimum"], params["steps"]["maximum"]) == (1, 10000)
    assert (params["cfg"]["minimum"], params["cfg"]["maximum"]) == (0.0, 100.0)
    assert (params["width"]["minimum"], params["width"]["maximum"]) == (16, 16384)
    assert params["batch_size"]["maximum"] == 4096
    assert params["seed"]["maximum"] == SEED_MAX
    assert "default" not in params["seed"]
    assert params["sampler"]["enum"] == SAMPLERS
    assert params["scheduler"]["enum"] == SCHEDULERS
    # a model list would go stale: the checkpoint stays a free name with its folder
    assert "enum" not in params["checkpoint"]
    assert params["checkpoint"]["model_folder"] == "checkpoints"
    assert result.notes == []


def test_object_info_in_the_newer_combo_form() -> None:
    info = copy.deepcopy(OBJECT_INFO)
    required = info["KSampler"]["input"]["required"]
    required["scheduler"] = ["COMBO", {"options": ["normal", "karras"], "default": "normal"}]
    params = _params(import_workflow(SD15, "sd15", info))
    assert params["scheduler"]["enum"] == ["normal", "karras"]
    assert params["scheduler"]["default"] == "normal"


def test_values_this_comfyui_refuses_get_no_default_and_a_note() -> None:
    graph = copy.deepcopy(SD15)
    graph["3"]["inputs"]["sampler_name"] = "gone"
    graph["4"]["inputs"]["ckpt_name"] = "elsewhere.safetensors"
    result = import_workflow(graph, "sd15", OBJECT_INFO)
    _template(result)
    assert "default" not in _params(result)["sampler"]
    assert any("'gone'" in note for note in result.notes)
    assert any("'elsewhere.safetensors' is not on this ComfyUI" in note for note in result.notes)


def test_prompt_body_is_accepted_with_a_note() -> None:
    result = import_workflow({"prompt": SD15, "client_id": "abc"}, "sd15")
    assert result.template["workflow"] == SD15
    assert any("POST /prompt" in note for note in result.notes)


def test_registry_loads_the_imported_template(tmp_path: Path) -> None:
    (tmp_path / "sd15.json").write_text(json.dumps(import_workflow(SD15, "sd15").template))
    assert TemplateRegistry.load(tmp_path).get("sd15").parameters["prompt"].required


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    assert before.keys() == after.keys()
    changed = set()
    for node_id, node in before.items():
        assert node["class_type"] == after[node_id]["class_type"]
        assert node["inputs"].keys() == after[node_id]["inputs"].keys()
        for name, value in node["inputs"].items():
            if after[node_id]["inputs"][name] != value and name != "filename_prefix":
                changed.add(f"{node_id}.{name}")
    return changed


def test_binding_changes_only_the_targeted_inputs() -> None:
    template = _template(import_workflow(SD15, "sd15", OBJECT_INFO))
    values = resolve_params(template, {"prompt": "a dog", "seed": 1})
    assert _changed(SD15, bind(template, values, "p")) == {"6.text"}
    everything = {
        "prompt": "a dog",
        "negative_prompt": "ugly",
        "seed": 2,
        "steps": 5,
        "cfg": 6.5,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 0.5,
        "width": 128,
        "height": 96,
        "batch_size": 2,
        "checkpoint": "other.safetensors",
    }
    graph = bind(template, resolve_params(template, everything), "p")
    assert _changed(SD15, graph) == {t for targets in EXPECTED_TARGETS.values() for t in targets}


@settings(max_examples=50, deadline=None)
@given(prompt=st.text(max_size=300), negative=st.text(max_size=100))
def test_prompt_texts_survive_the_round_trip(prompt: str, negative: str) -> None:
    graph = copy.deepcopy(SD15)
    graph["7"]["inputs"]["text"] = negative
    template = _template(import_workflow(graph, "rt"))
    assert template.parameters["negative_prompt"].default == negative
    values = resolve_params(template, {"prompt": prompt, "seed": 1})
    bound = json.loads(json.dumps(bind(template, values, "p")))
    assert bound["6"]["inputs"]["text"] == prompt
    assert bound["7"]["inputs"]["text"] == negative
    assert _changed(graph, bound) <= {"6.text"}


LOADIMAGE: dict[str, Any] = json.loads(
    (SAMPLES / "43-prompt_post_loadimage_uploaded.json").read_text()
)["request"]["json"]["prompt"]


def _builtin(name: str) -> Template:
    return TemplateRegistry.load().get(name)


@pytest.mark.parametrize("object_info", [None, OBJECT_INFO], ids=["alone", "object_info"])
def test_loadimage_workflow_gives_a_required_image_parameter(
    object_info: dict[str, Any] | None,
) -> None:
    result = import_workflow(LOADIMAGE, "invert", object_info)
    template = _template(result)
    assert list(template.parameters) == ["image"]
    image = template.parameters["image"]
    assert (image.type, image.required, [str(t) for t in image.parsed_targets]) == (
        "image",
        True,
        ["1.image"],
    )
    # The workflow's file name is no default: the gateway binds the image it checked.
    assert (image.default, image.enum, image.max_length) == (None, None, None)
    assert "data: URI" in image.description
    # What GET /v1/templates/invert shows: an image field (the playground's file picker).
    schema = template.public()["parameters"]
    assert schema["required"] == ["image"]
    assert schema["properties"]["image"]["x-image"] is True
    assert any("KSampler" in note for note in result.notes)


def test_imported_img2img_declares_its_image_like_the_built_in() -> None:
    builtin = _builtin("img2img")
    imported = _template(import_workflow(dict(builtin.workflow), "mine", OBJECT_INFO))
    ignore = {"description"}
    assert imported.parameters["image"].model_dump(exclude=ignore) == builtin.parameters[
        "image"
    ].model_dump(exclude=ignore)


def test_repeated_node_types_get_numbered_names() -> None:
    graph = copy.deepcopy(LOADIMAGE)
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "b.png"}}
    graph["4"] = {"class_type": "LoadImage", "inputs": {"image": "a.png"}}
    params = _params(import_workflow(graph, "three"))
    assert {n: p["targets"] for n, p in params.items()} == {
        "image": ["1.image"],
        "image_2": ["4.image"],
        "image_3": ["10.image"],
    }
    assert {n: (p["type"], p["required"]) for n, p in params.items()} == dict.fromkeys(
        params, ("image", True)
    )


def test_linked_loadimage_file_is_no_parameter() -> None:
    graph = copy.deepcopy(LOADIMAGE)
    graph["1"]["inputs"]["image"] = ["40", 0]
    graph["40"] = {"class_type": "PrimitiveString", "inputs": {"value": "a.png"}}
    result = import_workflow(graph, "linked")
    assert "image" not in _params(result)
    assert any("'image' comes from another node" in note for note in result.notes)


# --- imported templates run on a gateway -----------------------------------------------------


def _serving(make_app: MakeApp, fake: FakeComfyUI, tmp_path: Path, **imported: Any) -> FlaskClient:
    """A gateway on ``fake`` whose TEMPLATES_DIR holds the templates imported from the given
    workflows (name=workflow), as written by ``comfygate templates import``."""
    folder = tmp_path / "templates"
    folder.mkdir()
    object_info = requests.get(f"{fake.url}/object_info", timeout=10).json()
    for name, workflow in imported.items():
        template = import_workflow(workflow, name, object_info).template
        (folder / f"{name}.json").write_text(json.dumps(template, indent=2))
    client: FlaskClient = make_app([fake.url], templates_dir=str(folder)).test_client()
    return client


def test_imported_loadimage_template_runs_with_an_uploaded_image(
    tmp_path: Path, fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = _serving(make_app, fake, tmp_path, invert=LOADIMAGE)
    image = png((24, 16), (10, 200, 30))
    resp = client.post(
        "/v1/templates/invert/generate",
        data={"image": (io.BytesIO(image), "start.png")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type == "image/png"
    with Image.open(io.BytesIO(resp.data)) as out:
        assert out.size == (24, 16)
        assert out.convert("RGB").getpixel((0, 0)) == (245, 55, 225)  # the upload, inverted
    name = gateway_name(image)
    assert fake.file(name, "", "input") == image
    graph = fake.submissions[-1]["prompt"]
    assert graph["1"]["inputs"]["image"] == name

    # The same template with a data: URI in JSON; and an image is required.
    other = png((8, 8), (0, 0, 255))
    resp = client.post(
        "/v1/generate",
        json={"template": "invert", "image": data_uri(other)},
        headers={"Accept": "application/json"},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert body(resp)["params"]["image"] == gateway_name(other)
    assert fake.file(gateway_name(other), "", "input") == other
    resp = client.post("/v1/generate", json={"template": "invert"})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "image"


def test_imported_img2img_runs_with_an_uploaded_image(
    tmp_path: Path, fake: FakeComfyUI, make_app: MakeApp
) -> None:
    workflow = copy.deepcopy(dict(_builtin("img2img").workflow))
    workflow["4"]["inputs"]["ckpt_name"] = DEFAULT_CHECKPOINT  # exported from this ComfyUI
    client = _serving(make_app, fake, tmp_path, mine=workflow)
    image = png((80, 60))
    resp = client.post(
        "/v1/templates/mine/generate",
        data={
            "params": json.dumps({"prompt": "a cat", "steps": 1, "seed": 3, "denoise": 0.5}),
            "image": (io.BytesIO(image), "start.png"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type == "image/png"
    with Image.open(io.BytesIO(resp.data)) as out:
        assert out.size == (512, 512)  # the workflow's ImageScale
    name = gateway_name(image)
    assert fake.file(name, "", "input") == image
    graph = fake.submissions[-1]["prompt"]
    assert graph["1"]["inputs"]["image"] == name
    assert graph["3"]["inputs"]["denoise"] == 0.5
    # templates check (what `comfygate templates check` prints) finds nothing missing.
    [backend] = body(client.get("/v1/templates/check"))["backends"]
    [mine] = [t for t in backend["templates"] if t["name"] == "mine"]
    assert mine == {"name": "mine", "ok": True, "optional": False, "problems": []}


def _advanced(seed: int) -> dict[str, Any]:
    return {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "enable",
            "noise_seed": seed,
            "steps": 30,
            "cfg": 5.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "start_at_step": 0,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    }


def test_two_samplers_with_the_same_values_share_the_parameters() -> None:
    graph = {k: v for k, v in copy.deepcopy(SD15).items() if k != "3"}
    graph["10"] = _advanced(10)
    graph["9"]["inputs"]["images"] = ["8", 0]
    graph["8"]["inputs"]["samples"] = ["10", 0]
    graph["30"] = _advanced(30)
    graph["30"]["inputs"]["cfg"] = 4.0
    result = import_workflow(graph, "adv")
    params = _params(result)
    # One seed for the job: every sampler that adds noise takes it.
    assert params["seed"]["targets"] == ["10.noise_seed", "30.noise_seed"]
    assert params["seed"]["seed"] is True
    assert (params["steps"]["default"], params["cfg"]["default"]) == (30, 5.5)
    assert params["steps"]["targets"] == ["10.steps", "30.steps"]
    assert params["sampler"]["targets"] == ["10.sampler_name", "30.sampler_name"]
    # A value the samplers do not share is a parameter of its own.
    assert (params["cfg"]["targets"], params["cfg_2"]["targets"]) == (["10.cfg"], ["30.cfg"])
    assert params["scheduler"]["default"] == "karras"
    assert "denoise" not in params
    assert any("2 sampler passes (10 (KSamplerAdvanced), 30" in note for note in result.notes)


def test_prompts_are_followed_through_conditioning_nodes() -> None:
    graph = copy.deepcopy(SD15)
    graph["3"]["inputs"].update(positive=["20", 0], negative=["20", 1])
    graph["20"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["21", 0],
            "negative": ["7", 0],
            "control_net": ["31", 0],
            "image": ["30", 0],
            "strength": 1.0,
            "start_percent": 0.0,
            "end_percent": 1.0,
        },
    }
    graph["21"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["22", 0]},
    }
    graph["22"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "style", "clip": ["4", 1]}}
    graph["30"] = {"class_type": "LoadImage", "inputs": {"image": "pose.png"}}
    graph["31"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "c.pth"}}
    result = import_workflow(graph, "cn")
    params = _params(result)
    assert params["prompt"]["targets"] == ["6.text"]
    assert params["negative_prompt"]["targets"] == ["7.text"]
    assert params["image"]["targets"] == ["30.image"]
    assert any("node(s) 22 keep their text" in note for note in result.notes)


def test_sdxl_encoder_and_zeroed_negative() -> None:
    graph = copy.deepcopy(SD15)
    graph["6"] = {
        "class_type": "CLIPTextEncodeSDXL",
        "inputs": {
            "clip": ["4", 1],
            "width": 1024,
            "height": 1024,
            "crop_w": 0,
            "crop_h": 0,
            "target_width": 1024,
            "target_height": 1024,
            "text_g": "a cat",
            "text_l": "a cat",
        },
    }
    graph["7"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    result = import_workflow(graph, "sdxl")
    params = _params(result)
    assert params["prompt"]["targets"] == ["6.text_g", "6.text_l"]
    assert "negative_prompt" not in params
    assert any("'negative'" in note for note in result.notes)


def test_sd3_latent_and_the_sampler_fed_latent_first() -> None:
    graph = copy.deepcopy(SD15)
    graph["2"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    }
    graph["5"]["class_type"] = "EmptySD3LatentImage"
    params = _params(import_workflow(graph, "sd3"))
    assert params["width"]["targets"] == ["5.width"]
    assert params["width_2"]["targets"] == ["2.width"]
    assert params["batch_size_2"]["targets"] == ["2.batch_size"]


def test_linked_sampler_inputs_are_not_parameters() -> None:
    graph = copy.deepcopy(SD15)
    graph["3"]["inputs"]["seed"] = ["40", 0]
    graph["40"] = {"class_type": "SeedFromTheMoon", "inputs": {"phase": 3}}
    result = import_workflow(graph, "linked")
    assert "seed" not in _params(result)
    assert any("'seed' comes from another node" in note for note in result.notes)


def test_a_primitive_node_feeding_two_inputs_is_one_parameter() -> None:
    # API format: ComfyUI 0.3.75's PrimitiveInt holds the width of the latent and of
    # ModelSamplingFlux (Flux workflows tie them).
    graph = copy.deepcopy(SD15)
    graph["5"]["inputs"]["width"] = ["40", 0]
    graph["41"] = {
        "class_type": "ModelSamplingFlux",
        "inputs": {
            "model": ["4", 0],
            "max_shift": 1.15,
            "base_shift": 0.5,
            "height": 64,
            "width": ["40", 0],
        },
    }
    graph["3"]["inputs"]["model"] = ["41", 0]
    graph["40"] = {"class_type": "PrimitiveInt", "inputs": {"value": 96}}
    params = _params(import_workflow(graph, "tied", OBJECT_INFO))
    assert params["width"]["targets"] == ["40.value"]
    assert params["width"]["default"] == 96
    assert params["height"]["targets"] == ["5.height", "41.height"]  # the same value: tied


# --- UI format -------------------------------------------------------------------------------


def _ui(
    *,
    seed: int = 1,
    steps: int = 4,
    cfg: float = 7,
    sampler: str = "euler",
    text: str = "a photo of a cat",
) -> dict[str, Any]:
    """The SD 1.5 graph of SD15 as ComfyUI's 'Save' writes it (its default workflow)."""
    return {
        "last_node_id": 9,
        "last_link_id": 9,
        "nodes": [
            {
                "id": 7,
                "type": "CLIPTextEncode",
                "pos": [413, 389],
                "size": [425.3, 180.6],
                "flags": {},
                "order": 3,
                "mode": 0,
                "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
                "outputs": [
                    {"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}
                ],
                "properties": {"Node name for S&R": "CLIPTextEncode"},
                "widgets_values": ["blurry"],
            },
            {
                "id": 6,
                "type": "CLIPTextEncode",
                "pos": [415, 186],
                "size": [422.8, 164.3],
                "flags": {},
                "order": 2,
                "mode": 0,
                "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
                "outputs": [
                    {"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}
                ],
                "properties": {"Node name for S&R": "CLIPTextEncode"},
                "widgets_values": [text],
            },
            {
                "id": 5,
                "type": "EmptyLatentImage",
                "pos": [473, 609],
                "size": [315, 106],
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": [],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
                "properties": {"Node name for S&R": "EmptyLatentImage"},
                "widgets_values": [64, 64, 1],
            },
            {
                "id": 3,
                "type": "KSampler",
                "pos": [863, 186],
                "size": [315, 262],
                "flags": {},
                "order": 4,
                "mode": 0,
                "inputs": [
                    {"name": "model", "type": "MODEL", "link": 1},
                    {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6},
                    {"name": "latent_image", "type": "LATENT", "link": 2},
                ],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
                "properties": {"Node name for S&R": "KSampler"},
                "widgets_values": [seed, "fixed", steps, cfg, sampler, "normal", 1],
            },
            {
                "id": 8,
                "type": "VAEDecode",
                "pos": [1209, 188],
                "size": [210, 46],
                "flags": {},
                "order": 5,
                "mode": 0,
                "inputs": [
                    {"name": "samples", "type": "LATENT", "link": 7},
                    {"name": "vae", "type": "VAE", "link": 8},
                ],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}],
                "properties": {"Node name for S&R": "VAEDecode"},
                "widgets_values": [],
            },
            {
                "id": 9,
                "type": "SaveImage",
                "pos": [1451, 189],
                "size": [210, 58],
                "flags": {},
                "order": 6,
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 9}],
                "outputs": [],
                "properties": {},
                "widgets_values": ["sd15_random"],
            },
            {
                "id": 4,
                "type": "CheckpointLoaderSimple",
                "pos": [26, 474],
                "size": [315, 98],
                "flags": {},
                "order": 1,
                "mode": 0,
                "inputs": [],
                "outputs": [
                    {"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0},
                    {"name": "CLIP", "type": "CLIP", "links": [3, 5], "slot_index": 1},
                    {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2},
                ],
                "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
                "widgets_values": ["random-sd15-fp16.safetensors"],
            },
        ],
        "links": [
            [1, 4, 0, 3, 0, "MODEL"],
            [2, 5, 0, 3, 3, "LATENT"],
            [3, 4, 1, 6, 0, "CLIP"],
            [4, 6, 0, 3, 1, "CONDITIONING"],
            [5, 4, 1, 7, 0, "CLIP"],
            [6, 7, 0, 3, 2, "CONDITIONING"],
            [7, 3, 0, 8, 0, "LATENT"],
            [8, 4, 2, 8, 1, "VAE"],
            [9, 8, 0, 9, 0, "IMAGE"],
        ],
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }


def _node(ui: dict[str, Any], node_id: int) -> dict[str, Any]:
    node: dict[str, Any] = next(n for n in ui["nodes"] if n["id"] == node_id)
    return node


def test_ui_format_converts_to_the_api_export() -> None:
    result = import_workflow(_ui(), "sd15", OBJECT_INFO)
    assert result.template["workflow"] == SD15
    assert (
        result.template["parameters"]
        == import_workflow(SD15, "sd15", OBJECT_INFO).template["parameters"]
    )
    assert result.notes == []


def test_ui_format_with_link_objects() -> None:
    ui = _ui()
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    ui["links"] = [dict(zip(keys, link, strict=True)) for link in ui["links"]]
    assert import_workflow(ui, "sd15", OBJECT_INFO).template["workflow"] == SD15


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, SEED_MAX),
    steps=st.integers(1, 10000),
    cfg=st.floats(0, 100, allow_nan=False),
    sampler=st.sampled_from(SAMPLERS),
    text=st.text(max_size=200),
)
def test_ui_widget_values_land_on_their_inputs(
    seed: int, steps: int, cfg: float, sampler: str, text: str
) -> None:
    expected = copy.deepcopy(SD15)
    expected["3"]["inputs"].update(seed=seed, steps=steps, cfg=cfg, sampler_name=sampler)
    expected["6"]["inputs"]["text"] = text
    ui = _ui(seed=seed, steps=steps, cfg=cfg, sampler=sampler, text=text)
    assert import_workflow(ui, "sd15", OBJECT_INFO).template["workflow"] == expected


def test_ui_frontend_only_nodes_muted_and_bypassed() -> None:
    ui = _ui(seed=999)
    nodes, links = ui["nodes"], ui["links"]
    # A Reroute between the checkpoint's CLIP and both text encoders.
    nodes.append(
        {
            "id": 10,
            "type": "Reroute",
            "mode": 0,
            "inputs": [{"name": "", "type": "*", "link": 10}],
            "outputs": [{"name": "", "type": "CLIP", "links": [3, 5]}],
            "properties": {"showOutputText": False, "horizontal": False},
        }
    )
    links[2], links[4] = [3, 10, 0, 6, 0, "CLIP"], [5, 10, 0, 7, 0, "CLIP"]
    links.append([10, 4, 1, 10, 0, "CLIP"])
    # The seed widget turned into an input fed by a PrimitiveNode: its value wins.
    _node(ui, 3)["inputs"].append(
        {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 11}
    )
    nodes.append(
        {
            "id": 11,
            "type": "PrimitiveNode",
            "mode": 0,
            "outputs": [{"name": "INT", "type": "INT", "links": [11], "widget": {"name": "seed"}}],
            "properties": {"Run widget replace on values": False},
            "widgets_values": [1, "fixed"],
        }
    )
    links.append([11, 11, 0, 3, 4, "INT"])
    # A note, a muted preview and a bypassed invert between the decoder and the saver.
    nodes.append({"id": 12, "type": "Note", "mode": 0, "widgets_values": ["remember"]})
    nodes.append(
        {
            "id": 13,
            "type": "PreviewImage",
            "mode": 2,
            "inputs": [{"name": "images", "type": "IMAGE", "link": 13}],
            "widgets_values": [],
        }
    )
    links.append([13, 8, 0, 13, 0, "IMAGE"])
    nodes.append(
        {
            "id": 14,
            "type": "ImageInvert",
            "mode": 4,
            "inputs": [{"name": "image", "type": "IMAGE", "link": 14}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9]}],
            "widgets_values": [],
        }
    )
    links[8] = [9, 14, 0, 9, 0, "IMAGE"]
    links.append([14, 8, 0, 14, 0, "IMAGE"])
    result = import_workflow(ui, "sd15", OBJECT_INFO)
    assert result.template["workflow"] == SD15
    assert result.notes == []


def test_ui_missing_widget_values_take_comfyui_defaults_with_a_note() -> None:
    ui = _ui()
    _node(ui, 5)["widgets_values"] = [64, 64]
    result = import_workflow(ui, "sd15", OBJECT_INFO)
    assert result.template["workflow"]["5"]["inputs"]["batch_size"] == 1
    assert any("'batch_size'" in note for note in result.notes)


def test_ui_unknown_node_connected_to_nothing_is_left_out() -> None:
    ui = _ui()
    ui["nodes"].append({"id": 20, "type": "Label (rgthree)", "mode": 0, "widgets_values": []})
    result = import_workflow(ui, "sd15", OBJECT_INFO)
    assert result.template["workflow"] == SD15
    assert any("node 20 (Label (rgthree))" in note for note in result.notes)


def test_ui_loadimage_upload_value_is_ignored() -> None:
    ui = {
        "last_node_id": 3,
        "last_link_id": 2,
        "nodes": [
            {
                "id": 1,
                "type": "LoadImage",
                "mode": 0,
                "inputs": [],
                "outputs": [
                    {"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0},
                    {"name": "MASK", "type": "MASK", "links": None},
                ],
                "widgets_values": ["gw/gw_upload.png", "image"],
            },
            {
                "id": 2,
                "type": "ImageInvert",
                "mode": 0,
                "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2], "slot_index": 0}],
                "widgets_values": [],
            },
            {
                "id": 3,
                "type": "SaveImage",
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
                "widgets_values": ["gw_from_upload"],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
        "version": 0.4,
    }
    result = import_workflow(ui, "invert", OBJECT_INFO)
    assert result.template["workflow"] == LOADIMAGE
    assert result.template["parameters"]["image"]["targets"] == ["1.image"]


def test_api_format_node_types_unknown_to_the_comfyui_are_noted() -> None:
    graph = copy.deepcopy(SD15)
    graph["9"]["class_type"] = "SaveImageExtended"
    result = import_workflow(graph, "sd15", OBJECT_INFO)
    assert "node types this ComfyUI does not know: SaveImageExtended" in result.notes


def test_ui_format_without_object_info_is_refused_with_the_export_hint() -> None:
    with pytest.raises(TemplateImportError) as info:
        import_workflow(_ui(), "sd15")
    message = str(info.value)
    assert "UI format" in message
    assert "Export (API)" in message
    assert "Save (API Format)" in message
    assert EXPORT_HINT in message
    assert isinstance(info.value, TemplateError)


def _unknown_connected() -> dict[str, Any]:
    ui = _ui()
    _node(ui, 9)["type"] = "SaveImageExtended"
    return ui


def _group_node() -> dict[str, Any]:
    ui = _ui()
    _node(ui, 8)["type"] = "workflow>Decode and save"
    return ui


def _misaligned() -> dict[str, Any]:
    ui = _ui()
    _node(ui, 3)["widgets_values"] = ["euler", "normal", 1, 4, 7]
    return ui


def _bad_link() -> dict[str, Any]:
    ui = _ui()
    ui["links"][0] = "1-4-0"
    return ui


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_unknown_connected, "types this ComfyUI does not know (custom nodes that are not "),
        (_group_node, "(group node 'Decode and save') has no definition under 'extra.groupNodes'"),
        (_misaligned, "widget values do not match this ComfyUI's KSampler"),
        (_bad_link, "link '1-4-0'"),
    ],
)
def test_ui_format_refusals(make: Any, fragment: str) -> None:
    with pytest.raises(TemplateImportError) as info:
        import_workflow(make(), "sd15", OBJECT_INFO)
    assert fragment in str(info.value)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([SD15], "not a list"),
        ("{}", "not a string"),
        (None, "not null"),
        ({}, "no nodes"),
        ({"1": {"inputs": {}}, "2": {"inputs": {}}}, "neither ComfyUI's API format"),
        ({"nodes": "many"}, "neither ComfyUI's API format"),
        ({"3": SD15["3"], "x": 5}, "entry 'x' is not a node"),
    ],
)
def test_garbage_is_refused(data: Any, fragment: str) -> None:
    with pytest.raises(TemplateImportError) as info:
        import_workflow(data, "junk")
    assert fragment in str(info.value)
    assert "Export (API)" in str(info.value)


def test_ui_nodes_without_type_are_refused() -> None:
    with pytest.raises(TemplateImportError, match="needs an 'id' and a 'type'"):
        import_workflow({"nodes": [{"id": 1}], "links": []}, "junk", OBJECT_INFO)


@pytest.mark.parametrize("name", ["", "has space", "-dash", "x" * 65, "a/b"])
def test_bad_template_names_are_refused(name: str) -> None:
    with pytest.raises(TemplateImportError, match="template name"):
        import_workflow(SD15, name)


# --- modern UI saves, request bodies, early saves --------------------------------------------

SUBGRAPH_ID = "0b6e3f06-6b0c-4c39-8b2f-2a2b0e6d8b11"


def _subgraph_ui() -> dict[str, Any]:
    """_ui() with its EmptyLatentImage inside a subgraph (frontend 1.2x) whose width and
    height are inputs of the subgraph, held by the instance."""
    ui = _ui()
    instance = _node(ui, 5)
    instance.update(type=SUBGRAPH_ID, inputs=[], widgets_values=[64, 64])
    inner = {
        "id": 1,
        "type": "EmptyLatentImage",
        "mode": 0,
        "inputs": [
            {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1},
            {"name": "height", "type": "INT", "widget": {"name": "height"}, "link": 2},
        ],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [3]}],
        "widgets_values": [512, 512, 1],
    }
    links = [
        {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0},
        {"id": 2, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1},
        {"id": 3, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0},
    ]
    ui["definitions"] = {
        "subgraphs": [
            {
                "id": SUBGRAPH_ID,
                "name": "Latent",
                "inputs": [{"name": "width", "type": "INT"}, {"name": "height", "type": "INT"}],
                "outputs": [{"name": "LATENT", "type": "LATENT"}],
                "nodes": [inner],
                "links": links,
            }
        ]
    }
    return ui


def test_a_subgraph_is_expanded_like_comfyuis_api_export() -> None:
    result = import_workflow(_subgraph_ui(), "sub", OBJECT_INFO)
    expected = {k: v for k, v in copy.deepcopy(SD15).items() if k != "5"}
    expected["5:1"] = SD15["5"]
    expected["3"]["inputs"]["latent_image"] = ["5:1", 0]
    assert result.template["workflow"] == expected
    params = _params(result)
    assert params["width"]["targets"] == ["5:1.width"]
    assert (params["width"]["default"], params["batch_size"]["default"]) == (64, 1)
    assert result.notes == []


def test_every_unknown_node_type_is_named_at_once() -> None:
    ui = _ui()
    _node(ui, 9)["type"] = "SaveImageExtended"
    _node(ui, 8)["type"] = "VAEDecodeHyper"
    with pytest.raises(TemplateImportError) as info:
        import_workflow(ui, "sd15", OBJECT_INFO)
    assert "2 node(s)" in str(info.value)
    assert "node 8 (VAEDecodeHyper), node 9 (SaveImageExtended)" in str(info.value)


@pytest.mark.parametrize("control", [True, False])
def test_early_2023_saves_hold_the_seed_control_as_a_boolean(control: bool) -> None:
    ui = _ui(seed=5, steps=1)  # steps 1 == True: must not be taken for a control value
    _node(ui, 3)["widgets_values"][1] = control
    workflow = import_workflow(ui, "old", OBJECT_INFO).template["workflow"]
    assert workflow["3"]["inputs"]["seed"] == 5
    assert workflow["3"]["inputs"]["steps"] == 1
    assert workflow["3"]["inputs"]["cfg"] == 7


@pytest.mark.parametrize(
    "body",
    [{"input": {"workflow": SD15}}, {"input": {"workflow": SD15, "images": []}}],
    ids=["runpod", "runpod-with-images"],
)
def test_a_runpod_style_request_body_is_unwrapped(body: dict[str, Any]) -> None:
    result = import_workflow(body, "sd15")
    assert result.template["workflow"] == SD15
    assert any("['input']['workflow']" in note for note in result.notes)


def test_any_node_with_a_filename_prefix_is_a_saver() -> None:
    graph = copy.deepcopy(SD15)
    graph["9"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["8", 0],
            "filename_prefix": "x",
            "fps": 6.0,
            "lossless": False,
            "quality": 80,
            "method": "default",
        },
    }
    graph["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    result = import_workflow(graph, "webp")
    assert not any("PreviewImage only" in note for note in result.notes)
    assert _params(result)["fps"]["targets"] == ["9.fps"]
    graph["9"] = graph.pop("10")
    assert any("PreviewImage only" in n for n in import_workflow(graph, "preview").notes)


@pytest.mark.parametrize(
    "info",
    [[1, 2], {"prompt": {"class_type": "KSampler", "inputs": {}}}, {"exec_info": {"x": 1}}],
    ids=["a-list", "a-workflow", "no-definitions"],
)
def test_a_file_that_is_not_an_object_info_says_so(info: Any) -> None:
    with pytest.raises(TemplateImportError, match="GET /object_info"):
        import_workflow(_ui(), "sd15", info)


def test_a_ui_primitive_node_feeding_two_inputs_is_one_parameter() -> None:
    ui = _ui()
    for node_id, name in ((3, "steps"), (5, "batch_size")):
        _node(ui, node_id)["inputs"].append(
            {"name": name, "type": "INT", "widget": {"name": name}, "link": 20 + node_id}
        )
        ui["links"].append([20 + node_id, 20, 0, node_id, 9, "INT"])
    ui["nodes"].append(
        {
            "id": 20,
            "type": "PrimitiveNode",
            "mode": 0,
            "outputs": [{"name": "INT", "type": "INT", "links": [23, 25]}],
            "widgets_values": [2, "fixed"],
        }
    )
    result = import_workflow(ui, "tied", OBJECT_INFO)
    workflow, params = result.template["workflow"], _params(result)
    assert (workflow["3"]["inputs"]["steps"], workflow["5"]["inputs"]["batch_size"]) == (2, 2)
    assert params["steps"]["targets"] == ["3.steps", "5.batch_size"]
    assert "batch_size" not in params  # written by 'steps', as the workflow ties them
