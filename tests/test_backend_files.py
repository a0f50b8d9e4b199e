"""A job's files on ComfyUI's side: each job writes into its own output subfolder (so the scan
ComfyUI's SaveImage does to number a new file stays small), the gateway still serves them
under the same names, and a ComfyUI on this host is swept of them once they are collected."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from comfygate.comfy.client import OutputRef
from comfygate.comfy.folders import LocalFolders, job_folder
from comfygate.errors import BackendUnavailable
from comfygate.gateway import Gateway
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for


def png_uri(colour: tuple[int, int, int]) -> tuple[str, bytes]:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), buf.getvalue()


def load_invert_save(uri: str) -> dict[str, Any]:
    """A model-free raw workflow that reads an uploaded image."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": uri}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }


def test_each_job_writes_into_its_own_subfolder(make_app: MakeApp, fake: FakeComfyUI) -> None:
    client = make_app([fake.url]).test_client()
    for colour in (0xFF0000, 0x00FF00):
        resp = client.post(
            "/v1/generate",
            json={"template": "solid", "width": 8, "height": 8, "color": colour},
            headers={"Accept": "application/json"},
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)
        job = body(resp)
        [output] = job["outputs"]
        assert output["filename"] == "3-0.png"  # the name the gateway stores and serves
        served = client.get(output["url"])
        assert served.status_code == 200
        # On ComfyUI's side: the job's own folder, numbered from 1 (the scan saw no other job).
        assert fake.file("out_00001_.png", f"comfygate/{job_folder(job['id'])}") == served.data
    assert fake.file("out_00002_.png", f"comfygate/{job_folder(job['id'])}") is None


def test_the_sweep_keeps_what_an_unfinished_job_needs(
    make_app: MakeApp, fake: FakeComfyUI, tmp_path: Path
) -> None:
    """The sweep's rules, on folders laid out as a ComfyUI on this host has them (the fake
    keeps its own files in memory): a job's output folder goes when it ends, a shared input
    image only when no unfinished job uses it, and nothing else is touched."""
    app = make_app([fake.url], allow_raw_workflows=True)
    gateway: Gateway = app.extensions["comfygate"]
    assert gateway.jobs is not None
    assert gateway.pool is not None
    [backend] = gateway.pool.backends
    folders = LocalFolders(tmp_path / "comfy")
    gateway.jobs.local_folders[backend] = folders
    client = app.test_client()
    uri, _ = png_uri((9, 9, 9))

    fake.hold()
    ids = []
    for _ in range(2):
        resp = client.post(
            "/v1/workflows/run", json={"workflow": load_invert_save(uri), "wait": False}
        )
        assert resp.status_code == 202, resp.get_data(as_text=True)
        ids.append(body(resp)["id"])
    assert wait_for(lambda: len(fake.submissions) == 2)
    image = fake.submissions[0]["prompt"]["1"]["inputs"]["image"]
    for job_id in ids:
        (folders.job_outputs(job_id)).mkdir(parents=True)
        (folders.job_outputs(job_id) / "out_00001_.png").write_bytes(b"png")
    folders.input.mkdir(parents=True)
    (folders.input / image).write_bytes(b"image")
    (folders.input / "someone-elses.png").write_bytes(b"image")
    (folders.output / "ComfyUI_00001_.png").write_bytes(b"png")

    first, second = ids
    assert client.delete(f"/v1/jobs/{first}").status_code == 200
    assert wait_for(lambda: not folders.job_outputs(first).exists())
    assert (folders.input / image).exists()  # the second job still needs it
    assert folders.job_outputs(second).exists()

    fake.release()
    assert wait_for(lambda: body(client.get(f"/v1/jobs/{second}"))["status"] == "succeeded")
    assert wait_for(lambda: not (folders.input / image).exists())
    assert not folders.job_outputs(second).exists()
    assert (folders.input / "someone-elses.png").exists()
    assert (folders.output / "ComfyUI_00001_.png").exists()


def test_the_retention_sweep_removes_what_a_job_left_on_comfyui(
    make_app: MakeApp, fake: FakeComfyUI, tmp_path: Path
) -> None:
    """Files written after a job's end (a cancelled prompt ComfyUI still ran) go with the job."""
    app = make_app([fake.url], job_retention_s=0.2)
    gateway: Gateway = app.extensions["comfygate"]
    assert gateway.jobs is not None
    assert gateway.pool is not None
    [backend] = gateway.pool.backends
    client = app.test_client()
    resp = client.post("/v1/generate", json={"template": "solid", "width": 8, "height": 8})
    assert resp.status_code == 200
    job_id = resp.headers["X-Job-Id"]
    # Known as local only from now on: the sweep at the job's end did not run for it.
    folders = LocalFolders(tmp_path / "comfy")
    gateway.jobs.local_folders[backend] = folders
    late = folders.job_outputs(job_id) / "out_00002_.png"
    late.parent.mkdir(parents=True)
    late.write_bytes(b"png")

    jobs = gateway.jobs
    assert wait_for(lambda: jobs.sweep() == 1, 5)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert not folders.job_outputs(job_id).exists()


@pytest.mark.comfyui
def test_local_comfyui_outputs_land_in_the_jobs_subfolder_and_are_swept(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The managed local ComfyUI (no BACKENDS): the job's output is in its own subfolder by
    ComfyUI's own record, the gateway takes it from the disk (``/view`` is out of order here)
    and serves it, and then ComfyUI's copy and the uploaded input are gone."""
    app = make_app([], allow_raw_workflows=True, read_timeout_s=60.0)
    gateway: Gateway = app.extensions["comfygate"]
    assert gateway.local is not None
    assert gateway.pool is not None
    base = gateway.local.base_dir
    client = app.test_client()

    def no_view(ref: OutputRef) -> object:
        raise BackendUnavailable("/view is not to be used for a ComfyUI on this host")

    for backend in gateway.pool.backends.values():
        monkeypatch.setattr(backend.client, "view", no_view)
    uri, _ = png_uri((255, 0, 0))

    resp = client.post("/v1/workflows/run", json={"workflow": load_invert_save(uri)})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    job_id = resp.headers["X-Job-Id"]
    assert Image.open(io.BytesIO(resp.data)).getpixel((0, 0)) == (0, 255, 255)
    history = requests.get(f"{gateway.local.url}/history", timeout=10).json()
    [entry] = history.values()
    [image] = entry["outputs"]["3"]["images"]
    assert image == {
        "filename": "out_00001_.png",
        "subfolder": f"comfygate/{job_folder(job_id)}",
        "type": "output",
    }
    served = client.get(f"/v1/outputs/{job_id}/3-0.png")
    assert served.status_code == 200
    assert served.data == resp.data

    name = entry["prompt"][2]["1"]["inputs"]["image"]
    assert wait_for(lambda: not (base / "output" / "comfygate" / job_folder(job_id)).exists())
    assert wait_for(lambda: not (base / "input" / name).exists())
    assert (base / "output" / "comfygate").is_dir()
    assert client.get(f"/v1/outputs/{job_id}/3-0.png").data == resp.data  # still served
