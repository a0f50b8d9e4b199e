"""Issue 15 item 2: raw workflows are held to the cost limits on the values their nodes will
actually receive (links followed through Primitive nodes, batch multipliers counted), and
every job to MAX_BATCH_SIZE and MAX_PIXELS on what it returns, at run time."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image

from comfygate.errors import ValidationFailed
from comfygate.templates.graph_costs import check_graph
from comfygate.templates.limits import CostLimits
from comfygate.testing.fake_comfyui import FakeComfyUI
from comfygate.testing.fake_comfyui.catalogue import DEFAULT_CHECKPOINT
from tests.conftest import MakeApp, body
from tests.helpers import wait_for


def sd_graph(batch: Any = 1, amount: Any = 8, size: int = 64) -> dict[str, Any]:
    """EmptyLatentImage -> RepeatLatentBatch -> KSampler -> VAEDecode -> SaveImage."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": batch},
        },
        "4": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["3", 0], "amount": amount}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["4", 0],
                "seed": 1,
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
    }


def image_graph(width: Any = 16, batch: Any = 1) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": 8, "batch_size": batch, "color": 255},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }


def primitive(value: Any) -> dict[str, Any]:
    return {"class_type": "PrimitiveInt", "inputs": {"value": value}}


def run(client: FlaskClient, workflow: dict[str, Any]) -> Any:
    return client.post(
        "/v1/workflows/run", json={"workflow": workflow}, headers={"Accept": "application/json"}
    )


def refused(resp: Any, setting: str, field: str) -> dict[str, Any]:
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error: dict[str, Any] = body(resp)["error"]
    assert error["code"] == "validation_error"
    assert setting in error["message"], error["message"]
    assert error["details"]["field"] == field, error
    return error


@pytest.fixture
def limited(fake: FakeComfyUI, make_app: MakeApp) -> FlaskClient:
    return make_app(
        [fake.url], allow_raw_workflows=True, max_batch_size=2, max_pixels=64 * 64, max_steps=10
    ).test_client()


# --- the examples of the issue --------------------------------------------------------------


def test_repeat_latent_batch_is_counted(limited: FlaskClient, fake: FakeComfyUI) -> None:
    error = refused(run(limited, sd_graph(batch=1, amount=8)), "MAX_BATCH_SIZE", "workflow.4")
    assert "batch of 8 images" in error["message"]
    assert error["details"]["node_type"] == "RepeatLatentBatch"
    assert fake.submissions == []


def test_a_primitive_linked_into_a_width_is_followed(
    limited: FlaskClient, fake: FakeComfyUI
) -> None:
    graph = image_graph(width=["9", 0])
    graph["9"] = primitive(100000)
    error = refused(run(limited, graph), "MAX_PIXELS", "width")
    assert "100000x8" in error["message"]
    assert fake.submissions == []


def test_a_within_limits_graph_with_links_runs(limited: FlaskClient, fake: FakeComfyUI) -> None:
    graph = image_graph(width=["9", 0], batch=["10", 0])
    graph["9"], graph["10"] = primitive(["11", 0]), primitive(2)
    graph["11"] = primitive(32)  # a chain of primitives
    resp = run(limited, graph)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(body(resp)["outputs"]) == 2


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("100000", "100000x8"), (100000.0, "800000"), (" 100000 ", "100000x8")],
)
def test_numbers_comfyui_would_cast_are_counted(
    limited: FlaskClient, value: Any, fragment: str
) -> None:
    error = refused(run(limited, image_graph(width=value)), "MAX_PIXELS", "width")
    assert fragment in error["message"]


def test_a_value_the_gateway_cannot_know_is_refused_where_a_limit_applies(
    limited: FlaskClient,
) -> None:
    graph = image_graph(width=["9", 0])
    graph["9"] = {"class_type": "StringLength", "inputs": {"string": "x" * 100}}
    error = refused(run(limited, graph), "MAX_PIXELS", "workflow.1.inputs.width")
    assert "StringLength" in error["message"]
    assert "cannot be known" in error["message"]


def test_unknowable_values_are_fine_without_limits(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], allow_raw_workflows=True).test_client()
    graph = image_graph(width=["9", 0])
    graph["9"] = primitive(24)
    resp = run(client, graph)
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_steps_through_a_primitive(limited: FlaskClient) -> None:
    graph = sd_graph(amount=1)
    graph["5"]["inputs"]["steps"] = ["9", 0]
    graph["9"] = primitive(1000)
    refused(run(limited, graph), "MAX_STEPS", "steps")


@pytest.mark.parametrize("index", [0.0, True])
def test_a_link_index_that_is_not_an_integer_is_refused(limited: FlaskClient, index: Any) -> None:
    graph = image_graph(width=["9", index])
    graph["9"] = primitive(100000)
    resp = run(limited, graph)
    assert resp.status_code == 400
    assert "integer" in body(resp)["error"]["message"]


def test_a_cycle_is_refused(limited: FlaskClient) -> None:
    graph = image_graph(width=["9", 0])
    graph["9"] = primitive(["9", 0])
    graph["1"]["inputs"]["color"] = ["1", 0]
    resp = run(limited, graph)
    assert resp.status_code == 400
    assert "cycle" in body(resp)["error"]["message"]


# --- shapes (pure: the graph analysis itself) -----------------------------------------------

LIMITS = CostLimits(max_pixels=512 * 512, max_batch_size=4)


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def latent(width: int = 64, height: int = 64, batch: int = 1) -> dict[str, Any]:
    return node("EmptyLatentImage", width=width, height=height, batch_size=batch)


def save(source: str) -> dict[str, Any]:
    return node("SaveImage", images=[source, 0], filename_prefix="x")


@pytest.mark.parametrize(
    ("graph", "setting", "fragment"),
    [
        # batch multipliers and sums
        ({"1": latent(batch=3), "2": node("RepeatLatentBatch", samples=["1", 0], amount=2)},
         "MAX_BATCH_SIZE", "batch of 6"),
        ({"1": node("EmptyImage", width=8, height=8, batch_size=3, color=0),
          "2": node("RepeatImageBatch", image=["1", 0], amount=2)}, "MAX_BATCH_SIZE", "batch of 6"),
        ({"1": latent(batch=3), "2": latent(batch=2),
          "3": node("LatentBatch", samples1=["1", 0], samples2=["2", 0])},
         "MAX_BATCH_SIZE", "batch of 5"),
        ({"1": node("EmptyImage", width=8, height=8, batch_size=3, color=0),
          "2": node("ImageBatch", image1=["1", 0], image2=["1", 0])},
         "MAX_BATCH_SIZE", "batch of 6"),
        # video frames are images too
        ({"1": node("EmptyHunyuanLatentVideo", width=64, height=64, length=25, batch_size=1)},
         "MAX_BATCH_SIZE", "batch of 25"),
        # a batch multiplied, then cut down: the sampling in between is what costs
        ({"1": latent(), "2": node("RepeatLatentBatch", samples=["1", 0], amount=64),
          "3": node("LatentFromBatch", samples=["2", 0], batch_index=0, length=1)},
         "MAX_BATCH_SIZE", "batch of 64"),
        # sizes: set, scaled, padded, through decoders
        ({"1": latent(), "2": node("LatentUpscale", samples=["1", 0], upscale_method="area",
                                    width=1024, height=1024, crop="disabled")},
         "MAX_PIXELS", "1024x1024"),
        ({"1": latent(512, 512), "2": node("LatentUpscaleBy", samples=["1", 0],
                                            upscale_method="area", scale_by=1.5)},
         "MAX_PIXELS", "768x768"),
        ({"1": latent(512, 512), "2": node("VAEDecode", samples=["1", 0], vae=["9", 2]),
          "3": node("ImageScaleBy", image=["2", 0], upscale_method="area", scale_by=2.0),
          "9": node("CheckpointLoaderSimple", ckpt_name="m")}, "MAX_PIXELS", "1024x1024"),
        ({"1": node("EmptySD3LatentImage", width=512, height=512, batch_size=1),
          "2": node("VAEDecode", samples=["1", 0], vae=["9", 2]),
          "3": node("ImagePadForOutpaint", image=["2", 0], left=0, top=0, right=64, bottom=0,
                    feathering=0), "9": node("CheckpointLoaderSimple", ckpt_name="m")},
         "MAX_PIXELS", "576x512"),
        ({"1": node("EmptyImage", width=512, height=512, batch_size=1, color=0),
          "2": node("ImageStitch", image1=["1", 0], image2=["1", 0], direction="right",
                    match_image_size=False, spacing_width=0, spacing_color="white")},
         "MAX_PIXELS", "1024x512"),
        ({"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
          "2": node("ImageScaleToTotalPixels", image=["1", 0], upscale_method="area",
                    megapixels=1.0)}, "MAX_PIXELS", "pixels"),
        ({"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
          "2": node("ImageScaleToTotalPixels", image=["1", 0], upscale_method="area",
                    megapixels=0.2),
          "3": node("ImageScaleBy", image=["2", 0], upscale_method="area", scale_by=2.0)},
         "MAX_PIXELS", "pixels"),
        ({"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
          "2": node("ImageScaleToTotalPixels", image=["1", 0], upscale_method="area",
                    megapixels=0.2),
          "3": node("ImagePadForOutpaint", image=["2", 0], left=8, top=0, right=0, bottom=0,
                    feathering=0)}, "MAX_PIXELS", "cannot be known"),
        # what cannot be known before it runs
        ({"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
          "2": node("UpscaleModelLoader", model_name="x.pth"),
          "3": node("ImageUpscaleWithModel", upscale_model=["2", 0], image=["1", 0])},
         "MAX_PIXELS", "upscale model"),
        ({"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
          "2": node("ImageScale", image=["1", 0], upscale_method="area", width=0, height=4096,
                    crop="disabled")}, "MAX_PIXELS", "aspect ratio"),
        ({"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
          "2": node("GetImageSize", image=["1", 0]),
          "3": node("RepeatImageBatch", image=["1", 0], amount=["2", 2])},
         "MAX_BATCH_SIZE", "GetImageSize"),
        # images returned, added up over the SaveImage nodes
        ({"1": latent(batch=3), "2": node("VAEDecode", samples=["1", 0], vae=["9", 2]),
          "3": save("2"), "4": save("2"), "9": node("CheckpointLoaderSimple", ckpt_name="m")},
         "MAX_BATCH_SIZE", "return 6 images"),
    ],
)  # fmt: skip
def test_graph_shapes(graph: dict[str, Any], setting: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed, match=setting) as info:
        check_graph(graph, LIMITS)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "graph",
    [
        {"1": latent(512, 512, 4), "2": node("VAEDecode", samples=["1", 0], vae=["9", 2]),
         "3": save("2"), "9": node("CheckpointLoaderSimple", ckpt_name="m")},
        {"1": latent(1024, 256), "2": node("LatentUpscaleBy", samples=["1", 0],
                                             upscale_method="area", scale_by=0.5)},
        {"1": latent(batch=2), "2": node("RepeatLatentBatch", samples=["1", 0], amount=2),
         "3": node("LatentFromBatch", samples=["2", 0], batch_index=0, length=1)},
        {"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
         "2": node("ImageScaleToTotalPixels", image=["1", 0], upscale_method="area",
                   megapixels=0.2)},
        # a size known only as an area still goes through batch and scale nodes
        {"1": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
         "2": node("ImageScaleToTotalPixels", image=["1", 0], upscale_method="area",
                   megapixels=0.1),
         "3": node("RepeatImageBatch", image=["2", 0], amount=2),
         "4": node("ImageScaleBy", image=["3", 0], upscale_method="area", scale_by=1.2),
         "5": save("4")},
    ],
)  # fmt: skip
def test_graph_shapes_within_limits(graph: dict[str, Any]) -> None:
    check_graph(graph, LIMITS)  # raises nothing


def test_a_load_image_counts_with_its_own_size(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], allow_raw_workflows=True, max_batch_size=2).test_client()
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    graph = {
        "1": node("LoadImage", image=uri),
        "2": node("CheckpointLoaderSimple", ckpt_name=DEFAULT_CHECKPOINT),
        "3": node("VAEEncode", pixels=["1", 0], vae=["2", 2]),
        "4": node("RepeatLatentBatch", samples=["3", 0], amount=3),
        "5": node("VAEDecode", samples=["4", 0], vae=["2", 2]),
        "6": save("5"),
    }
    refused(run(client, graph), "MAX_BATCH_SIZE", "workflow.4")
    graph["4"]["inputs"]["amount"] = 2
    resp = run(client, graph)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(body(resp)["outputs"]) == 2


# --- at run time: what a job returns, whatever made it --------------------------------------


def write_template(folder: Path, name: str, workflow: dict[str, Any]) -> None:
    folder.mkdir(exist_ok=True)
    spec = {
        "name": name,
        "description": "an operator's template that returns more than its parameters say",
        "parameters": {"width": {"type": "integer", "default": 8, "targets": ["1.width"]}},
        "workflow": workflow,
    }
    (folder / f"{name}.json").write_text(json.dumps(spec))


def test_a_job_returning_too_many_images_is_stopped(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "triple", image_graph(width=8, batch=3))  # batch_size fixed at 3
    client = make_app([fake.url], templates_dir=str(folder), max_batch_size=2).test_client()
    resp = client.post("/v1/generate", json={"template": "triple", "cache": False})
    assert resp.status_code == 502, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert error["code"] == "generation_failed"
    assert "MAX_BATCH_SIZE" in error["message"]
    assert error["details"]["setting"] == "MAX_BATCH_SIZE"
    job = body(client.get(f"/v1/jobs/{error['details']['job_id']}"))
    assert job["status"] == "failed"
    assert job["outputs"] == []
    assert job["error"]["details"]["setting"] == "MAX_BATCH_SIZE"


def test_a_job_returning_too_large_an_image_is_stopped(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    graph = image_graph(width=8)
    graph["2"] = node(
        "ImageScale", image=["1", 0], upscale_method="area", width=64, height=64, crop="disabled"
    )
    graph["3"] = save("2")
    write_template(folder, "grow", graph)
    client = make_app([fake.url], templates_dir=str(folder), max_pixels=1000).test_client()
    resp = client.post("/v1/generate", json={"template": "grow"})
    assert resp.status_code == 502, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert "64x64" in error["message"]
    assert error["details"]["setting"] == "MAX_PIXELS"
    job = body(client.get(f"/v1/jobs/{error['details']['job_id']}"))
    assert job["status"] == "failed"
    assert job["outputs"] == []
    # Nothing of it is kept, nor cached for the next caller.
    again = client.post("/v1/generate", json={"template": "grow"})
    assert again.status_code == 502
    assert len(fake.submissions) == 2


@pytest.mark.parametrize(
    ("early", "limit", "setting"),
    [
        # 3 images under MAX_BATCH_SIZE=2
        ({"8": node("EmptyImage", width=8, height=8, batch_size=3, color=0), "9": save("8")},
         {"max_batch_size": 2}, "MAX_BATCH_SIZE"),
        # a 64x64 image under MAX_PIXELS=1000
        ({"8": node("EmptyImage", width=8, height=8, batch_size=1, color=0),
          "10": node("ImageScale", image=["8", 0], upscale_method="area", width=64, height=64,
                     crop="disabled"), "9": save("10")},
         {"max_pixels": 1000}, "MAX_PIXELS"),
    ],
)  # fmt: skip
def test_the_job_is_interrupted_on_comfyui_as_soon_as_it_is_over(
    make_app: MakeApp, tmp_path: Path, early: dict[str, Any], limit: dict[str, int], setting: str
) -> None:
    # SaveImage "9" returns its images first (ComfyUI runs output nodes as soon as it can); a
    # 200-step sampling would follow. The gateway stops the prompt on ComfyUI when the
    # images are reported, instead of letting the sampling run.
    folder = tmp_path / "templates"
    graph = sd_graph(amount=1)
    graph["1"]["inputs"]["ckpt_name"] = DEFAULT_CHECKPOINT
    graph["5"]["inputs"]["steps"] = 200
    graph.update(early)
    write_template(folder, "early", graph)
    spec = json.loads((folder / "early.json").read_text())
    spec["parameters"]["width"]["targets"] = ["8.width"]
    (folder / "early.json").write_text(json.dumps(spec))
    with FakeComfyUI(step_time_s=0.2) as fake:
        client = make_app([fake.url], templates_dir=str(folder), **limit).test_client()
        job_id = body(client.post("/v1/jobs", json={"template": "early"}))["id"]

        def status() -> str:
            return str(body(client.get(f"/v1/jobs/{job_id}"))["status"])

        assert wait_for(lambda: status() == "failed", 30)
        job = body(client.get(f"/v1/jobs/{job_id}"))
        assert job["error"]["code"] == "generation_failed"
        assert job["error"]["details"]["setting"] == setting
        assert setting in job["error"]["message"]
        assert job["outputs"] == []

        def history() -> list[str]:
            entries = requests.get(f"{fake.url}/history", timeout=5).json().values()
            return [str(e["status"]["messages"][-1][0]) for e in entries]

        assert wait_for(lambda: bool(history()), 10)
        assert history() == ["execution_interrupted"]


def test_huge_values_never_overflow(limited: FlaskClient) -> None:
    # Sizes are still worked out where only MAX_BATCH_SIZE applies: a 400-digit width scaled
    # by a float, or 400 upscales by 8 in a row, must not overflow (a 500), and a refusal
    # where a limit applies is still a 400.
    wide = image_graph(width=10**400)
    wide["3"] = node("ImageScaleBy", image=["1", 0], upscale_method="area", scale_by=1.5)
    chain = {"0": latent(16, 16)}
    for i in range(1, 400):
        chain[str(i)] = node(
            "LatentUpscaleBy", samples=[str(i - 1), 0], upscale_method="area", scale_by=8.0
        )
    for graph in (wide, chain):
        check_graph(graph, CostLimits(max_batch_size=4))  # no pixel limit: nothing to refuse
        with pytest.raises(ValidationFailed, match="MAX_PIXELS"):
            check_graph(graph, CostLimits(max_pixels=64 * 64))
    refused(run(limited, wide), "MAX_PIXELS", "width")
