"""Several backends: routing by load and capability, failover, recovery, readiness, metrics
(fake ComfyUI servers; tests/test_real_comfyui_backends.py shows the same on real ones)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.test_jobs_api import finished, status_of, submit

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2}


@pytest.fixture
def fakes() -> Iterator[list[FakeComfyUI]]:
    servers = [FakeComfyUI().start() for _ in range(2)]
    for s in servers:
        s.caching = False
    yield servers
    for s in servers:
        s.stop()


def backend_states(client: FlaskClient) -> dict[str, str]:
    return {b["name"]: b["status"] for b in body(client.get("/v1/backends"))["backends"]}


def test_jobs_spread_by_load(fakes: list[FakeComfyUI], make_app: MakeApp) -> None:
    a, b = fakes
    a.service_time_s = b.service_time_s = 0.3
    client = make_app([f"a={a.url}", f"b={b.url}"], max_in_flight_per_backend=1).test_client()
    jobs = [submit(client, {"template": "solid", "color": i}) for i in range(4)]
    for job in jobs:
        assert finished(client, job["id"])["status"] == "succeeded"
    assert len(a.submissions) == 2
    assert len(b.submissions) == 2


def test_least_loaded_prefers_the_idle_backend(fakes: list[FakeComfyUI], make_app: MakeApp) -> None:
    a, b = fakes
    a.hold()  # a keeps its job: every later job should go to b
    client = make_app([f"a={a.url}", f"b={b.url}"], max_in_flight_per_backend=3).test_client()
    first = submit(client, {"template": "solid"})
    assert wait_for(lambda: len(a.submissions) + len(b.submissions) == 1)
    busy, idle = (a, b) if a.submissions else (b, a)
    for i in range(3):
        finished(client, submit(client, {"template": "solid", "color": i + 1})["id"])
    assert len(idle.submissions) == 3
    assert len(busy.submissions) == 1
    a.release()
    finished(client, first["id"])


def test_a_backend_without_the_model_is_never_chosen(make_app: MakeApp) -> None:
    with FakeComfyUI(checkpoints=[]) as bare, FakeComfyUI() as full:
        client = make_app([f"bare={bare.url}", f"full={full.url}"]).test_client()
        for _ in range(4):
            assert finished(client, submit(client, SMALL)["id"])["status"] == "succeeded"
        assert len(full.submissions) == 4
        assert bare.submissions == []
        # A model-free template may run on either.
        for i in range(4):
            finished(client, submit(client, {"template": "solid", "color": i})["id"])
        assert bare.submissions


def test_no_backend_with_a_node_type_is_503_naming_it(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path
) -> None:
    (tmp_path / "custom.json").write_text(
        json.dumps(
            {
                "name": "custom",
                "workflow": {
                    "1": {"class_type": "SomeCustomNode", "inputs": {}},
                    "2": {
                        "class_type": "SaveImage",
                        "inputs": {"images": ["1", 0], "filename_prefix": "x"},
                    },
                },
            }
        )
    )
    client = make_app([fake.url], templates_dir=str(tmp_path)).test_client()
    resp = client.post("/v1/jobs", json={"template": "custom"})
    assert resp.status_code == 503
    message = body(resp)["error"]["message"]
    assert "no available backend has what this job needs" in message
    assert "SomeCustomNode" in message
    assert fake.submissions == []


def test_backend_dying_mid_job_fails_over(fakes: list[FakeComfyUI], make_app: MakeApp) -> None:
    a, b = fakes
    a.service_time_s = b.service_time_s = 1.0
    client = make_app([f"a={a.url}", f"b={b.url}"], max_in_flight_per_backend=1).test_client()
    job = submit(client, {"template": "solid"})
    assert wait_for(lambda: status_of(client, job["id"]) == "running")
    victim, survivor = (a, b) if a.submissions else (b, a)
    survivor.service_time_s = 0
    victim.stop()
    done = finished(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert len(survivor.submissions) == 1
    assert "unhealthy" in backend_states(client).values()


def test_a_backend_that_comes_back_is_used_again(make_app: MakeApp) -> None:
    first = FakeComfyUI().start()
    port = first.port
    with FakeComfyUI() as other:
        client = make_app([f"a={first.url}", f"b={other.url}"]).test_client()
        first.stop()
        assert wait_for(lambda: backend_states(client)["a"] == "unhealthy")
        finished(client, submit(client, {"template": "solid"})["id"])
        back = FakeComfyUI(port=port).start()
        try:
            assert wait_for(lambda: backend_states(client)["a"] == "healthy", 15)
            back.hold()
            other.hold()  # both busy: the next jobs must use a as well
            jobs = [submit(client, {"template": "solid", "color": i}) for i in range(2)]
            assert wait_for(lambda: len(back.submissions) >= 1)
            back.release()
            other.release()
            for job in jobs:
                finished(client, job["id"])
        finally:
            back.stop()


def test_all_backends_down_is_503_and_not_ready(
    fakes: list[FakeComfyUI], make_app: MakeApp
) -> None:
    a, b = fakes
    client = make_app([a.url, b.url]).test_client()
    assert client.get("/readyz").status_code == 200
    a.stop()
    b.stop()
    assert wait_for(lambda: client.get("/readyz").status_code == 503)
    assert body(client.get("/readyz"))["reason"] == "no ComfyUI backend is available"
    resp = client.post("/v1/generate", json={"template": "solid"})
    assert resp.status_code == 503
    assert body(resp)["error"]["message"] == "no ComfyUI backend is available right now"


def test_not_ready_when_too_many_jobs_wait(fake: FakeComfyUI, make_app: MakeApp) -> None:
    fake.hold()
    client = make_app([fake.url], ready_max_waiting=0, max_in_flight_per_backend=1).test_client()
    submit(client, {"template": "solid"})
    assert wait_for(lambda: len(fake.submissions) == 1)
    submit(client, {"template": "solid", "color": 1})  # waits in the gateway
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert "1 jobs are waiting" in body(resp)["reason"]
    fake.release()
    assert wait_for(lambda: client.get("/readyz").status_code == 200)


def test_backends_route_hides_urls_unless_allowed(fake: FakeComfyUI, make_app: MakeApp) -> None:
    hidden = body(make_app([f"gpu1={fake.url}"]).test_client().get("/v1/backends"))
    [info] = hidden["backends"]
    assert info["name"] == "gpu1"
    assert info["status"] == "healthy"
    assert info["models"] == 1
    assert info["node_types"] > 10
    assert "url" not in info
    assert fake.url not in json.dumps(hidden)
    shown = body(make_app([fake.url], expose_backend_urls=True).test_client().get("/v1/backends"))
    assert shown["backends"][0]["url"] == fake.url


def test_round_robin_routing(fakes: list[FakeComfyUI], make_app: MakeApp) -> None:
    a, b = fakes
    client = make_app([a.url, b.url], routing="round_robin").test_client()
    for i in range(4):
        finished(client, submit(client, {"template": "solid", "color": i})["id"])
    assert len(a.submissions) == len(b.submissions) == 2


def test_metrics(client: FlaskClient) -> None:
    finished(client, submit(client, {"template": "solid"})["id"])
    client.get("/v1/jobs/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'comfygate_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert 'route="/v1/jobs/<job_id>",status="404"' in text
    assert 'comfygate_jobs_finished_total{status="succeeded"} 1.0' in text
    assert "comfygate_job_queue_wait_seconds_count 1.0" in text
    assert "comfygate_job_execution_seconds_count 1.0" in text
    assert "comfygate_job_output_transfer_seconds_count 1.0" in text
    assert 'comfygate_backend_up{backend="backend-1"' in text
    assert "comfygate_jobs_waiting 0.0" in text
