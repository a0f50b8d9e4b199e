"""POST /v1/workflows/run: raw API-format graphs, for the `workflows` scope only, checked
against the node allowlist, with the job's own filename_prefix."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from comfygate.comfy.folders import job_output_prefix
from comfygate.templates import raw
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body

WF_KEY = "workflows-key-0123456789ab"
USER_KEY = "user-key-0123456789abcdef"


def solid(prefix: str = "mine") -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 255},
            "_meta": {"title": "a node"},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


@pytest.fixture
def open_client(fake: FakeComfyUI, make_app: MakeApp) -> FlaskClient:
    return make_app([fake.url], allow_raw_workflows=True).test_client()


def test_off_by_default(client: FlaskClient) -> None:
    resp = client.post("/v1/workflows/run", json={"workflow": solid()})
    assert resp.status_code == 403
    assert body(resp)["error"]["code"] == "forbidden"


def test_needs_the_workflows_scope(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app(
        [fake.url], api_keys=f"{USER_KEY},{WF_KEY}:workflows", allow_raw_workflows=True
    ).test_client()
    assert client.post("/v1/workflows/run", json={"workflow": solid()}).status_code == 401
    resp = client.post(
        "/v1/workflows/run",
        json={"workflow": solid()},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    )
    assert resp.status_code == 403
    resp = client.post(
        "/v1/workflows/run",
        json={"workflow": solid()},
        headers={"Authorization": f"Bearer {WF_KEY}", "Accept": "application/json"},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    job = body(resp)
    assert job["template"] == "workflow"
    # The job is the key's own.
    other = client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {USER_KEY}"})
    assert other.status_code == 404


def test_runs_with_the_jobs_own_prefix(open_client: FlaskClient, fake: FakeComfyUI) -> None:
    resp = open_client.post("/v1/workflows/run", json={"workflow": solid("../../etc/x")})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type == "image/png"
    assert Image.open(io.BytesIO(resp.data)).size == (16, 8)
    job_id = resp.headers["X-Job-Id"]
    submitted = fake.submissions[-1]
    graph = submitted.get("prompt", submitted)
    assert graph["2"]["inputs"]["filename_prefix"] == job_output_prefix(job_id)
    assert "_meta" not in graph["1"]


def test_async_run(open_client: FlaskClient) -> None:
    resp = open_client.post("/v1/workflows/run", json={"workflow": solid(), "wait": False})
    assert resp.status_code == 202
    assert resp.headers["Location"] == f"/v1/jobs/{body(resp)['id']}"


def test_load_image_from_a_data_uri(open_client: FlaskClient, fake: FakeComfyUI) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (9, 9, 9)).save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uri}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    resp = open_client.post("/v1/workflows/run", json={"workflow": workflow})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    graph = fake.submissions[-1].get("prompt", fake.submissions[-1])
    name = graph["1"]["inputs"]["image"]
    assert raw.GATEWAY_IMAGE_NAME.fullmatch(name)
    assert fake.file(name, "", "input") == buf.getvalue()


@pytest.mark.parametrize(
    ("workflow", "field", "fragment"),
    [
        ({"1": {"class_type": "LoadImage", "inputs": {"image": "x.png [output]"}}}, "image", "URI"),
        (
            {"1": {"class_type": "LoadImageOutput", "inputs": {"image": "a.png [output]"}}},
            "class_type",
            "reads files by name",
        ),
        (
            {"1": {"class_type": "CheckpointSave", "inputs": {"filename_prefix": "../x"}}},
            "class_type",
            "writes files",
        ),
        ({"1": {"class_type": "OpenAIDalle3", "inputs": {}}}, "class_type", "allowlist"),
        ({"1": {"class_type": "RegexMatch", "inputs": {}}}, "class_type", "regular expression"),
        ({"1": {"class_type": "SomeCustomNode", "inputs": {}}}, "class_type", "allowlist"),
        ({"1": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}}, "images", "links"),
        ({"1": {"class_type": "SaveImage"}}, "workflow.1", "API format"),
        ({"../1": {"class_type": "SaveImage", "inputs": {}}}, "workflow.../1", "letters"),
        ({}, "workflow", "non-empty"),
        ([], "workflow", "non-empty"),
        (
            {str(i): {"class_type": "EmptyImage", "inputs": {}} for i in range(501)},
            "workflow",
            "limit",
        ),
    ],
)
def test_refused_workflows(
    open_client: FlaskClient, fake: FakeComfyUI, workflow: Any, field: str, fragment: str
) -> None:
    resp = open_client.post("/v1/workflows/run", json={"workflow": workflow})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"].endswith(field), error
    assert fragment in error["message"], error["message"]
    assert fake.submissions == []


def test_cost_limits_hold_in_raw_workflows(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], allow_raw_workflows=True, max_pixels=100).test_client()
    resp = client.post("/v1/workflows/run", json={"workflow": solid()})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "width"


def test_the_allowlist_setting(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app(
        [fake.url], allow_raw_workflows=True, raw_workflow_nodes="SaveImage"
    ).test_client()
    resp = client.post("/v1/workflows/run", json={"workflow": solid()})
    assert resp.status_code == 400
    assert "EmptyImage" in body(resp)["error"]["message"]
    assert raw.allowed_nodes(["default", "MyNode"]) == raw.DEFAULT_ALLOWED | {"MyNode"}
    assert not raw.DEFAULT_ALLOWED & set(raw.DENIED)


def test_unknown_keys_and_bad_options(open_client: FlaskClient) -> None:
    for extra, field in (({"template": "x"}, "template"), ({"wait": "no"}, "wait")):
        resp = open_client.post("/v1/workflows/run", json={"workflow": solid(), **extra})
        assert resp.status_code == 400
        assert body(resp)["error"]["details"]["field"] == field
