"""`comfygate serve` as a user runs it: one clear line for a bad setting, JSON logs with a
request id, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for
from tests.processes import free_port


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
