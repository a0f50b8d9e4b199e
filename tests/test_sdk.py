"""The public Python client, against a real gateway (waitress on a free port) on the fake
ComfyUI, plus a small stub server for what a healthy gateway never does (dropped streams,
a proxy's error page)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, Response, request
from PIL import Image

import comfygate
from comfygate import sdk
from comfygate.sdk import (
    BackendUnavailableError,
    Client,
    ClientTimeoutError,
    ComfyGateAPIError,
    ComfyGateConnectionError,
    ConflictError,
    Event,
    GenerationFailedError,
    Job,
    MultipleOutputsError,
    NotFoundError,
    Output,
    RateLimitedError,
    ValidationError,
)
from comfygate.sdk import models as sdk_models
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp
from tests.live import serve


@pytest.fixture
def app(fake: FakeComfyUI, make_app: MakeApp) -> Flask:
    # A short keep-alive: a stream whose client went away notices at its next write.
    return make_app([fake.url], sse_heartbeat_s=0.5)


@pytest.fixture
def url(app: Flask) -> Iterator[str]:
    with serve(app) as base:
        yield base


@pytest.fixture
def gate(url: str) -> Iterator[Client]:
    with Client(url, timeout=10) as client:
        yield client


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# --- generate ---------------------------------------------------------------------------


def test_generate_returns_the_image_bytes(gate: Client) -> None:
    data = gate.generate(template="solid", width=16, height=8)
    assert data.startswith(b"\x89PNG")
    assert _png_size(data) == (16, 8)


def test_a_positional_argument_is_the_prompt(gate: Client, fake: FakeComfyUI) -> None:
    data = gate.generate("a cat", width=64, height=64, steps=1)
    assert _png_size(data) == (64, 64)
    job = gate.submit("a dog", {"width": 64, "height": 64}, steps=1)
    assert job.template == "txt2img"
    assert job.params["prompt"] == "a dog"
    job = gate.generate_job("a fox", template="txt2img", width=64, height=64, steps=1)
    assert job.params["prompt"] == "a fox"
    assert [s["prompt"]["6"]["inputs"]["text"] for s in fake.submissions] == [
        "a cat",
        "a dog",
        "a fox",
    ]
    with pytest.raises(TypeError, match="twice"):
        gate.generate("a cat", {"prompt": "a dog"})


def test_solid_gives_what_its_description_says(gate: Client) -> None:
    [solid] = [t for t in gate.templates() if t["name"] == "solid"]
    assert "255 (blue) gives yellow" in solid["description"]
    assert "optionally" not in solid["description"]
    for color, seen in ((255, (255, 255, 0)), (0xFFFF00, (0, 0, 255)), (0xFF0000, (0, 255, 255))):
        data = gate.generate(template="solid", color=color, width=4, height=4)
        with Image.open(io.BytesIO(data)) as image:
            assert image.convert("RGB").getpixel((0, 0)) == seen


def test_generate_takes_parameters_as_a_mapping_too(gate: Client) -> None:
    data = gate.generate(params={"prompt": "a cat", "width": 64, "height": 64, "steps": 1})
    assert _png_size(data) == (64, 64)


def test_generate_with_several_outputs_raises_with_the_job(gate: Client) -> None:
    with pytest.raises(MultipleOutputsError) as info:
        gate.generate(template="solid", batch_size=2)
    assert [o.filename for o in info.value.job.outputs] == ["3-0.png", "3-1.png"]


def test_generate_job_returns_the_typed_job(gate: Client) -> None:
    job = gate.generate_job(prompt="a cat", width=64, height=64, steps=1, seed=7)
    assert job.succeeded
    assert job.terminal
    assert job.template == "txt2img"
    assert job.params["seed"] == 7
    assert job.params["checkpoint"] == "random-sd15-fp16.safetensors"
    [output] = job.outputs
    assert output.url == f"/v1/outputs/{job.id}/9-0.png"
    assert output.content_type == "image/png"
    assert output.size > 0
    assert job.error is None
    assert job.created_at is not None
    assert job.created_at.tzinfo is not None
    assert job.finished_at is not None
    assert job.finished_at >= job.created_at
    assert job.raw["id"] == job.id


# --- jobs -------------------------------------------------------------------------------


def test_submit_then_events_in_order(gate: Client, fake: FakeComfyUI) -> None:
    fake.step_time_s = 0.01
    fake.hold()
    job = gate.submit(prompt="a cat", width=64, height=64, steps=3, idempotency_key="k-1")
    assert job.status == "queued"
    again = gate.submit(prompt="a cat", width=64, height=64, steps=3, idempotency_key="k-1")
    assert again.id == job.id
    stream = gate.events(job.id)
    first = next(stream)
    assert first.type == "status"
    assert first.job is not None
    assert first.job.status == "queued"
    fake.release()
    rest = list(stream)
    kinds = [e.type for e in rest]
    assert kinds[-1] == "done"
    assert kinds.index("output") > max(i for i, k in enumerate(kinds) if k == "progress")
    steps = [e.progress for e in rest if e.progress is not None]
    assert [(p.value, p.max, p.node) for p in steps] == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]
    [output] = [e.output for e in rest if e.output is not None]
    assert output.filename == "9-0.png"
    statuses = [e.job.status for e in rest if e.type == "status" and e.job is not None]
    assert statuses[0] == "running"
    assert statuses[-1] == "succeeded"
    done = rest[-1].job
    assert done is not None
    assert done.succeeded
    assert done.outputs == [output]


def test_events_of_a_finished_job_replay_its_end(gate: Client) -> None:
    job = gate.generate_job(template="solid")
    assert [e.type for e in gate.events(job.id)] == ["status", "output", "done"]


def test_wait_returns_the_finished_job(gate: Client) -> None:
    job = gate.submit(template="solid", batch_size=2)
    seen: list[Event] = []
    done = gate.wait(job.id, timeout_s=10, on_event=seen.append)
    assert done.succeeded
    assert len(done.outputs) == 2
    assert seen[-1].type == "done"
    assert gate.get(job.id) == done


def test_wait_times_out_and_the_job_goes_on(gate: Client, fake: FakeComfyUI) -> None:
    fake.hold()
    job = gate.submit(template="solid")
    with pytest.raises(ClientTimeoutError) as info:
        gate.wait(job.id, timeout_s=0.3)
    assert info.value.job_id == job.id
    assert isinstance(info.value, TimeoutError)
    assert gate.get(job.id).status == "queued"
    gate.cancel(job.id)


def test_cancel_a_queued_job_then_conflict(gate: Client, fake: FakeComfyUI) -> None:
    fake.hold()
    job = gate.submit(template="solid")
    cancelled = gate.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    assert gate.wait(job.id, timeout_s=5).status == "cancelled"
    with pytest.raises(ConflictError) as info:
        gate.cancel(job.id)
    assert info.value.status == 409
    assert info.value.code == "conflict"


def test_raise_for_status_gives_the_typed_error(gate: Client, fake: FakeComfyUI) -> None:
    fake.fail_next_execution("2", message="boom")
    job = gate.wait(gate.submit(template="solid").id, timeout_s=10)
    assert job.status == "failed"
    with pytest.raises(GenerationFailedError) as info:
        job.raise_for_status()
    assert info.value.node_id == "2"
    assert info.value.job_id == job.id


def test_jobs_iterates_every_page_newest_first(gate: Client, fake: FakeComfyUI) -> None:
    made = [gate.generate_job(template="solid", color=i).id for i in range(5)]
    listed = [job.id for job in gate.jobs(limit=2)]
    assert listed == made[::-1]
    fake.hold()
    queued = gate.submit(template="solid")
    assert [j.id for j in gate.jobs(status="queued")] == [queued.id]
    assert len(list(gate.jobs(status="succeeded", limit=3))) == 5
    gate.cancel(queued.id)


# --- errors -----------------------------------------------------------------------------


def test_validation_error_names_the_field(gate: Client, fake: FakeComfyUI) -> None:
    with pytest.raises(ValidationError) as info:
        gate.generate(prompt="x", steps=0)
    err = info.value
    assert (err.status, err.code, err.field) == (400, "validation_error", "steps")
    assert "greater than or equal to 1" in err.message
    assert err.request_id
    assert fake.submissions == []


def test_unknown_template_and_job_are_not_found(gate: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        gate.generate(template="nope", prompt="x")
    assert info.value.status == 404
    assert info.value.details == {"template": "nope"}
    with pytest.raises(NotFoundError):
        gate.get("0123456789abcdef")
    with pytest.raises(NotFoundError):
        gate.template("nope")


def test_execution_failure_is_generation_failed(gate: Client, fake: FakeComfyUI) -> None:
    fake.fail_next_execution("2", message="boom")
    with pytest.raises(GenerationFailedError) as info:
        gate.generate(template="solid")
    err = info.value
    assert err.status == 502
    assert (err.node_id, err.node_type) == ("2", "ImageInvert")
    assert err.job_id
    assert "boom" in str(err)


def test_no_backend_is_backend_unavailable_with_retry_after(make_app: MakeApp) -> None:
    # A fake that has stopped before the gateway starts: stopping one under a connected
    # gateway races its own shutdown (a connection accepted meanwhile is never closed).
    with FakeComfyUI() as gone:
        address = gone.url
    with (
        serve(make_app([address])) as base,
        Client(base) as client,
        pytest.raises(BackendUnavailableError) as info,
    ):
        client.generate(template="solid")
    assert info.value.status == 503
    assert info.value.code == "backend_unavailable"
    assert info.value.retry_after == 5.0
    assert address not in str(info.value)


def test_unreachable_gateway_is_a_connection_error_naming_it() -> None:
    with (
        Client("http://127.0.0.1:9", connect_timeout=2) as client,
        pytest.raises(ComfyGateConnectionError) as info,
    ):
        client.templates()
    assert isinstance(info.value, ConnectionError)
    assert "http://127.0.0.1:9" in str(info.value)
    assert info.value.base_url == "http://127.0.0.1:9"


def test_a_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Client("127.0.0.1:8288")


# --- templates, outputs -----------------------------------------------------------------


def test_templates_and_one_template(gate: Client) -> None:
    names = {t["name"] for t in gate.templates()}
    assert {"txt2img", "solid"} <= names
    assert gate.default_template() == "txt2img"
    schema = gate.template("txt2img")["parameters"]
    assert schema["required"] == ["prompt"]


def test_download_streams_an_output_to_a_file(gate: Client, tmp_path: Path) -> None:
    job = gate.generate_job(template="solid", width=8, height=8)
    [output] = job.outputs
    folder = tmp_path / "downloads"
    folder.mkdir()
    first = gate.download(output, folder / "a.png")
    assert first.read_bytes()[:4] == b"\x89PNG"
    assert first.stat().st_size == output.size
    by_url = gate.download(output.url, folder / "b.png")
    by_absolute = gate.download(gate.base_url + output.url, folder / "c.png")
    by_dict = gate.download(job.raw["outputs"][0], folder / "d.png")
    assert by_url.read_bytes() == by_absolute.read_bytes() == by_dict.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
    with pytest.raises(NotFoundError):
        gate.download(f"/v1/outputs/{job.id}/nope.png", folder / "e.png")
    assert not (folder / "e.png").exists()
    assert not (folder / "e.png.part").exists()


def test_download_refuses_another_host(gate: Client, tmp_path: Path) -> None:
    # Following it would send the API key to that host.
    with pytest.raises(ValueError, match="not an output URL"):
        gate.download("https://elsewhere.example/v1/outputs/x/y.png", tmp_path / "x.png")


# --- what a healthy gateway never does: a stub ------------------------------------------


def _stub() -> Flask:
    stub = Flask("stub")
    streams = {"served": 0}

    @stub.get("/v1/jobs/<job_id>")
    def job(job_id: str) -> dict[str, object]:
        return {"id": job_id, "status": "running", "auth": request.headers.get("Authorization")}

    @stub.get("/v1/jobs/<job_id>/events")
    def events(job_id: str) -> Response:
        streams["served"] += 1
        if streams["served"] == 1:
            # CRLF line ends, a comment, a data field split over two lines; then it ends
            # without `done`, as a restarting gateway or a proxy's idle cut would.
            text = (
                ": keep-alive\r\n\r\n"
                'event: status\r\ndata: {"id": "j1",\r\ndata: "status": "running"}\r\n\r\n'
            )
        else:
            text = 'event: progress\ndata: {"value": 1, "max": 2}\n\nevent: done\n'
            text += 'data: {"id": "j1", "status": "succeeded", "outputs": []}\n\n'
        return Response(text, mimetype="text/event-stream")

    @stub.get("/v1/templates")
    def proxy_page() -> Response:
        return Response("<html><body>Bad Gateway</body></html>", 502, mimetype="text/html")

    @stub.get("/v1/backends")
    def limited() -> Response:
        resp = Response(
            '{"error": {"code": "rate_limited", "message": "slow down", "details": {}}}',
            429,
            mimetype="application/json",
        )
        resp.headers["Retry-After"] = "7"
        return resp

    return stub


@pytest.fixture
def stub_url() -> Iterator[str]:
    with serve(_stub()) as base:
        yield base


def test_wait_reconnects_when_the_stream_ends_before_done(
    stub_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk, "RECONNECT_DELAY_S", 0.01)
    seen: list[Event] = []
    with Client(stub_url) as client:
        job = client.wait("j1", timeout_s=10, on_event=seen.append)
    assert job.status == "succeeded"
    assert [(e.type, e.data.get("status")) for e in seen] == [
        ("status", "running"),
        ("progress", None),
        ("done", "succeeded"),
    ]


def test_api_key_is_sent_as_bearer(stub_url: str) -> None:
    with Client(stub_url, api_key="s3cret") as client:
        assert client.get("j1").raw["auth"] == "Bearer s3cret"
    with Client(stub_url) as client:
        assert client.get("j1").raw["auth"] is None


def test_an_error_page_that_is_not_ours_is_still_typed(stub_url: str) -> None:
    with Client(stub_url) as client:
        with pytest.raises(ComfyGateAPIError) as info:
            client.templates()
        assert type(info.value) is ComfyGateAPIError
        assert info.value.status == 502
        assert "Bad Gateway" in info.value.message
        with pytest.raises(RateLimitedError) as limited:
            client.backends()
        assert limited.value.retry_after == 7.0


def test_parse_sse_handles_comments_multiline_data_and_unknown_events() -> None:
    lines = iter(
        [": hi", "", "event: x", 'data: {"a":', "data: 1}", "", "data: [1]", "", "id: 3", ""]
    )
    parsed = list(sdk_models.parse_sse(lines))
    assert parsed == [None, Event("x", {"a": 1}), Event("message", {})]


def test_job_from_a_minimal_object() -> None:
    job = Job.from_dict({"id": "j", "status": "queued"})
    assert (job.id, job.status, job.outputs, job.progress, job.created_at) == (
        "j",
        "queued",
        [],
        None,
        None,
    )
    assert not job.terminal
    assert Output.from_dict({"filename": "a.png", "url": "/x"}).content_type == (
        "application/octet-stream"
    )


# --- packaging --------------------------------------------------------------------------


def test_import_comfygate_is_light_and_the_sdk_needs_no_server_code() -> None:
    code = (
        "import sys, comfygate\n"
        "assert 'requests' not in sys.modules and 'comfygate.sdk' not in sys.modules\n"
        "client_class = comfygate.Client\n"
        "from comfygate.sdk import Client\n"
        "assert client_class is Client\n"
        "server_side = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', "
        "'werkzeug', 'pydantic', 'waitress') or (m.startswith('comfygate.') "
        "and m.split('.')[:2] != ['comfygate', 'sdk']))\n"
        "assert not server_side, server_side\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert comfygate.Client is Client
