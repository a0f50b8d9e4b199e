"""`comfygate serve` as a user runs it: one clear line for a bad setting, JSON logs with a
request id, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from comfygate.sdk import Client
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import parse_sse, wait_for
from tests.processes import GatewayProcess, free_port


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMFYGATE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "comfygate", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--backend", "localhost:8188"], {}, "not an http(s) URL"),
        (["--port", "70000", "--backend", "http://127.0.0.1:1"], {}, "PORT"),
        ([], {"COMFYGATE_BACKENDS": "http://h:99999999"}, "invalid port"),
        ([], {"COMFYGATE_LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        (["--data-dir", "/proc/nope", "--backend", "http://127.0.0.1:1"], {}, "not writable"),
    ],
)
def test_bad_settings_stop_serve_with_one_line(
    args: list[str], env: dict[str, str], fragment: str
) -> None:
    proc = serve(*args, env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_json_logs_sigterm_and_a_graceful_stop(tmp_path: Path) -> None:
    with FakeComfyUI() as fake:
        port = free_port()
        proc = serve(
            "--port",
            str(port),
            "--backend",
            fake.url,
            "--data-dir",
            str(tmp_path / "data"),
            env={"COMFYGATE_LOG_FORMAT": "json"},
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return requests.get(f"{url}/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        try:
            assert wait_for(ready, 30)
            resp = requests.post(
                f"{url}/v1/generate",
                json={"template": "solid"},
                headers={"X-Request-Id": "req-42"},
                timeout=30,
            )
            assert resp.status_code == 200
            assert "comfygate" not in resp.headers.get(
                "Server", ""
            ).lower() or "/" not in resp.headers.get("Server", "")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0
        records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert records, err
        assert all({"ts", "level", "logger", "message", "request_id"} <= set(r) for r in records)
        created = [r for r in records if r["message"] == "job created"]
        assert created[0]["request_id"] == "req-42"
        assert created[0]["job_id"]
        assert records[-1]["message"] == "gateway stopped"
        assert not [line for line in err.splitlines() if line and not line.startswith("{")]


def test_sigterm_answers_waiting_requests_and_ends_event_streams(tmp_path: Path) -> None:
    """A stop does not hold a synchronous request or an event stream until the server's
    grace period: the one gets a 503 naming its job (which goes on), the other ends, and
    the job is still there, unfinished, for the next start."""
    with FakeComfyUI() as fake:
        fake.hold()
        data = tmp_path / "data"
        gateway = GatewayProcess(fake.url, data, tmp_path / "gw.log")
        job = requests.post(f"{gateway.url}/v1/jobs", json={"template": "solid"}, timeout=10)
        job_id = job.json()["id"]
        answers: dict[str, Any] = {}

        def generate() -> None:
            answers["generate"] = requests.post(
                f"{gateway.url}/v1/generate", json={"template": "solid", "width": 9}, timeout=60
            )

        def stream() -> None:
            with requests.get(
                f"{gateway.url}/v1/jobs/{job_id}/events", stream=True, timeout=60
            ) as resp:
                answers["events"] = parse_sse("".join(resp.iter_content(decode_unicode=True)))

        threads = [threading.Thread(target=generate), threading.Thread(target=stream)]
        for thread in threads:
            thread.start()
        assert wait_for(lambda: len(fake.submissions) == 2, 30)
        assert wait_for(lambda: "job created" in gateway.log.read_text(), 10)
        gateway.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        if gateway.proc.poll() is None:
            gateway.proc.send_signal(signal.SIGTERM)  # an impatient second one changes nothing
        gateway.stop()
        assert gateway.proc.returncode == 0

        resp = answers["generate"]
        assert resp.status_code == 503
        error = resp.json()["error"]
        assert error["code"] == "backend_unavailable"
        assert "stopping" in error["message"]
        assert resp.headers["Retry-After"] == "5"
        waiting_id = error["details"]["job_id"]
        # The stream said where the job was, then ended without a "done".
        assert [name for name, _ in answers["events"]] == ["status"]

        fake.release()
        again = GatewayProcess(fake.url, data, tmp_path / "gw2.log")
        try:
            for done_id in (job_id, waiting_id):

                def succeeded(job_id: str = done_id) -> bool:
                    status = requests.get(f"{again.url}/v1/jobs/{job_id}", timeout=5).json()
                    return bool(status["status"] == "succeeded")

                assert wait_for(succeeded, 30)
        finally:
            again.stop()


def test_the_sdk_follows_a_generation_across_a_gateway_restart(tmp_path: Path) -> None:
    """A rolling restart loses no work: Client.generate, interrupted by the stop, follows
    its job to the next gateway on the same address and returns the image."""
    with FakeComfyUI() as fake:
        fake.hold()
        data, port = tmp_path / "data", free_port()
        first = GatewayProcess(fake.url, data, tmp_path / "gw1.log", port=port)
        result: dict[str, Any] = {}

        def generate() -> None:
            with Client(first.url, timeout=10) as client:
                try:
                    result["png"] = client.generate(template="solid", width=9, height=9)
                except Exception as exc:  # the assertion below shows it
                    result["error"] = exc

        thread = threading.Thread(target=generate)
        thread.start()
        assert wait_for(lambda: len(fake.submissions) == 1, 30)
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(30)
        first.stop()
        second = GatewayProcess(fake.url, data, tmp_path / "gw2.log", port=port)
        try:
            fake.release()
            thread.join(60)
        finally:
            second.stop()
        assert "error" not in result, result
        assert result["png"].startswith(b"\x89PNG")
        assert len(fake.submissions) == 1  # the same job, finished once


def test_a_second_gateway_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    """Two gateways on one DATA_DIR would both take back its jobs (and share one ComfyUI
    client id): the second stops with one line; once the first is gone, it starts."""
    with FakeComfyUI() as fake:
        data = tmp_path / "data"
        first = GatewayProcess(fake.url, data, tmp_path / "gw1.log")
        try:
            proc = serve("--port", str(free_port()), "--backend", fake.url, "--data-dir", str(data))
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 2
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1, err
            assert "in use by another running gateway" in lines[0]
            assert f"pid {first.proc.pid}" in lines[0]
        finally:
            first.kill()  # however it ends, the claim ends with it
            first.stop()
        again = GatewayProcess(fake.url, data, tmp_path / "gw2.log")
        again.stop()
        assert again.proc.returncode == 0
