"""A job's end from ComfyUI's websocket: its outputs as the ``executed`` messages named them,
collected at ``execution_success`` without a /history read; /history when the events may be
incomplete (a reconnect on the way) or did not name any output."""

from __future__ import annotations

import io

from flask.testing import FlaskClient
from PIL import Image

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for


def _history_reads(fake: FakeComfyUI) -> list[str]:
    return [path for method, path in fake.requests_seen if path.startswith("/history/")]


def _prompt_ids(fake: FakeComfyUI) -> list[str]:
    return [str(s["prompt_id"]) for s in fake.submissions]


def test_a_job_is_collected_from_its_events_without_reading_history(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    resp = client.post("/v1/generate", json={"template": "solid", "width": 16, "height": 8})
    assert resp.status_code == 200
    assert Image.open(io.BytesIO(resp.data)).size == (16, 8)
    job = body(client.get(f"/v1/jobs/{resp.headers['X-Job-Id']}"))
    assert job["status"] == "succeeded"
    assert [o["filename"] for o in job["outputs"]] == ["3-0.png"]
    [prompt_id] = _prompt_ids(fake)
    fake.wait_idle()
    assert f"/history/{prompt_id}" not in _history_reads(fake)


def test_a_prompt_comfyui_partly_answers_from_its_cache_still_returns_its_image(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    # cache: false on the gateway, so the same request goes to ComfyUI again, whose own cache
    # answers every node but the job's own SaveImage (its filename_prefix is the job's).
    request = {"template": "solid", "width": 8, "height": 8, "cache": False}
    first = client.post("/v1/generate", json=request)
    second = client.post("/v1/generate", json=request)
    assert first.status_code == second.status_code == 200
    for resp in (first, second):
        assert Image.open(io.BytesIO(resp.data)).size == (8, 8)
    assert len(fake.submissions) == 2
    fake.wait_idle()
    assert _history_reads(fake) == []


def test_after_a_reconnect_the_end_is_read_from_history(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    fake.caching = False
    fake.service_time_s = 0.5
    resp = client.post("/v1/jobs", json={"template": "solid", "width": 8, "height": 8})
    job_id = body(resp)["id"]
    assert wait_for(lambda: body(client.get(f"/v1/jobs/{job_id}"))["status"] == "running")
    fake.drop_websockets()  # what the events said of the job may be incomplete now
    assert wait_for(lambda: body(client.get(f"/v1/jobs/{job_id}"))["status"] == "succeeded")
    done = body(client.get(f"/v1/jobs/{job_id}"))
    assert len(done["outputs"]) == 1
    assert client.get(done["outputs"][0]["url"]).status_code == 200
    [prompt_id] = _prompt_ids(fake)
    assert f"/history/{prompt_id}" in _history_reads(fake)


def test_an_answer_not_yet_read_holds_no_backend_slot(make_app: MakeApp, fake: FakeComfyUI) -> None:
    """The end's bookkeeping waits until a synchronous answer is sent, but the backend's slot
    does not: with room for one job, a second request runs while the first answer is unread,
    and the first result is in the cache once its answer is over."""
    client = make_app([fake.url], max_in_flight_per_backend=1).test_client()
    red = {"template": "solid", "width": 8, "height": 8, "color": 0xFF0000, "timeout_s": 20}
    first = client.post("/v1/generate", json=red, buffered=False)
    assert first.status_code == 200  # its body not read yet: the answer is not over
    # Shorter than the engine's 5 s sweep, which frees the slots of ended jobs too.
    blue = {**red, "color": 0x0000FF, "timeout_s": 3}
    second = client.post("/v1/generate", json=blue)
    assert second.status_code == 200, second.get_data(as_text=True)
    first_pixel = Image.open(io.BytesIO(first.get_data())).getpixel((0, 0))
    assert Image.open(io.BytesIO(second.data)).getpixel((0, 0)) != first_pixel
    first.close()
    again = client.post("/v1/generate", json=red, headers={"Accept": "application/json"})
    assert body(again)["cached"] is True
    assert len(fake.submissions) == 2
