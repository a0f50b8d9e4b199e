"""POST /v1/generate and the read-only routes, against the fake ComfyUI."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from comfygate.comfy.folders import job_output_prefix
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import comfy_idle, wait_for


def test_generate_returns_the_image_with_job_and_seed_headers(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/generate", json={"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 42}
    )
    assert resp.status_code == 200
    assert resp.content_type == "image/png"
    assert resp.headers["X-Seed"] == "42"
    assert len(resp.headers["X-Job-Id"]) == 32
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(resp.data)).size == (64, 64)


@pytest.mark.parametrize("accept", [None, "*/*", "image/*", "image/png"])
def test_accept_that_admits_the_image_gets_bytes(client: FlaskClient, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    resp = client.post("/v1/generate", json={"template": "solid"}, headers=headers)
    assert resp.status_code == 200
    assert resp.content_type == "image/png"


def test_accept_json_gets_the_job_object(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/generate",
        json={"template": "solid", "width": 8},
        headers={"Accept": "application/json"},
    )
    assert resp.status_code == 200
    job = body(resp)
    assert job["status"] == "succeeded"
    assert job["template"] == "solid"
    assert job["params"] == {"width": 8, "height": 64, "color": 16711680, "batch_size": 1}
    assert job["attempts"] == 1
    assert job["cached"] is False
    [output] = job["outputs"]
    assert output["url"] == f"/v1/outputs/{job['id']}/3-0.png"
    assert output["content_type"] == "image/png"
    fetched = client.get(output["url"])
    assert fetched.status_code == 200
    assert len(fetched.data) == output["size"]
    for key in ("created_at", "started_at", "finished_at"):
        assert job[key].endswith("Z")
    assert "backend" not in job
    assert "prompt_id" not in job


def test_several_outputs_give_the_job_object(client: FlaskClient) -> None:
    resp = client.post("/v1/generate", json={"template": "solid", "batch_size": 3})
    assert resp.status_code == 200
    job = body(resp)
    assert [o["filename"] for o in job["outputs"]] == ["3-0.png", "3-1.png", "3-2.png"]


def test_random_seed_is_drawn_and_recorded(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/generate",
        json={"prompt": "x", "width": 64, "height": 64, "steps": 1},
        headers={"Accept": "application/json"},
    )
    job = body(resp)
    assert str(job["params"]["seed"]) == resp.headers["X-Seed"]
    assert job["params"]["checkpoint"] == "random-sd15-fp16.safetensors"


def test_the_graph_sent_to_comfyui_is_the_bound_template(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    prompt = 'a "quoted" {prompt}\n with }]) JSON-ish text'
    resp = client.post(
        "/v1/generate", json={"prompt": prompt, "width": 64, "height": 64, "steps": 1, "seed": 3}
    )
    [submission] = fake.submissions
    graph = submission["prompt"]
    assert graph["6"]["inputs"]["text"] == prompt
    assert graph["3"]["inputs"]["seed"] == 3
    # The job's own subfolder: ComfyUI's numbering scan lists only this job's files.
    assert graph["9"]["inputs"]["filename_prefix"] == job_output_prefix(resp.headers["X-Job-Id"])
    assert set(graph) == {"3", "4", "5", "6", "7", "8", "9"}
    assert submission["client_id"]
    assert submission["prompt_id"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"data": "not json", "content_type": "application/json"}, "not valid JSON"),
        ({"data": "[1, 2]", "content_type": "application/json"}, "JSON object"),
        ({"data": '"text"', "content_type": "application/json"}, "JSON object"),
        (
            {"data": "[" * 100_000 + "]" * 100_000, "content_type": "application/json"},
            "not valid JSON",
        ),
        ({"data": '{"a":' * 65 + "1" + "}" * 65, "content_type": "application/json"}, "deeply"),
        ({"data": "[" + "1," * 100_000 + "1]", "content_type": "application/json"}, "too many"),
        ({"data": '{"prompt": "x", "steps": NaN}', "content_type": "application/json"}, "JSON"),
    ],
)
def test_bad_bodies_are_400_bad_request(
    client: FlaskClient, kwargs: dict[str, str], fragment: str
) -> None:
    resp = client.post("/v1/generate", **kwargs)
    assert resp.status_code == 400
    error = body(resp)["error"]
    assert error["code"] == "bad_request"
    assert fragment in error["message"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "prompt=a cat", "content_type": "application/x-www-form-urlencoded"},
        {"data": '{"prompt": "x"}'},
        {"data": '{"prompt": "x"}', "content_type": "text/plain"},
        {"data": "<prompt>x</prompt>", "content_type": "application/xml"},
    ],
)
@pytest.mark.parametrize("route", ["/v1/generate", "/v1/jobs", "/v1/templates/solid/jobs"])
def test_non_json_bodies_are_415(client: FlaskClient, kwargs: dict[str, str], route: str) -> None:
    resp = client.post(route, **kwargs)
    assert resp.status_code == 415
    error = body(resp)["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": ["a"]}, "prompt"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "steps": 10_000}, "steps"),
        ({"prompt": "x", "width": "512"}, "width"),
        ({"prompt": "x", "cfg": "high"}, "cfg"),
        ({"prompt": "x", "scheduler": "fast"}, "scheduler"),
        ({"prompt": "x", "unknown": 1}, "unknown"),
        ({"prompt": "x", "timeout_s": -1}, "timeout_s"),
        ({"prompt": "x", "timeout_s": "soon"}, "timeout_s"),
        ({"prompt": "x", "cache": "yes"}, "cache"),
        ({"prompt": "x", "template": 5}, "template"),
        ({"prompt": "x" * 10_001}, "prompt"),
    ],
)
def test_invalid_parameters_are_400_naming_the_field(
    client: FlaskClient, fake: FakeComfyUI, payload: dict[str, object], field: str
) -> None:
    resp = client.post("/v1/generate", json=payload)
    assert resp.status_code == 400
    error = body(resp)["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == field
    assert fake.submissions == []


def test_ten_megabyte_prompt_is_refused_without_reaching_comfyui(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    resp = client.post("/v1/generate", json={"prompt": "x" * 10 * 2**20})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "prompt"
    assert fake.submissions == []


def test_body_over_max_body_mb_is_413(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], max_body_mb=0.01).test_client()
    resp = client.post("/v1/generate", json={"prompt": "x" * 20_000})
    assert resp.status_code == 413
    assert body(resp)["error"]["code"] == "payload_too_large"


def test_unknown_template_is_404(client: FlaskClient) -> None:
    resp = client.post("/v1/generate", json={"template": "nope", "prompt": "x"})
    assert resp.status_code == 404
    assert body(resp)["error"] == {
        "code": "not_found",
        "message": "no template named 'nope'",
        "details": {"template": "nope"},
    }


EXAMPLES = Path(__file__).parent.parent / "examples" / "templates"


def test_comfyui_rejecting_the_graph_is_502_with_the_node(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([fake.url], templates_dir=str(EXAMPLES)).test_client()
    resp = client.post("/v1/generate", json={"template": "invalid"})
    assert resp.status_code == 502
    error = body(resp)["error"]
    assert error["code"] == "generation_failed"
    assert error["details"]["node_id"] == "1"
    assert error["details"]["node_type"] == "EmptyImage"
    assert "smaller than min" in error["details"]["message"]
    job = body(client.get(f"/v1/jobs/{error['details']['job_id']}"))
    assert job["status"] == "failed"


def test_a_model_no_backend_has_is_400_naming_the_field(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    resp = client.post("/v1/generate", json={"prompt": "x", "checkpoint": "missing.ckpt"})
    assert resp.status_code == 400
    error = body(resp)["error"]
    assert error["details"]["field"] == "checkpoint"
    assert "random-sd15-fp16.safetensors" in error["message"]  # what is available
    assert fake.submissions == []


def test_execution_error_is_502_with_node_and_no_paths(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    fake.fail_next_execution("2", message="boom at /home/comfy/ComfyUI/nodes.py line 3")
    resp = client.post("/v1/generate", json={"template": "solid"})
    assert resp.status_code == 502
    error = body(resp)["error"]
    assert error["code"] == "generation_failed"
    assert error["details"]["node_id"] == "2"
    assert error["details"]["node_type"] == "ImageInvert"
    assert "boom" in error["message"]
    assert "/home/comfy" not in resp.get_data(as_text=True)
    assert "Traceback" not in resp.get_data(as_text=True)


def test_comfyui_down_is_503_with_retry_after(fake: FakeComfyUI, make_app: MakeApp) -> None:
    app = make_app([fake.url])
    client = app.test_client()
    fake.stop()
    pool = app.extensions["comfygate"].pool
    assert wait_for(lambda: not pool.any_healthy(), 10)
    resp = client.post("/v1/generate", json={"template": "solid"})
    assert resp.status_code == 503
    assert body(resp)["error"]["code"] == "backend_unavailable"
    assert resp.headers["Retry-After"] == "5"
    assert fake.url not in resp.get_data(as_text=True)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_no_reachable_backend_at_start_is_503(make_app: MakeApp) -> None:
    client = make_app(["http://127.0.0.1:9"]).test_client()
    resp = client.post("/v1/generate", json={"template": "solid"})
    assert resp.status_code == 503
    assert "127.0.0.1:9" not in resp.get_data(as_text=True)


def test_timeout_is_504_and_the_job_is_interrupted(client: FlaskClient, fake: FakeComfyUI) -> None:
    fake.service_time_s = 30
    resp = client.post("/v1/generate", json={"template": "solid", "timeout_s": 0.5})
    assert resp.status_code == 504
    error = body(resp)["error"]
    assert error["code"] == "timeout"
    job = body(client.get(f"/v1/jobs/{error['details']['job_id']}"))
    assert job["status"] == "cancelled"
    assert job["error"]["code"] == "timeout"
    assert wait_for(lambda: comfy_idle(fake.url), 5), "the job kept ComfyUI busy"


def test_timeout_is_capped_by_request_timeout_s(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], request_timeout_s=0.3).test_client()
    fake.service_time_s = 30
    resp = client.post("/v1/generate", json={"template": "solid", "timeout_s": 100})
    assert resp.status_code == 504
    assert body(resp)["error"]["details"]["timeout_s"] == 0.3


@pytest.mark.parametrize(
    "path",
    [
        "/v1/outputs/../../etc/passwd",
        "/v1/outputs/x/..%2F..%2Fetc%2Fpasswd",
        "/v1/outputs/0123456789abcdef0123456789abcdef/..%2Fjobs.sqlite3",
        "/v1/outputs/0123456789abcdef0123456789abcdef/%2Fetc%2Fpasswd",
        "/v1/outputs/..%2F..%2F/jobs.sqlite3",
        "/v1/outputs/0123456789abcdef0123456789abcdef/3-0.png",
        "/v1/outputs/%2e%2e/%2e%2e/etc/passwd",
        "/v1/outputs/webhook-secret/x.png",
    ],
)
def test_output_traversal_is_404(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert body(resp)["error"]["code"] == "not_found"


def test_output_of_another_job_is_404(client: FlaskClient) -> None:
    first = body(
        client.post(
            "/v1/generate", json={"template": "solid"}, headers={"Accept": "application/json"}
        )
    )
    second = body(
        client.post(
            "/v1/generate", json={"template": "solid"}, headers={"Accept": "application/json"}
        )
    )
    name = first["outputs"][0]["filename"]
    assert client.get(f"/v1/outputs/{first['id']}/{name}").status_code == 200
    assert client.get(f"/v1/outputs/{second['id']}/{name}x").status_code == 404


def test_unknown_route_and_wrong_method_are_json(client: FlaskClient) -> None:
    resp = client.get("/v1/nothing")
    assert resp.status_code == 404
    assert body(resp)["error"]["code"] == "not_found"
    resp = client.get("/v1/generate")
    assert resp.status_code == 405
    assert body(resp)["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


def test_templates_routes(client: FlaskClient) -> None:
    listing = body(client.get("/v1/templates"))["templates"]
    assert {"txt2img", "solid"} <= {t["name"] for t in listing}
    txt2img = body(client.get("/v1/templates/txt2img"))
    schema = txt2img["parameters"]
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["steps"]["anyOf"][0]["minimum"] == 1
    assert schema["properties"]["steps"]["default"] == 20
    assert client.get("/v1/templates/nope").status_code == 404


def test_health_readiness_and_backends(client: FlaskClient, fake: FakeComfyUI) -> None:
    assert body(client.get("/healthz")) == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    [backend] = body(client.get("/v1/backends"))["backends"]
    assert backend["status"] == "healthy"
    assert backend["websocket"] == "connected"
    assert fake.url not in client.get("/v1/backends").get_data(as_text=True)


def test_request_id_is_echoed_or_made(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"]
        == "abc-123"
    )
    made = client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert made != "bad id!"
    assert len(made) == 16


def test_cors_only_when_configured(fake: FakeComfyUI, make_app: MakeApp) -> None:
    closed = make_app([fake.url]).test_client()
    assert (
        "Access-Control-Allow-Origin"
        not in closed.get("/healthz", headers={"Origin": "https://app.example"}).headers
    )
    open_ = make_app([fake.url], cors_origins="https://app.example").test_client()
    resp = open_.get("/healthz", headers={"Origin": "https://app.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = open_.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_job_cancelled_while_generate_waits_is_409(app: Flask, fake: FakeComfyUI) -> None:
    """Someone cancels the job a synchronous request waits on: that is not a failed
    generation (it was a 502); it is a conflict naming the job."""
    fake.hold()
    answers: list[Any] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            app.test_client().post("/v1/generate", json={"template": "solid", "cache": False})
        )
    )
    waiting.start()
    client = app.test_client()
    assert wait_for(lambda: len(body(client.get("/v1/jobs"))["jobs"]) == 1)
    job_id = body(client.get("/v1/jobs"))["jobs"][0]["id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
    waiting.join(30)
    fake.release()
    [resp] = answers
    assert resp.status_code == 409
    error = body(resp)["error"]
    assert error["code"] == "conflict"
    assert error["details"]["job_id"] == job_id
    assert "cancelled" in error["message"]
