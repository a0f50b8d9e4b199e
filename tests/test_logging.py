"""What an operator reads in the log: one line per request (the access log), a warning for a
backend that does not answer at start, job lines with their durations, and text lines that
a value echoed from a request cannot break (forged log lines)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import requests

from comfygate.keys import owner_id
from comfygate.logs import TextFormatter
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp
from tests.helpers import wait_for
from tests.processes import GatewayProcess
from tests.test_jobs_api import finished, submit

FORGED = "12\n2026-01-01 00:00:00,000 INFO    comfygate.api.auth: FORGED"
# The first line of every text record: "2026-12-01 20:31:44,027 INFO    logger: ..."
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +[\w.]+: ")


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


def test_a_text_log_line_cannot_be_forged() -> None:
    """ComfyUI echoes a bad input value in its validation message: with a newline in it, the
    text log wrote a second line that looked like another logger's record."""
    record = logging.LogRecord(
        "comfygate.jobs.service", logging.WARNING, __file__, 1, "refused: %s", (FORGED,), None
    )
    record.__dict__["job_id"] = "abc\r\x1b[2Kdef"
    line = TextFormatter().format(record)
    assert line.count("\n") == 0
    assert "FORGED" in line
    assert "12\\n2026-01-01" in line  # shown, escaped
    assert "job_id=abc\\r\\x1b[2Kdef" in line


def test_a_traceback_stays_under_its_record() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = TextFormatter().format(record).splitlines()
    assert RECORD_START.match(lines[0])
    assert all(line.startswith("  ") for line in lines[1:])
    assert any("FORGED" in line for line in lines[1:])


def test_serve_writes_one_access_line_per_request(tmp_path: Path) -> None:
    """Against `comfygate serve` with text logs: each request is one line with its method,
    path, status, duration, request id, key id and never the key; neither a path carrying a
    newline nor ComfyUI's validation message echoing one (issue: forged log lines) starts a
    line of its own."""
    key = "k-" + "s3cret" * 6
    with FakeComfyUI() as fake:
        gateway = GatewayProcess(
            fake.url,
            tmp_path / "data",
            tmp_path / "gw.log",
            env={"COMFYGATE_API_KEYS": f"{key}:workflows"},
        )
        try:
            auth = {"Authorization": f"Bearer {key}", "X-Request-Id": "req-7"}
            resp = requests.post(
                f"{gateway.url}/v1/generate", json={"template": "solid"}, headers=auth, timeout=30
            )
            assert resp.status_code == 200
            forged = "/v1/jobs/x%0A2026-01-01%2000:00:00,000%20INFO%20comfygate.api.auth:%20FORGED"
            assert requests.get(gateway.url + forged, headers=auth, timeout=10).status_code == 404
            workflow = {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": FORGED, "height": 8, "batch_size": 1, "color": 0},
                },
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": "x"},
                },
            }
            refused = requests.post(
                f"{gateway.url}/v1/workflows/run",
                json={"workflow": workflow},
                headers=auth,
                timeout=30,
            )
            assert refused.status_code == 502
            assert "FORGED" in refused.json()["error"]["message"]  # ComfyUI echoed it
            assert wait_for(lambda: gateway.log.read_text().count("FORGED") >= 2, 10)
        finally:
            gateway.stop()
    log = gateway.log.read_text()
    assert key not in log
    lines = log.splitlines()
    assert all(RECORD_START.match(line) or line.startswith("  ") for line in lines), log
    access = [line for line in lines if "comfygate.access: " in line]
    generate = next(line for line in access if "path=/v1/generate" in line)
    assert "method=POST" in generate
    assert "status=200" in generate
    assert "request_id=req-7" in generate
    assert re.search(r"duration_ms=\d+\.\d", generate)
    assert re.search(r"key_id=[0-9a-f]{32}\b", generate)
    (forged_line,) = [line for line in access if "FORGED" in line and "status=404" in line]
    assert "\\n2026-01-01" in forged_line
    echoed = [line for line in lines if "FORGED" in line and "comfygate.access" not in line]
    assert echoed
    assert all("12\\n2026-01-01" in line for line in echoed)


def test_an_event_stream_is_logged_when_it_ends(
    fake: FakeComfyUI, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app([fake.url]).test_client()
    caplog.set_level(logging.INFO, "comfygate")
    job = submit(client, {"template": "solid"})
    finished(client, job["id"])
    assert client.get(f"/v1/jobs/{job['id']}/events").status_code == 200
    (line,) = [
        r
        for r in records(caplog, "request")
        if r.__dict__["path"] == f"/v1/jobs/{job['id']}/events"
    ]
    assert (line.__dict__["method"], line.__dict__["status"], line.__dict__["key_id"]) == (
        "GET",
        200,
        "-",
    )
    assert line.__dict__["duration_ms"] >= 0


def test_access_lines_name_the_caller_by_key_id_and_the_path_as_sent(
    fake: FakeComfyUI, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The line's fields come from the environ the app fills in as it goes (request id,
    key id): a keyed caller's key id (never the key), ``-`` for one refused before it was
    known and on a public route; the path decoded as the app saw it, query string off."""
    client = make_app([fake.url], api_keys="key-a").test_client()
    caplog.set_level(logging.INFO, "comfygate")
    owner = owner_id("key-a")
    keyed = {"Authorization": "Bearer key-a", "X-Request-Id": "req-9"}
    assert client.get("/v1/jobs/caf%C3%A9?x=1", headers=keyed).status_code == 404
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    lines = {r.__dict__["path"]: r.__dict__ for r in records(caplog, "request")}
    assert lines["/v1/jobs/café"]["key_id"] == owner
    assert lines["/v1/jobs/café"]["request_id"] == "req-9"
    assert lines["/v1/jobs/café"]["status"] == 404
    assert (lines["/v1/jobs"]["key_id"], lines["/v1/jobs"]["status"]) == ("-", 401)
    assert lines["/healthz"]["key_id"] == "-"
    assert all("key-a" not in str(v) for line in lines.values() for v in line.values())


def test_text_lines_carry_the_time_of_their_own_record() -> None:
    """The date and clock are made once per second and kept: each record still shows its
    own second and milliseconds, as ``logging.Formatter`` writes them."""
    formatter = TextFormatter()
    plain = logging.Formatter()
    for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_699_999_999.25):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        assert formatter.format(record).startswith(plain.formatTime(record) + " INFO")


def test_access_log_off(
    fake: FakeComfyUI, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app([fake.url], access_log=False).test_client()
    caplog.set_level(logging.INFO, "comfygate")
    assert client.get("/healthz").status_code == 200
    assert not records(caplog, "request")


def test_a_backend_that_does_not_answer_at_start_is_a_warning(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "comfygate")
    make_app(["dead=http://127.0.0.1:9"])
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "backend dead does not answer at start" in warning.getMessage()
    assert warning.__dict__["backend"] == "dead"


def test_job_lines_carry_their_durations(
    fake: FakeComfyUI, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app([fake.url]).test_client()
    caplog.set_level(logging.INFO, "comfygate")
    job = finished(client, submit(client, {"template": "solid"})["id"])
    # Logged by the collector once the job is stored as succeeded: a read may come first.
    assert wait_for(
        lambda: bool(records(caplog, "job timings") and records(caplog, "job succeeded"))
    )
    (timings,) = records(caplog, "job timings")
    assert timings.__dict__["job_id"] == job["id"]
    assert timings.__dict__["template"] == "solid"
    for name in ("queue_wait_s", "execution_s", "transfer_s"):
        assert getattr(timings, name) >= 0
    (done,) = records(caplog, "job succeeded")
    assert done.__dict__["duration_s"] >= timings.__dict__["execution_s"]
