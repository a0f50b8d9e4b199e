"""The gateway against a real ComfyUI 0.3.75 (CPU): what a user sees, end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from comfygate.comfy.local import LocalComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import comfy_idle, wait_for

pytestmark = pytest.mark.comfyui


@pytest.fixture
def real_app(make_app: MakeApp, real_comfyui: LocalComfyUI, tmp_path: Path) -> Flask:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "loadimage.json").write_text(
        json.dumps(
            {
                "name": "loadimage",
                "description": "LoadImage -> SaveImage",
                "parameters": {
                    "image": {"type": "string", "required": True, "targets": ["1.image"]}
                },
                "workflow": {
                    "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                    "2": {
                        "class_type": "SaveImage",
                        "inputs": {"images": ["1", 0], "filename_prefix": "x"},
                    },
                },
            }
        )
    )
    return make_app([real_comfyui.url], templates_dir=str(templates), read_timeout_s=60.0)


@pytest.fixture
def real_client(real_app: Flask) -> FlaskClient:
    return real_app.test_client()


def test_model_free_template_end_to_end(real_client: FlaskClient) -> None:
    resp = real_client.post(
        "/v1/generate", json={"template": "solid", "width": 32, "height": 16, "color": 0x00FF00}
    )
    assert resp.status_code == 200
    assert resp.content_type == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    image = Image.open(io.BytesIO(resp.data))
    assert image.size == (32, 16)
    assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 255)  # green, inverted
    job = real_client.get(f"/v1/outputs/{resp.headers['X-Job-Id']}/3-0.png")
    assert job.status_code == 200
    assert job.data == resp.data


def test_txt2img_with_the_random_sd15_checkpoint(real_client: FlaskClient) -> None:
    request = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 7}
    resp = real_client.post("/v1/generate", json=request, headers={"Accept": "application/json"})
    assert resp.status_code == 200, body(resp)
    job = body(resp)
    assert job["status"] == "succeeded"
    assert job["params"]["checkpoint"] == "random-sd15-fp16.safetensors"
    assert job["params"]["seed"] == 7
    assert resp.headers["X-Seed"] == "7"
    [output] = job["outputs"]
    assert output["content_type"] == "image/png"
    image = real_client.get(output["url"])
    assert Image.open(io.BytesIO(image.data)).size == (64, 64)


def test_a_workflow_comfyui_rejects_is_502_naming_the_node(
    make_app: MakeApp, real_comfyui: LocalComfyUI
) -> None:
    examples = Path(__file__).parent.parent / "examples" / "templates"
    client = make_app([real_comfyui.url], templates_dir=str(examples)).test_client()
    resp = client.post("/v1/generate", json={"template": "invalid"})
    assert resp.status_code == 502
    error = body(resp)["error"]
    assert error["code"] == "generation_failed"
    assert error["details"]["node_id"] == "1"
    assert error["details"]["node_type"] == "EmptyImage"
    assert "Value 0 smaller than min of 1" in error["details"]["message"]
    assert "job_id" in error["details"]


def test_a_checkpoint_no_backend_has_is_400(real_client: FlaskClient) -> None:
    resp = real_client.post("/v1/generate", json={"prompt": "x", "checkpoint": "nope.ckpt"})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "checkpoint"


def test_a_workflow_that_fails_while_running_is_502_without_paths(
    real_client: FlaskClient, real_comfyui: LocalComfyUI
) -> None:
    input_dir = real_comfyui.base_dir / "input"
    input_dir.mkdir(exist_ok=True)
    (input_dir / "not-an-image.png").write_bytes(b"this is not a PNG")
    resp = real_client.post(
        "/v1/generate", json={"template": "loadimage", "image": "not-an-image.png"}
    )
    assert resp.status_code == 502
    error = body(resp)["error"]
    assert error["code"] == "generation_failed"
    assert error["details"]["node_id"] == "1"
    assert error["details"]["node_type"] == "LoadImage"
    assert "UnidentifiedImageError" in error["details"]["exception_type"]
    text = resp.get_data(as_text=True)
    assert str(real_comfyui.base_dir) not in text
    assert "Traceback" not in text
    assert real_comfyui.url not in text


def test_timeout_is_504_and_the_job_is_interrupted(
    real_app: Flask, real_client: FlaskClient, real_comfyui: LocalComfyUI
) -> None:
    resp = real_client.post(
        "/v1/generate",
        json={"prompt": "slow", "width": 64, "height": 64, "steps": 150, "timeout_s": 1},
    )
    assert resp.status_code == 504
    error = body(resp)["error"]
    assert error["code"] == "timeout"
    job_id = error["details"]["job_id"]
    gateway = real_app.extensions["comfygate"]
    assert gateway.jobs.get(job_id).status.value == "cancelled"

    assert wait_for(lambda: comfy_idle(real_comfyui.url), 30), "ComfyUI kept running the job"


def test_comfyui_stopped_is_503_and_not_ready(
    make_app: MakeApp, fresh_comfyui: LocalComfyUI
) -> None:
    client = make_app([fresh_comfyui.url]).test_client()
    assert client.get("/readyz").status_code == 200
    fresh_comfyui.stop()
    assert wait_for(lambda: client.get("/readyz").status_code == 503, 15)
    resp = client.post("/v1/generate", json={"template": "solid"})
    assert resp.status_code == 503
    assert body(resp)["error"]["code"] == "backend_unavailable"
    assert int(resp.headers["Retry-After"]) > 0
    assert fresh_comfyui.url not in resp.get_data(as_text=True)


def _start_image() -> bytes:
    """A 64x64 image made on the spot: a gradient, so the VAE has something to encode."""
    image = Image.new("RGB", (64, 64))
    image.putdata([(x * 4, y * 4, 128) for y in range(64) for x in range(64)])
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_img2img_with_a_data_uri_and_as_multipart(real_client: FlaskClient) -> None:
    import base64

    start = _start_image()
    params = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 11}
    uri = "data:image/png;base64," + base64.b64encode(start).decode()
    resp = real_client.post(
        "/v1/generate",
        json={"template": "img2img", "image": uri, "denoise": 0.5, **params},
        headers={"Accept": "application/json"},
    )
    assert resp.status_code == 200, body(resp)
    job = body(resp)
    assert job["status"] == "succeeded"
    assert job["params"]["image"].startswith("cg-")
    assert job["params"]["checkpoint"] == "random-sd15-fp16.safetensors"
    [output] = job["outputs"]
    first = real_client.get(output["url"])
    assert Image.open(io.BytesIO(first.data)).size == (64, 64)

    resp = real_client.post(
        "/v1/templates/img2img/generate",
        data={
            "params": json.dumps({**params, "steps": 1, "denoise": 0.8}),
            "image": (io.BytesIO(start), "start.png", "image/png"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.content_type == "image/png"
    assert Image.open(io.BytesIO(resp.data)).size == (64, 64)
