"""Legacy group nodes (``extra.groupNodes``, ``workflow>NAME``) are expanded the way ComfyUI's
frontend builds the API prompt from them (``groupNode.ts``): inner nodes ``<instance>:<index>``,
the instance's widget values, inputs and outputs mapped onto them. The workflow is hand-made in
the frontend's save format (see tests/fixtures/groupnodes/README.md)."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from comfygate.comfy.local import LocalComfyUI
from comfygate.templates import bind
from comfygate.templates.binding import apply_output_prefix
from comfygate.templates.infer import TemplateImportError, import_workflow
from comfygate.templates.registry import parse_template
from tests.conftest import MakeApp, body
from tests.corpus import object_info
from tests.real_comfyui import RANDOM_SD15

FIXTURE = Path(__file__).parent / "fixtures" / "groupnodes" / "sampler-group-node.json"
INFO = object_info()
PROMPT = "a glass bottle on a beach"

# What the frontend sends for the fixture: the group node 10 becomes 10:0..10:4 (its inner
# nodes by index), with the instance's widget values; the PrimitiveNode 13 feeding the group's
# converted `text` input is inlined; 10:3's LATENT (listed in `external`) feeds the outer 11.
EXPECTED: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": RANDOM_SD15}},
    "9": {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "groupnode", "images": ["10:4", 0]},
    },
    "10:0": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
    "10:1": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "blurry, text, watermark", "clip": ["4", 1]},
    },
    "10:2": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1},
    },
    "10:3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 1,
            "cfg": 7.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["4", 0],
            "positive": ["10:0", 0],
            "negative": ["10:1", 0],
            "latent_image": ["10:2", 0],
        },
    },
    "10:4": {"class_type": "VAEDecode", "inputs": {"samples": ["10:3", 0], "vae": ["4", 2]}},
    "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10:3", 0], "vae": ["4", 2]}},
    "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
}


def _ui() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def _node(ui: dict[str, Any], node_id: int) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in ui["nodes"] if n["id"] == node_id)
    return found


def _inner(ui: dict[str, Any], index: int) -> dict[str, Any]:
    found: dict[str, Any] = ui["extra"]["groupNodes"]["sampler"]["nodes"][index]
    return found


@pytest.mark.parametrize("separator", [">", "/"], ids=["frontend-1.2.63+", "legacy"])
def test_a_group_node_is_expanded_like_comfyuis_frontend(separator: str) -> None:
    ui = _ui()
    _node(ui, 10)["type"] = f"workflow{separator}sampler"
    result = import_workflow(ui, "grouped", INFO)
    assert result.template["workflow"] == EXPECTED
    assert result.notes == []


def test_a_group_nodes_parameters_write_its_inner_nodes() -> None:
    params = import_workflow(_ui(), "grouped", INFO).template["parameters"]
    targets = {name: p["targets"] for name, p in params.items()}
    assert targets == {
        "prompt": ["10:0.text"],
        "negative_prompt": ["10:1.text"],
        "seed": ["10:3.seed"],
        "steps": ["10:3.steps"],
        "cfg": ["10:3.cfg"],
        "sampler": ["10:3.sampler_name"],
        "scheduler": ["10:3.scheduler"],
        "denoise": ["10:3.denoise"],
        "width": ["10:2.width"],
        "height": ["10:2.height"],
        "batch_size": ["10:2.batch_size"],
        "checkpoint": ["4.ckpt_name"],
    }
    assert (params["steps"]["default"], params["width"]["default"]) == (1, 64)
    assert params["negative_prompt"]["default"] == "blurry, text, watermark"


def test_binding_a_group_nodes_defaults_gives_back_its_graph() -> None:
    template = parse_template(import_workflow(_ui(), "grouped", INFO).template, "grouped")
    values = {n: p.default for n, p in template.parameters.items() if p.default is not None}
    values.update(prompt=PROMPT, seed=42)
    bound = bind(template, values, "job")
    assert bound == apply_output_prefix(copy.deepcopy(EXPECTED), "job")
    other = bind(template, {**values, "prompt": "a red fox", "seed": 5}, "job")
    assert (other["10:0"]["inputs"]["text"], other["10:3"]["inputs"]["seed"]) == ("a red fox", 5)


def test_a_muted_group_node_is_left_out_like_any_muted_node() -> None:
    ui = _ui()
    _node(ui, 10)["mode"] = 2
    result = import_workflow(ui, "muted", INFO)
    assert sorted(result.template["workflow"]) == ["11", "12", "4", "9"]
    assert "node 9 (SaveImage): an input comes from a muted node (node 10)" in result.notes[0]


def test_a_definitions_config_can_hide_an_output() -> None:
    """`config` hides the sampler's LATENT (used inside and, by `external`, outside): the
    decoder's IMAGE becomes the instance's first output."""
    ui = _ui()
    ui["extra"]["groupNodes"]["sampler"]["config"] = {"3": {"output": {"0": {"visible": False}}}}
    ui["nodes"] = [n for n in ui["nodes"] if n["id"] not in (11, 12)]
    ui["links"] = [[7, 10, 0, 9, 0, "IMAGE"] if link[0] == 7 else link for link in ui["links"]]
    ui["links"] = [link for link in ui["links"] if link[0] not in (6, 8, 9)]
    expected = {k: v for k, v in EXPECTED.items() if k not in ("11", "12")}
    assert import_workflow(ui, "grouped", INFO).template["workflow"] == expected


def test_a_primitive_node_inside_a_group_is_one_of_its_widgets() -> None:
    """A PrimitiveNode inside the group feeding the sampler's seed (converted to an input):
    the instance holds its value (and control value) where the primitive comes, after the
    other inner nodes' widgets; the API graph is the same."""
    ui = _ui()
    definition = ui["extra"]["groupNodes"]["sampler"]
    definition["nodes"].append(
        {
            "id": -1,
            "type": "PrimitiveNode",
            "mode": 0,
            "outputs": [{"name": "INT", "type": "INT", "links": [], "widget": {"name": "seed"}}],
            "title": "seed",
            "widgets_values": [1, "randomize"],
            "index": 5,
        }
    )
    _inner(ui, 3)["inputs"].append(
        {"name": "seed", "type": "INT", "link": None, "widget": {"name": "seed"}}
    )
    definition["links"].append([5, 0, 3, 4, 14, "INT"])
    values = _node(ui, 10)["widgets_values"]
    values[4:6] = []  # the sampler's seed and control value move to the primitive's place
    values[-1:-1] = [42, "fixed"]
    result = import_workflow(ui, "grouped", INFO)
    assert result.template["workflow"] == EXPECTED
    assert result.template["parameters"]["seed"]["targets"] == ["10:3.seed"]


def test_a_reroute_inside_a_group_is_followed() -> None:
    """A Reroute inside the group takes the CLIP from outside (one input of the group instead
    of two) and feeds both encoders: the encoders take the checkpoint's CLIP."""
    ui = _ui()
    definition = ui["extra"]["groupNodes"]["sampler"]
    definition["nodes"].append(
        {
            "id": -1,
            "type": "Reroute",
            "mode": 0,
            "inputs": [{"name": "", "type": "*", "link": None}],
            "outputs": [{"name": "", "type": "CLIP", "links": []}],
            "index": 5,
        }
    )
    definition["links"] = [
        *(link for link in definition["links"] if link[5] != "CLIP"),
        [None, 1, 5, 0, 4, "CLIP"],
        [5, 0, 0, 0, 14, "CLIP"],
        [5, 0, 1, 0, 14, "CLIP"],
    ]
    instance = _node(ui, 10)
    clip, _, model, vae, text = instance["inputs"]
    instance["inputs"] = [model, vae, clip, text]  # the reroute's input comes after the others
    ui["links"] = [link for link in ui["links"] if link[0] != 2]
    assert import_workflow(ui, "grouped", INFO).template["workflow"] == EXPECTED


def test_unknown_node_types_inside_are_named_with_the_others_at_once() -> None:
    ui = _ui()
    _inner(ui, 4)["type"] = "VAEDecodeHyper"
    _inner(ui, 2)["type"] = "EmptyLatentPlus"
    _node(ui, 11)["type"] = "VAEDecodeTurbo"
    with pytest.raises(TemplateImportError) as info:
        import_workflow(ui, "grouped", INFO)
    assert (
        "2 node(s) of types this ComfyUI does not know (custom nodes that are not installed?): "
        "node 10 (group node 'sampler', holding EmptyLatentPlus, VAEDecodeHyper), "
        "node 11 (VAEDecodeTurbo); install them"
    ) in str(info.value)


def _no_definition(ui: dict[str, Any]) -> None:
    ui["extra"]["groupNodes"]["other"] = ui["extra"]["groupNodes"].pop("sampler")


def _primitive_inside(ui: dict[str, Any]) -> None:
    _inner(ui, 2)["type"] = "PrimitiveNode"


def _reroute_of_a_widget_inside(ui: dict[str, Any]) -> None:
    _inner(ui, 0)["type"] = "Reroute"  # fed the CLIP and the prompt's STRING from outside


def _one_value_short(ui: dict[str, Any]) -> None:
    _node(ui, 10)["widgets_values"].pop()


def _inputs_reordered(ui: dict[str, Any]) -> None:
    _inner(ui, 3)["inputs"].reverse()


def _inputs_swapped(ui: dict[str, Any]) -> None:
    inputs = _node(ui, 10)["inputs"]
    inputs[2], inputs[3] = inputs[3], inputs[2]


def _inner_inputs_missing(ui: dict[str, Any]) -> None:
    _inner(ui, 3)["inputs"] = []


def _external_holding_a_node(ui: dict[str, Any]) -> None:
    # Some saves hold the node itself in `external`: it matches no index in the frontend
    # either, so the sampler's LATENT (used inside) is no output and the IMAGE is output 0.
    definition = ui["extra"]["groupNodes"]["sampler"]
    definition["external"] = [[definition["nodes"][3], 0, "LATENT"]]


def _extra_input(ui: dict[str, Any]) -> None:
    _node(ui, 10)["inputs"].append({"name": "more", "type": "CLIP", "link": 1})


def _extra_output(ui: dict[str, Any]) -> None:
    ui["links"].append([10, 10, 2, 12, 0, "IMAGE"])
    _node(ui, 12)["inputs"][0]["link"] = 10


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (_no_definition, "has no definition under 'extra.groupNodes'"),
        (_primitive_inside, "a PrimitiveNode of type LATENT inside a group node is not expanded"),
        (_reroute_of_a_widget_inside, "a Reroute carrying a widget value inside a group node"),
        (_one_value_short, "its 11 widget values do not line up with the 11 widgets"),
        (_inputs_reordered, "its inputs are not in the order this ComfyUI defines them"),
        (_inputs_swapped, "its input 'vae' (VAE) lines up with an inner input of type MODEL"),
        (_inner_inputs_missing, "inner node 3 (KSampler): its input 1 is connected but the"),
        (_extra_input, "its input 'more' is connected but stands for no input"),
        (_extra_output, "its output 2 is connected but stands for no output"),
        (_external_holding_a_node, "its output 1 is connected but stands for no output"),
    ],
)
def test_what_cannot_be_mapped_with_confidence_is_refused_in_one_line(
    change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    ui = _ui()
    change(ui)
    with pytest.raises(TemplateImportError) as info:
        import_workflow(ui, "grouped", INFO)
    message = str(info.value)
    assert fragment in message
    assert "node 10 (group node 'sampler')" in message
    assert "Convert to nodes" in message
    assert "\n" not in message


@pytest.mark.comfyui
def test_an_imported_group_node_workflow_runs_on_the_real_comfyui(
    make_app: MakeApp, real_comfyui: LocalComfyUI, tmp_path: Path
) -> None:
    live = requests.get(f"{real_comfyui.url}/object_info", timeout=60).json()
    templates = tmp_path / "templates"
    templates.mkdir()
    imported = import_workflow(_ui(), "grouped", live).template
    assert imported["workflow"] == EXPECTED
    (templates / "grouped.json").write_text(json.dumps(imported))
    client = make_app([real_comfyui.url], templates_dir=str(templates), read_timeout_s=120.0)
    request = {"template": "grouped", "prompt": "a lighthouse", "seed": 7}
    resp = client.test_client().post(
        "/v1/generate", json=request, headers={"Accept": "application/json"}
    )
    assert resp.status_code == 200, body(resp)
    job = body(resp)
    assert job["status"] == "succeeded"
    assert (job["params"]["seed"], job["params"]["steps"]) == (7, 1)
    [output] = job["outputs"]  # SaveImage 9 (the PreviewImage is temp)
    image = client.test_client().get(output["url"])
    assert Image.open(io.BytesIO(image.data)).size == (64, 64)
