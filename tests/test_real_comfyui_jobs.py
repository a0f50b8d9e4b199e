"""Asynchronous jobs against a real ComfyUI 0.3.75: progress, cancel, webhooks, and recovery
when the gateway is SIGKILLed or ComfyUI itself dies mid-job."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from comfygate.comfy.folders import job_output_prefix
from comfygate.comfy.local import LocalComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import comfy_idle, parse_sse, wait_for
from tests.processes import GatewayProcess
from tests.receivers import Receiver
from tests.test_jobs_api import finished, status_of, submit

pytestmark = pytest.mark.comfyui

SD = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": 5}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()


def comfy_prompts_of(url: str, job_id: str) -> int:
    """How many prompts ComfyUI ran (or runs, or queues) for this job, by its output prefix."""
    prefix = job_output_prefix(job_id)

    def has_prefix(graph: dict[str, Any]) -> bool:
        return any(node["inputs"].get("filename_prefix") == prefix for node in graph.values())

    history = requests.get(f"{url}/history", timeout=10).json()
    queue = requests.get(f"{url}/queue", timeout=10).json()
    graphs = [entry["prompt"][2] for entry in history.values()]
    graphs += [item[2] for item in queue["queue_running"] + queue["queue_pending"]]
    return sum(1 for g in graphs if has_prefix(g))


def test_progress_events_in_order_from_a_real_ksampler(
    make_app: MakeApp, real_comfyui: LocalComfyUI, receiver: Receiver
) -> None:
    client = make_app(
        [real_comfyui.url],
        webhook_secret="k",
        webhook_backoff_s=0.05,
        webhook_allow_private=True,
        read_timeout_s=60.0,
    ).test_client()
    job = submit(client, {**SD, "steps": 4, "webhook_url": receiver.url})
    events = parse_sse(client.get(f"/v1/jobs/{job['id']}/events").get_data(as_text=True))
    names = [name for name, _ in events]
    progress = [(d["value"], d["max"], d["node"]) for name, d in events if name == "progress"]
    assert progress == [(1, 4, "3"), (2, 4, "3"), (3, 4, "3"), (4, 4, "3")]
    assert names[-2:] == ["status", "done"]
    assert names.index("output") < names.index("done")
    assert events[-1][1]["status"] == "succeeded"
    # The webhook: first delivery refused, the retry verified.
    assert wait_for(lambda: len(receiver.requests) == 2, 10)
    _, headers, payload = receiver.requests[1]
    expected = "sha256=" + hmac.new(b"k", payload, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-ComfyGate-Signature"], expected)
    assert json.loads(payload)["outputs"][0]["content_type"] == "image/png"


def test_cancel_queued_and_running_jobs_on_comfyui(
    make_app: MakeApp, real_comfyui: LocalComfyUI
) -> None:
    client: FlaskClient = make_app([real_comfyui.url], read_timeout_s=60.0).test_client()
    running = submit(client, {**SD, "steps": 150})
    pending = submit(client, {**SD, "steps": 150, "seed": 6})
    assert wait_for(lambda: status_of(client, running["id"]) == "running", 60)
    assert comfy_prompts_of(real_comfyui.url, pending["id"]) == 1  # in ComfyUI's queue
    assert body(client.delete(f"/v1/jobs/{pending['id']}"))["status"] == "cancelled"
    assert wait_for(lambda: comfy_prompts_of(real_comfyui.url, pending["id"]) == 0, 10)
    assert status_of(client, running["id"]) == "running"  # the other one was not touched
    assert body(client.delete(f"/v1/jobs/{running['id']}"))["status"] == "cancelled"
    assert wait_for(lambda: comfy_idle(real_comfyui.url), 30)
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 409


def _wait_quietly(url: str, json_body: dict[str, Any]) -> None:
    """A synchronous request whose gateway is killed under it (its connection drops)."""
    with contextlib.suppress(requests.RequestException):
        requests.post(url, json=json_body, timeout=120)


@pytest.mark.parametrize("route", ["jobs", "generate"])
def test_gateway_sigkilled_mid_job_finishes_the_job_once(
    real_comfyui: LocalComfyUI, tmp_path: Path, route: str
) -> None:
    """``generate``: a synchronous request's job, written straight as submitted and held by
    the request's thread (jobs/dispatch.py ``Dispatcher.create``), is recovered the same."""
    data = tmp_path / "data"
    gateway = GatewayProcess(real_comfyui.url, data, tmp_path / "gw1.log")
    waiter: threading.Thread | None = None
    # A seed of its own: a graph ComfyUI ran before comes from its cache at once.
    job_body = {**SD, "steps": 12, "seed": 5 if route == "jobs" else 6}
    try:
        if route == "jobs":
            resp = requests.post(f"{gateway.url}/v1/jobs", json=job_body, timeout=10)
            assert resp.status_code == 202
            job_id = resp.json()["id"]
        else:
            waiter = threading.Thread(
                target=_wait_quietly, args=(f"{gateway.url}/v1/generate", job_body)
            )
            waiter.start()
            listed: list[dict[str, Any]] = []

            def made() -> bool:
                listed[:] = requests.get(f"{gateway.url}/v1/jobs", timeout=5).json()["jobs"]
                return bool(listed)

            assert wait_for(made, 30)
            job_id = listed[0]["id"]

        def running() -> bool:
            job = requests.get(f"{gateway.url}/v1/jobs/{job_id}", timeout=5).json()
            return bool(job["status"] == "running")

        assert wait_for(running, 60)
        gateway.kill()
    finally:
        gateway.stop()
        if waiter is not None:
            waiter.join(30)
    assert comfy_prompts_of(real_comfyui.url, job_id) == 1

    again = GatewayProcess(real_comfyui.url, data, tmp_path / "gw2.log")
    try:

        def ended() -> bool:
            status = requests.get(f"{again.url}/v1/jobs/{job_id}", timeout=5).json()["status"]
            return status in ("succeeded", "failed", "cancelled")

        assert wait_for(ended, 120)
        job = requests.get(f"{again.url}/v1/jobs/{job_id}", timeout=5).json()
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
        image = requests.get(again.url + job["outputs"][0]["url"], timeout=10)
        assert image.headers["Content-Type"] == "image/png"
    finally:
        again.stop()
    assert comfy_prompts_of(real_comfyui.url, job_id) == 1  # ComfyUI saw one submission


def test_comfyui_killed_and_restarted_mid_job_resubmits(
    make_app: MakeApp, fresh_comfyui: LocalComfyUI
) -> None:
    fresh_comfyui.watch(backoff_initial_s=0.2)
    client = make_app([fresh_comfyui.url], read_timeout_s=60.0).test_client()
    job = submit(client, {**SD, "steps": 6})
    assert wait_for(lambda: status_of(client, job["id"]) == "running", 60)
    fresh_comfyui.kill_for_test()
    assert fresh_comfyui.wait_for_restarts(1, 60)
    done = finished(client, job["id"], 180)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
