"""Several real ComfyUI 0.3.75 processes behind one gateway: spread by load, capability
routing, a backend killed mid-job, one coming back, all down; and the result cache."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from comfygate.comfy.local import LocalComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import comfy_idle, wait_for
from tests.real_comfyui import ComfyUIInstallPaths, start_or_fail
from tests.test_jobs_api import finished, status_of, submit
from tests.test_real_comfyui_jobs import comfy_prompts_of

pytestmark = pytest.mark.comfyui

SD = {"prompt": "a harbour", "width": 64, "height": 64, "steps": 2}


@pytest.fixture
def bare_comfyui(comfyui_install: ComfyUIInstallPaths, tmp_path: Path) -> Iterator[LocalComfyUI]:
    """A real ComfyUI with no model files at all."""
    empty = tmp_path / "no-models"
    empty.mkdir()
    config = dataclasses.replace(comfyui_install.config(tmp_path / "bare"), models_dirs=[empty])
    comfyui = LocalComfyUI(config)
    start_or_fail(comfyui)
    yield comfyui
    comfyui.stop()


def history_size(url: str) -> int:
    return len(requests.get(f"{url}/history", timeout=10).json())


def test_several_real_backends(
    make_app: MakeApp,
    real_comfyui: LocalComfyUI,
    fresh_comfyui: LocalComfyUI,
    bare_comfyui: LocalComfyUI,
) -> None:
    a, b, c = real_comfyui, fresh_comfyui, bare_comfyui
    b.watch(backoff_initial_s=0.2)
    client = make_app(
        [f"a={a.url}", f"b={b.url}", f"c={c.url}"],
        max_in_flight_per_backend=1,
        read_timeout_s=60.0,
    ).test_client()
    loader = requests.get(f"{c.url}/object_info/CheckpointLoaderSimple", timeout=10).json()
    assert loader["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == []

    # Spread by load, and never on the backend without the checkpoint.
    jobs = [submit(client, {**SD, "seed": i}) for i in range(4)]
    for job in jobs:
        assert finished(client, job["id"], 300)["status"] == "succeeded"
    per_backend = {
        name: sum(comfy_prompts_of(x.url, j["id"]) for j in jobs)
        for name, x in (("a", a), ("b", b), ("c", c))
    }
    assert per_backend["c"] == 0
    assert per_backend["a"] >= 1
    assert per_backend["b"] >= 1

    # A model-free job may go to the bare one.
    c_before = history_size(c.url)
    solid = [submit(client, {"template": "solid", "color": i}) for i in range(3)]
    for job in solid:
        finished(client, job["id"], 60)
    assert history_size(c.url) > c_before

    # Kill the backend running a job: the job finishes on the other one. Both are watched
    # (the session's ComfyUI too), so the killed one comes back on the same port.
    victim = submit(client, {**SD, "steps": 8, "seed": 99})
    assert wait_for(lambda: status_of(client, victim["id"]) == "running", 120)
    dead, alive = (b, a) if comfy_prompts_of(b.url, victim["id"]) else (a, b)
    dead_name = "b" if dead is b else "a"
    restarts = dead.restarts
    dead.kill_for_test()
    done = finished(client, victim["id"], 300)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert comfy_prompts_of(alive.url, victim["id"]) == 1

    # The killed backend comes back and takes jobs again.
    assert dead.wait_for_restarts(restarts + 1, 120)

    def health() -> dict[str, str]:
        return {x["name"]: x["status"] for x in body(client.get("/v1/backends"))["backends"]}

    assert wait_for(lambda: health()[dead_name] == "healthy", 60)
    again = [submit(client, {**SD, "seed": 200 + i}) for i in range(2)]
    for job in again:
        finished(client, job["id"], 300)
    assert sum(comfy_prompts_of(dead.url, j["id"]) for j in again) >= 1


def test_all_real_backends_down(
    make_app: MakeApp, fresh_comfyui: LocalComfyUI, bare_comfyui: LocalComfyUI
) -> None:
    client = make_app([fresh_comfyui.url, bare_comfyui.url]).test_client()
    assert client.get("/readyz").status_code == 200
    cached = {"template": "solid", "color": 3, "width": 16, "height": 16}
    before = client.post("/v1/generate", json=cached)
    assert before.status_code == 200
    fresh_comfyui.stop()
    bare_comfyui.stop()
    assert wait_for(lambda: client.get("/readyz").status_code == 503, 30)
    resp = client.post("/v1/generate", json={"template": "solid"})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]
    # What the cache holds is still answered.
    again = client.post("/v1/generate", json=cached)
    assert again.status_code == 200
    assert again.data == before.data


def test_cache_hit_sends_nothing_to_comfyui(make_app: MakeApp, real_comfyui: LocalComfyUI) -> None:
    client = make_app([real_comfyui.url], read_timeout_s=60.0).test_client()
    request = {**SD, "seed": 4242}
    first = client.post("/v1/generate", json=request)
    assert first.status_code == 200
    # The answer comes at execution_success: ComfyUI writes its history just after.
    assert wait_for(lambda: comfy_idle(real_comfyui.url))
    before = history_size(real_comfyui.url)
    again = client.post("/v1/generate", json=request)
    assert again.status_code == 200
    assert again.data == first.data
    assert history_size(real_comfyui.url) == before  # no new prompt reached ComfyUI
    assert body(client.get(f"/v1/jobs/{again.headers['X-Job-Id']}"))["cached"] is True
