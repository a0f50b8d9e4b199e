"""Asynchronous jobs against the fake ComfyUI: submit, read, list, cancel, events, webhooks,
idempotency, retention, deadlines and recovery from restarts (gateway's and ComfyUI's)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from comfygate.jobs.model import JobStatus
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import comfy_idle, parse_sse, wait_for
from tests.receivers import Receiver

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "steps": 4, "seed": 1}


def submit(client: FlaskClient, payload: dict[str, Any], **headers: str) -> dict[str, Any]:
    resp = client.post("/v1/jobs", json=payload, headers=headers)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job: dict[str, Any] = body(resp)
    assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    return job


def status_of(client: FlaskClient, job_id: str) -> str:
    return str(body(client.get(f"/v1/jobs/{job_id}"))["status"])


def finished(client: FlaskClient, job_id: str, timeout_s: float = 10) -> dict[str, Any]:
    assert wait_for(lambda: JobStatus(status_of(client, job_id)).terminal, timeout_s), (
        f"job {job_id} did not end: {status_of(client, job_id)}"
    )
    result: dict[str, Any] = body(client.get(f"/v1/jobs/{job_id}"))
    return result


def test_submit_then_read_until_it_succeeds(client: FlaskClient) -> None:
    job = submit(client, SMALL)
    assert job["status"] == "queued"
    assert job["params"]["seed"] == 1
    done = finished(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["progress"] == {"value": 4, "max": 4, "node": "3"}
    assert client.get(done["outputs"][0]["url"]).status_code == 200


def test_unknown_job_is_404_everywhere(client: FlaskClient) -> None:
    for resp in (
        client.get("/v1/jobs/nope"),
        client.delete("/v1/jobs/nope"),
        client.get("/v1/jobs/nope/events"),
    ):
        assert resp.status_code == 404
        assert body(resp)["error"]["code"] == "not_found"


def test_event_stream_in_order(client: FlaskClient, fake: FakeComfyUI) -> None:
    fake.step_time_s = 0.02
    job = submit(client, {**SMALL, "steps": 5})
    stream = client.get(f"/v1/jobs/{job['id']}/events")
    assert stream.status_code == 200
    assert stream.mimetype == "text/event-stream"
    events = parse_sse(stream.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[0] == "status"
    assert names[-1] == "done"
    assert events[-1][1]["status"] == "succeeded"
    progress = [data["value"] for name, data in events if name == "progress"]
    assert progress == sorted(progress)
    assert progress[-1] == 5
    assert names.index("output") < names.index("done")
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses == sorted(set(statuses), key=statuses.index)  # no status goes back
    assert statuses[-1] == "succeeded"


def test_late_subscriber_gets_current_state_then_done(client: FlaskClient) -> None:
    job = submit(client, SMALL)
    finished(client, job["id"])
    events = parse_sse(client.get(f"/v1/jobs/{job['id']}/events").get_data(as_text=True))
    assert [name for name, _ in events] == ["status", "progress", "output", "done"]


def test_heartbeat_on_an_idle_stream(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], sse_heartbeat_s=0.05).test_client()
    fake.hold()
    job = submit(client, SMALL)
    resp = client.get(f"/v1/jobs/{job['id']}/events", buffered=False)
    chunks = (bytes(c) if isinstance(c, bytes) else str(c).encode() for c in resp.response)
    before = b"".join(next(chunks) for _ in range(3)).decode()
    fake.release()
    after = b"".join(chunks).decode()
    resp.close()
    assert ": keep-alive" in before
    assert "event: done" in after


def test_list_newest_first_with_cursor_and_filter(client: FlaskClient) -> None:
    ids = [submit(client, {"template": "solid", "color": i})["id"] for i in range(5)]
    for job_id in ids:
        finished(client, job_id)
    page = body(client.get("/v1/jobs?limit=2"))
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    page2 = body(client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}"))
    assert [j["id"] for j in page2["jobs"]] == ids[::-1][2:4]
    page3 = body(client.get(f"/v1/jobs?limit=2&cursor={page2['next_cursor']}"))
    assert [j["id"] for j in page3["jobs"]] == ids[:1]
    assert page3["next_cursor"] is None
    assert len(body(client.get("/v1/jobs?status=succeeded"))["jobs"]) == 5
    assert body(client.get("/v1/jobs?status=failed"))["jobs"] == []


@pytest.mark.parametrize("query", ["status=done", "limit=0", "limit=1000", "limit=x", "cursor=-1"])
def test_bad_list_arguments_are_400(client: FlaskClient, query: str) -> None:
    resp = client.get(f"/v1/jobs?{query}")
    assert resp.status_code == 400
    assert body(resp)["error"]["code"] == "validation_error"


def test_cancel_a_job_waiting_in_the_gateway(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], max_in_flight_per_backend=1).test_client()
    fake.hold()
    first = submit(client, {"template": "solid"})
    second = submit(client, {"template": "solid", "color": 1})
    assert wait_for(lambda: len(fake.submissions) == 1)
    resp = client.delete(f"/v1/jobs/{second['id']}")
    assert resp.status_code == 200
    assert body(resp)["status"] == "cancelled"
    fake.release()
    assert finished(client, first["id"])["status"] == "succeeded"
    assert len(fake.submissions) == 1  # the cancelled one never reached ComfyUI
    assert status_of(client, second["id"]) == "cancelled"


def test_cancel_a_job_in_comfyuis_queue(client: FlaskClient, fake: FakeComfyUI) -> None:
    fake.hold()
    job = submit(client, {"template": "solid"})
    assert wait_for(lambda: len(fake.submissions) == 1)
    assert body(client.delete(f"/v1/jobs/{job['id']}"))["status"] == "cancelled"
    assert wait_for(lambda: comfy_idle(fake.url))  # left ComfyUI's queue
    fake.release()
    assert fake.history_count == 0


def test_cancel_a_running_job_interrupts_only_it(client: FlaskClient, fake: FakeComfyUI) -> None:
    fake.caching = False
    fake.service_time_s = 30
    job = submit(client, {"template": "solid"})
    assert wait_for(lambda: status_of(client, job["id"]) == "running")
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 200
    assert wait_for(lambda: comfy_idle(fake.url), 5)
    again = client.delete(f"/v1/jobs/{job['id']}")
    assert again.status_code == 409
    assert body(again)["error"]["code"] == "conflict"
    fake.service_time_s = 0
    other = submit(client, {"template": "solid", "color": 5})
    assert finished(client, other["id"])["status"] == "succeeded"


def test_idempotency_key(client: FlaskClient, fake: FakeComfyUI) -> None:
    first = submit(client, SMALL, **{"Idempotency-Key": "order-17"})
    again = submit(client, SMALL, **{"Idempotency-Key": "order-17"})
    assert again["id"] == first["id"]
    other = client.post(
        "/v1/jobs", json={**SMALL, "seed": 2}, headers={"Idempotency-Key": "order-17"}
    )
    assert other.status_code == 409
    finished(client, first["id"])
    assert len(fake.submissions) == 1


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "not a url", "//example.com", "https://user:pw@example.com/", 5],
)
def test_bad_webhook_url_is_400(client: FlaskClient, url: object) -> None:
    resp = client.post("/v1/jobs", json={**SMALL, "webhook_url": url})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "webhook_url"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()


def test_webhook_is_signed_and_retried(
    fake: FakeComfyUI, make_app: MakeApp, receiver: Receiver
) -> None:
    secret = "s3cret"
    client = make_app(
        [fake.url], webhook_secret=secret, webhook_backoff_s=0.05, webhook_allow_private=True
    ).test_client()
    job = submit(client, {**SMALL, "webhook_url": receiver.url})
    assert wait_for(lambda: len(receiver.requests) == 2)
    (_, h1, _), (_, h2, b2) = receiver.requests
    assert h1["X-ComfyGate-Delivery"] == h2["X-ComfyGate-Delivery"]
    expected = "sha256=" + hmac.new(secret.encode(), b2, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(h2["X-ComfyGate-Signature"], expected)
    payload = json.loads(b2)
    assert payload["id"] == job["id"]
    assert payload["status"] == "succeeded"
    assert wait_for(lambda: body(client.get(f"/v1/jobs/{job['id']}"))["webhook"]["delivered"])
    state = body(client.get(f"/v1/jobs/{job['id']}"))["webhook"]
    assert state["attempts"] == 2


def test_webhook_failures_are_visible_on_the_job(
    fake: FakeComfyUI, make_app: MakeApp, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    client = make_app(
        [fake.url], webhook_backoff_s=0.01, webhook_max_attempts=3, webhook_allow_private=True
    ).test_client()
    job = submit(client, {**SMALL, "webhook_url": receiver.url})
    assert wait_for(lambda: len(receiver.requests) == 3)
    assert wait_for(lambda: body(client.get(f"/v1/jobs/{job['id']}"))["webhook"]["attempts"] == 3)
    state = body(client.get(f"/v1/jobs/{job['id']}"))["webhook"]
    assert state["delivered"] is False
    assert state["last_error"] == "HTTP 500"


def test_progress_is_not_written_on_every_step(app: Flask, fake: FakeComfyUI) -> None:
    gateway = app.extensions["comfygate"]
    writes: list[str] = []
    original = gateway.store.swap

    def counting(job: Any, expected: int, delivery: Any = None) -> bool:
        writes.append(job.status.value)
        return bool(original(job, expected, delivery))

    gateway.store.swap = counting
    client = app.test_client()
    job = submit(client, {**SMALL, "steps": 150})
    done = finished(client, job["id"])
    assert done["progress"]["value"] == 150
    assert len(writes) < 20


def test_retention_sweep_deletes_old_jobs_and_outputs(fake: FakeComfyUI, make_app: MakeApp) -> None:
    app = make_app([fake.url], job_retention_s=0.01)
    client = app.test_client()
    job = finished(client, submit(client, {"template": "solid"})["id"])
    url = job["outputs"][0]["url"]
    assert client.get(url).status_code == 200
    assert wait_for(
        lambda: (
            app.extensions["comfygate"].jobs.sweep() >= 0
            and client.get(f"/v1/jobs/{job['id']}").status_code == 404
        )
    )
    assert client.get(url).status_code == 404


def test_every_job_has_a_deadline(fake: FakeComfyUI, make_app: MakeApp) -> None:
    fake.caching = False
    fake.service_time_s = 30
    client = make_app([fake.url], job_deadline_s=0.3).test_client()
    job = finished(client, submit(client, {"template": "solid"})["id"])
    assert job["status"] == "cancelled"
    assert job["error"]["code"] == "timeout"


def test_completion_by_polling_when_the_websocket_is_refused(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    fake.ws_enabled = False
    app = make_app([fake.url])
    [backend] = body(app.test_client().get("/v1/backends"))["backends"]
    assert backend["websocket"] == "disconnected"
    client = app.test_client()
    done = finished(client, submit(client, SMALL)["id"])
    assert done["status"] == "succeeded"
    assert len(done["outputs"]) == 1


def test_dropped_websocket_mid_job(client: FlaskClient, fake: FakeComfyUI) -> None:
    fake.caching = False
    fake.service_time_s = 0.5
    job = submit(client, {"template": "solid"})
    assert wait_for(lambda: status_of(client, job["id"]) == "running")
    fake.drop_websockets()
    done = finished(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1


def test_comfyui_restarted_mid_job_resubmits(client: FlaskClient, fake: FakeComfyUI) -> None:
    fake.caching = False
    fake.service_time_s = 1.0
    job = submit(client, {"template": "solid"})
    assert wait_for(lambda: status_of(client, job["id"]) == "running")
    fake.service_time_s = 0
    fake.restart()  # queue and history are gone
    done = finished(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert len(fake.submissions) == 2


def test_gives_up_after_max_attempts(fake: FakeComfyUI, make_app: MakeApp) -> None:
    fake.caching = False
    fake.service_time_s = 30
    client = make_app([fake.url], max_attempts=2).test_client()
    job = submit(client, {"template": "solid"})
    for attempt in (1, 2):
        assert wait_for(lambda n=attempt: len(fake.submissions) == n)  # type: ignore[misc]
        assert wait_for(lambda: status_of(client, job["id"]) == "running")
        fake.restart()
    done = finished(client, job["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 2
    assert "gave up after 2 attempts" in done["error"]["message"]


def test_gateway_restart_carries_on_with_queued_and_submitted_jobs(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Any
) -> None:
    data = str(tmp_path / "shared-data")
    first = make_app([fake.url], data_dir=data, max_in_flight_per_backend=1)
    client = first.test_client()
    fake.hold()
    on_comfy = submit(client, {"template": "solid", "color": 1})
    in_gateway = submit(client, {"template": "solid", "color": 2})
    assert wait_for(lambda: len(fake.submissions) == 1)
    first.extensions["comfygate"].stop()

    second = make_app([fake.url], data_dir=data, max_in_flight_per_backend=1)
    client = second.test_client()
    fake.release()
    assert finished(client, on_comfy["id"])["status"] == "succeeded"
    assert finished(client, in_gateway["id"])["status"] == "succeeded"
    assert len(fake.submissions) == 2  # each job reached ComfyUI exactly once
    assert body(client.get(f"/v1/jobs/{on_comfy['id']}"))["attempts"] == 1


# --- job reads answered once per version (api/answers.py) -----------------------------------


def _made_now(app: Flask, job_id: str, prefix: str = "") -> bytes:
    """The job object as the route made it before answers were kept: the store's record,
    through ``urls.job`` and ``jsonify``."""
    from flask import jsonify

    from comfygate.api import urls

    with app.test_request_context(f"/v1/jobs/{job_id}"):
        job = app.extensions["comfygate"].jobs.get(job_id)
        return jsonify(urls.job(job, urls.Links(prefix))).get_data()


def test_a_job_read_is_the_job_object_byte_for_byte_at_every_version(
    app: Flask, fake: FakeComfyUI
) -> None:
    client = app.test_client()
    fake.hold()
    job_id = submit(client, SMALL)["id"]
    queued = client.get(f"/v1/jobs/{job_id}")
    assert queued.get_data() == _made_now(app, job_id)
    assert queued.headers["Content-Type"] == "application/json"
    assert queued.headers["Cache-Control"] == "no-store"
    fake.release()
    done = finished(client, job_id)
    assert done["status"] == "succeeded"  # a new version: read again, not the kept one
    for _ in range(2):  # the second from the kept answer
        again = client.get(f"/v1/jobs/{job_id}")
        assert again.get_data() == _made_now(app, job_id)
        assert again.headers["Content-Length"] == str(len(again.get_data()))
    assert again.get_data() != queued.get_data()


def test_a_kept_answer_is_not_served_once_its_job_is_gone(app: Flask) -> None:
    client = app.test_client()
    job = finished(client, submit(client, SMALL)["id"])
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 200  # kept now
    app.extensions["comfygate"].jobs.store.delete(job["id"])  # as the retention sweep does
    gone = client.get(f"/v1/jobs/{job['id']}")
    assert gone.status_code == 404
    assert body(gone)["error"]["code"] == "not_found"


def test_a_kept_answer_is_shown_only_to_whom_the_job_is_visible(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    keys = "mine-0123456789abcdef,theirs-0123456789abcdef,root-0123456789abcdef:admin"
    client = make_app([fake.url], api_keys=keys).test_client()
    mine, theirs, root = (
        {"Authorization": f"Bearer {k}-0123456789abcdef"} for k in ("mine", "theirs", "root")
    )
    job = finished_as(client, submit(client, SMALL, **mine)["id"], mine)
    read = client.get(f"/v1/jobs/{job['id']}", headers=mine)
    assert read.status_code == 200
    assert client.get(f"/v1/jobs/{job['id']}", headers=theirs).status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}", headers=root).get_data() == read.get_data()


def finished_as(client: FlaskClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    def ended() -> bool:
        status = body(client.get(f"/v1/jobs/{job_id}", headers=headers))["status"]
        return JobStatus(status).terminal

    assert wait_for(ended)
    result: dict[str, Any] = body(client.get(f"/v1/jobs/{job_id}", headers=headers))
    return result


def test_answers_behind_a_proxy_prefix_and_without_are_each_their_own(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([fake.url], trusted_proxies=1).test_client()
    job = finished(client, submit(client, SMALL)["id"])
    url = job["outputs"][0]["url"]
    proxied = client.get(f"/v1/jobs/{job['id']}", headers={"X-Forwarded-Prefix": "/gw"})
    assert proxied.get_json()["outputs"][0]["url"] == "/gw" + url
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["outputs"][0]["url"] == url
