"""The managed local ComfyUI child process, against the real ComfyUI 0.3.75 install."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from PIL import Image

from comfygate.comfy.local import (
    LocalComfyUI,
    LocalComfyUIConfig,
    LocalComfyUINotInstalled,
    LocalComfyUIStartError,
)
from tests.real_comfyui import RANDOM_SD15, ComfyUIInstallPaths, start_or_fail

pytestmark = pytest.mark.comfyui

TIMEOUT = 30.0  # every HTTP request below


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


def get_json(http: requests.Session, url: str) -> Any:
    response = http.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def port_of(comfyui: LocalComfyUI) -> int:
    return int(comfyui.url.rsplit(":", 1)[1])


def assert_process_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # its process group (start_new_session) is gone too


def assert_port_closed(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        assert sock.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def checkpoint_names(object_info: Any) -> list[str]:
    names: list[str] = object_info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    return names


def test_system_stats(real_comfyui: LocalComfyUI, http: requests.Session) -> None:
    stats = get_json(http, f"{real_comfyui.url}/system_stats")
    system = stats["system"]
    assert system["comfyui_version"] == "0.3.75"
    argv = system["argv"]
    assert "--cpu" in argv
    assert argv[argv.index("--port") + 1] == str(port_of(real_comfyui))
    assert argv[argv.index("--base-directory") + 1] == str(real_comfyui.base_dir)
    assert [d["type"] for d in stats["devices"]] == ["cpu"]
    assert real_comfyui.url.startswith("http://127.0.0.1:")
    assert real_comfyui.pid is not None


def test_object_info_lists_the_random_checkpoint(
    real_comfyui: LocalComfyUI, http: requests.Session
) -> None:
    object_info = get_json(http, f"{real_comfyui.url}/object_info")
    assert RANDOM_SD15 in checkpoint_names(object_info)
    assert {"EmptyImage", "ImageInvert", "SaveImage", "KSampler"} <= object_info.keys()


def run_prompt(url: str, http: requests.Session, prompt: dict[str, Any]) -> dict[str, Any]:
    """POST a prompt, wait for its end on the websocket, return its history.

    The end is ``executing`` with ``node: null``: ComfyUI sends ``execution_success`` before
    it writes /history, so reading /history on execution_success races."""
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(
        f"ws://{url.removeprefix('http://')}/ws?clientId={client_id}", timeout=TIMEOUT
    )
    try:
        response = http.post(
            f"{url}/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        deadline = time.monotonic() + 60.0
        while True:
            assert time.monotonic() < deadline, "the prompt did not end within 60 s"
            frame = ws.recv()
            if not isinstance(frame, str):
                continue  # binary preview frames
            message = json.loads(frame)
            if message["data"].get("prompt_id") != prompt_id:
                continue
            assert message["type"] != "execution_error", message
            if message["type"] == "executing" and message["data"].get("node") is None:
                break
    finally:
        ws.close()
    history: dict[str, Any] = get_json(http, f"{url}/history/{prompt_id}")[prompt_id]
    assert history["status"]["status_str"] == "success"
    return history


def test_model_free_prompt_runs_and_its_png_can_be_fetched(
    real_comfyui: LocalComfyUI, http: requests.Session
) -> None:
    prefix = f"gw_modelfree_{uuid.uuid4().hex[:8]}"  # unique: not served from ComfyUI's cache
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xFF0000},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix},
        },
    }
    history = run_prompt(real_comfyui.url, http, prompt)
    [image] = history["outputs"]["3"]["images"]
    assert image == {"filename": f"{prefix}_00001_.png", "subfolder": "", "type": "output"}
    response = http.get(f"{real_comfyui.url}/view", params=image, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(response.content)) as png:
        assert png.size == (64, 64)
        assert png.convert("RGB").getpixel((10, 10)) == (0, 255, 255)  # red, inverted
    assert (real_comfyui.base_dir / "output" / image["filename"]).read_bytes() == response.content


def test_watchdog_restarts_a_killed_child_on_the_same_port(
    fresh_comfyui: LocalComfyUI, http: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    url, old_pid = fresh_comfyui.url, fresh_comfyui.pid
    assert old_pid is not None
    fresh_comfyui.watch(backoff_initial_s=0.5, backoff_max_s=4.0)
    with caplog.at_level(logging.INFO, logger="comfygate.comfy.local"):
        fresh_comfyui.kill_for_test()
        assert fresh_comfyui.wait_for_restarts(1, timeout_s=180.0), "no restart within 180 s"
    assert fresh_comfyui.restarts == 1
    assert fresh_comfyui.url == url
    new_pid = fresh_comfyui.pid
    assert new_pid is not None
    assert new_pid != old_pid
    assert_process_gone(old_pid)
    stats = get_json(http, f"{url}/system_stats")
    assert str(fresh_comfyui.base_dir) in stats["system"]["argv"]
    messages = [r.getMessage() for r in caplog.records if r.name == "comfygate.comfy.local"]
    assert any("died" in m and "restarting in 0.5 s" in m for m in messages), messages
    assert any("restarted" in m and url in m for m in messages), messages


def test_stop_leaves_no_process(fresh_comfyui: LocalComfyUI) -> None:
    pid, port = fresh_comfyui.pid, port_of(fresh_comfyui)
    assert pid is not None
    fresh_comfyui.watch()
    fresh_comfyui.stop()
    assert fresh_comfyui.pid is None
    assert_process_gone(pid)
    assert_port_closed(port)
    fresh_comfyui.stop()  # idempotent


def test_missing_install_says_to_run_setup(tmp_path: Path) -> None:
    comfyui = LocalComfyUI(LocalComfyUIConfig(home=tmp_path / "nowhere", base_dir=tmp_path / "b"))
    with pytest.raises(LocalComfyUINotInstalled, match=r"run `comfygate comfyui install`"):
        comfyui.start()
    assert comfyui.pid is None
    comfyui.stop()


def test_install_whose_main_py_is_gone_is_not_installed(
    comfyui_install: ComfyUIInstallPaths, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "venv" / "bin" / "python").symlink_to(comfyui_install.python)
    (home / "main_py_path").write_text(f"{tmp_path / 'gone' / 'main.py'}\n")
    comfyui = LocalComfyUI(LocalComfyUIConfig(home=home, base_dir=tmp_path / "b"))
    with pytest.raises(
        LocalComfyUINotInstalled, match=r"does not exist.*comfygate comfyui install"
    ):
        comfyui.start()


def test_child_exiting_at_startup_raises_with_the_log_tail(
    comfyui_install: ComfyUIInstallPaths, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        comfyui_install.config(tmp_path / "base"), extra_args=("--no-such-flag",)
    )
    comfyui = LocalComfyUI(config)
    try:
        with pytest.raises(LocalComfyUIStartError, match="exited with code 2") as info:
            comfyui.start()
        assert "unrecognized arguments: --no-such-flag" in info.value.log_tail
        assert "unrecognized arguments" in str(info.value)
        assert comfyui.pid is None
    finally:
        comfyui.stop()


def test_startup_deadline_kills_the_child(
    comfyui_install: ComfyUIInstallPaths, tmp_path: Path
) -> None:
    config = dataclasses.replace(comfyui_install.config(tmp_path / "base"), startup_timeout_s=0.5)
    comfyui = LocalComfyUI(config)
    try:
        with pytest.raises(LocalComfyUIStartError, match=r"did not answer .* within"):
            comfyui.start()
        assert comfyui.pid is None
    finally:
        comfyui.stop()


def test_every_models_dir_and_the_users_extra_model_paths_are_visible(
    comfyui_install: ComfyUIInstallPaths, tmp_path: Path, http: requests.Session
) -> None:
    second = tmp_path / "more models"  # a space in the path on purpose
    (second / "checkpoints").mkdir(parents=True)
    (second / "checkpoints" / "second.safetensors").write_bytes(b"")
    (second / "loras").mkdir()
    (second / "loras" / "tiny-lora.safetensors").write_bytes(b"")
    (second / "clip").mkdir()  # legacy name of text_encoders
    (second / "clip" / "legacy-te.safetensors").write_bytes(b"")
    users = tmp_path / "users models"
    (users / "vae").mkdir(parents=True)
    (users / "vae" / "users-vae.safetensors").write_bytes(b"")
    users_yaml = tmp_path / "extra_model_paths.yaml"
    users_yaml.write_text(f"mine:\n  base_path: '{users}'\n  vae: vae/\n")
    config = dataclasses.replace(
        comfyui_install.config(tmp_path / "base"),
        models_dirs=[comfyui_install.models_dir, second],
        extra_model_paths=users_yaml,
        log_file=tmp_path / "logs" / "child.log",
    )
    comfyui = LocalComfyUI(config)
    try:
        start_or_fail(comfyui)
        checkpoints = get_json(http, f"{comfyui.url}/models/checkpoints")
        assert {RANDOM_SD15, "second.safetensors"} <= set(checkpoints)
        assert get_json(http, f"{comfyui.url}/models/loras") == ["tiny-lora.safetensors"]
        assert "legacy-te.safetensors" in get_json(http, f"{comfyui.url}/models/text_encoders")
        assert "users-vae.safetensors" in get_json(http, f"{comfyui.url}/models/vae")
    finally:
        comfyui.stop()
    assert "Starting server" in (tmp_path / "logs" / "child.log").read_text()


def test_comfyui_install_sees_the_real_install_as_complete(
    comfyui_install: ComfyUIInstallPaths,
) -> None:
    """`comfygate comfyui install` on the install the setup made has nothing to do (it only
    reads: the shared install is never changed)."""
    from comfygate.comfy.install import Installer

    assert Installer(comfyui_install.home).complete()
