"""Issue 15 item 2 against a real ComfyUI 0.3.75: the graphs the probe used are real graphs
(they run, and multiply, without limits), and the limits refuse them; the run-time count
stops a job that returns too many images; the shape rules cover every image node there is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from comfygate.comfy.local import LocalComfyUI
from comfygate.templates.graph_shapes import SHAPED
from comfygate.templates.raw import DEFAULT_ALLOWED
from tests.conftest import MakeApp, body
from tests.helpers import comfy_idle, wait_for

pytestmark = pytest.mark.comfyui

JSON = {"Accept": "application/json"}


def empty_image(width: Any, batch: int = 1) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": 16, "batch_size": batch, "color": 0},
    }


def save(source: str) -> dict[str, Any]:
    return {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "x"}}


REPEAT_LATENT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
    "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "3": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["2", 0], "amount": 8}},
    "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
    "5": save("4"),
}


def test_raw_workflow_limits_on_a_real_comfyui(
    make_app: MakeApp, real_comfyui: LocalComfyUI, tmp_path: Path
) -> None:
    # Without limits, a batch multiplier multiplies (model-free: RepeatImageBatch).
    open_gateway = make_app([real_comfyui.url], allow_raw_workflows=True, read_timeout_s=60.0)
    repeat = {
        "1": empty_image(16),
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 8}},
        "3": save("2"),
    }
    resp = open_gateway.test_client().post(
        "/v1/workflows/run", json={"workflow": repeat}, headers=JSON
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(body(resp)["outputs"]) == 8

    client = make_app(
        [real_comfyui.url],
        allow_raw_workflows=True,
        max_batch_size=2,
        max_pixels=64 * 64,
        read_timeout_s=60.0,
    ).test_client()

    def run(workflow: dict[str, Any]) -> Any:
        return client.post("/v1/workflows/run", json={"workflow": workflow}, headers=JSON)

    # RepeatLatentBatch amount 8 with MAX_BATCH_SIZE=2: refused, naming the node and limit.
    resp = run(REPEAT_LATENT)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert error["code"] == "validation_error"
    assert "MAX_BATCH_SIZE" in error["message"]
    assert error["details"]["node_type"] == "RepeatLatentBatch"

    # PrimitiveInt 100000 linked into EmptyImage.width: refused; 32 runs, the link followed.
    linked = {"1": empty_image(["9", 0]), "2": save("1"), "9": {"class_type": "PrimitiveInt"}}
    linked["9"]["inputs"] = {"value": 100000}
    resp = run(linked)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "MAX_PIXELS" in body(resp)["error"]["message"]
    linked["9"]["inputs"] = {"value": 32}
    resp = run(linked)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    job = body(resp)
    png = client.get(job["outputs"][0]["url"])
    assert png.data[16:24] == (32).to_bytes(4, "big") + (16).to_bytes(4, "big")  # IHDR

    # At run time: an operator's template returning 3 images under MAX_BATCH_SIZE=2.
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "three.json").write_text(
        json.dumps(
            {
                "name": "three",
                "description": "a fixed batch of 3",
                "parameters": {"color": {"type": "integer", "default": 0, "targets": ["1.color"]}},
                "workflow": {"1": empty_image(16, batch=3), "2": save("1")},
            }
        )
    )
    limited = make_app(
        [real_comfyui.url], templates_dir=str(templates), max_batch_size=2, read_timeout_s=60.0
    ).test_client()
    resp = limited.post("/v1/generate", json={"template": "three", "cache": False})
    assert resp.status_code == 502, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert error["code"] == "generation_failed"
    assert error["details"]["setting"] == "MAX_BATCH_SIZE"
    assert body(limited.get(f"/v1/jobs/{error['details']['job_id']}"))["outputs"] == []
    assert wait_for(lambda: comfy_idle(real_comfyui.url), 30)


def test_every_image_node_of_comfyui_has_a_shape_rule(real_comfyui: LocalComfyUI) -> None:
    info = requests.get(f"{real_comfyui.url}/object_info", timeout=60).json()
    image_like = {"IMAGE", "LATENT", "MASK", "VIDEO"}
    makes_images = {
        name for name in DEFAULT_ALLOWED if name in info and image_like & set(info[name]["output"])
    }
    assert len(makes_images) > 100
    assert makes_images <= SHAPED, sorted(makes_images - SHAPED)
    assert set(info) >= DEFAULT_ALLOWED, sorted(DEFAULT_ALLOWED - set(info))
