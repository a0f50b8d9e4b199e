"""A backend on this host (``BACKEND_DIRS``, or the managed local ComfyUI): a job's outputs are
taken from ComfyUI's folder on disk instead of ``/view``, the same bytes; a path that leads out
of ComfyUI's folder is never read; a wrong folder falls back to ``/view``; a name that is no
backend stops the gateway at start."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from comfygate.comfy.client import OutputRef
from comfygate.comfy.folders import LocalFolders, job_folder
from comfygate.config import ConfigError
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for


@pytest.fixture
def comfy_dir(tmp_path: Path) -> Path:
    path = tmp_path / "ComfyUI"
    path.mkdir()
    return path


@pytest.fixture
def fake_on_disk(comfy_dir: Path) -> Iterator[FakeComfyUI]:
    with FakeComfyUI(base_dir=comfy_dir) as server:
        yield server


def _views(fake: FakeComfyUI) -> list[str]:
    return [path for _, path in fake.requests_seen if path.startswith("/view")]


def test_outputs_come_from_the_disk_without_view(
    make_app: MakeApp, fake_on_disk: FakeComfyUI, comfy_dir: Path
) -> None:
    fake = fake_on_disk
    app = make_app([f"local-gpu={fake.url}"], backend_dirs=[f"local-gpu={comfy_dir}"])
    client = app.test_client()
    resp = client.post("/v1/generate", json={"template": "solid", "width": 16, "height": 8})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert Image.open(io.BytesIO(resp.data)).size == (16, 8)
    job_id = resp.headers["X-Job-Id"]
    assert resp.data == fake.file("out_00001_.png", f"comfygate/{job_folder(job_id)}")
    assert _views(fake) == []
    # ComfyUI's copy is removed once collected; the gateway's stays and is served.
    assert wait_for(lambda: not (comfy_dir / "output" / "comfygate" / job_folder(job_id)).exists())
    job = body(client.get(f"/v1/jobs/{job_id}"))
    assert job["status"] == "succeeded"
    assert client.get(job["outputs"][0]["url"]).data == resp.data


def test_a_folder_that_is_not_the_backends_falls_back_to_view(
    make_app: MakeApp, fake: FakeComfyUI, comfy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fake keeps its files in memory here: nothing is in the named folder."""
    app = make_app([fake.url], backend_dirs=[f"backend-1={comfy_dir}"])
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="comfygate.jobs.collect"):
        for colour in (1, 2):
            resp = client.post(
                "/v1/generate",
                json={"template": "solid", "width": 8, "height": 8, "color": colour},
            )
            assert resp.status_code == 200, resp.get_data(as_text=True)
            assert Image.open(io.BytesIO(resp.data)).size == (8, 8)
    assert len(_views(fake)) == 2
    warned = [r for r in caplog.records if "BACKEND_DIRS" in r.getMessage()]
    assert len(warned) == 1  # once per backend, not once per job


def test_an_output_path_that_leads_out_of_comfyuis_folder_is_never_read(
    comfy_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not ComfyUI's")
    output = comfy_dir / "output"
    (output / "comfygate").mkdir(parents=True)
    os.symlink(tmp_path, output / "comfygate" / "link")
    (output / "comfygate" / "ok.png").write_bytes(b"png")
    folders = LocalFolders(comfy_dir)

    def ref(filename: str, subfolder: str, kind: str = "output") -> OutputRef:
        return OutputRef("9", filename, subfolder, kind, "images")

    assert folders.file(ref("ok.png", "comfygate")) == str(output / "comfygate" / "ok.png")
    for bad in (
        ref("secret.png", "../.."),
        ref("secret.png", str(tmp_path)),
        ref(str(secret), ""),
        ref("secret.png", "comfygate/link"),  # a symlink out of the folder
        ref("ok.png", "comfygate", "models"),  # no such kind of folder
        ref("", "comfygate"),
        ref("ok.png\x00", "comfygate"),
    ):
        assert folders.file(bad) is None, bad


def test_backend_dirs_must_name_a_backend_and_a_directory(
    make_app: MakeApp, fake: FakeComfyUI, comfy_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"BACKEND_DIRS names 'gpu'.*backend-1"):
        make_app([fake.url], backend_dirs=[f"gpu={comfy_dir}"])
    with pytest.raises(ConfigError, match="not a directory"):
        make_app([fake.url], backend_dirs=[f"backend-1={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="not name=path"):
        make_app([fake.url], backend_dirs=[str(comfy_dir)])
