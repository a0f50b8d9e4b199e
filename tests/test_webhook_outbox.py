"""The webhook outbox (issue 12 item 5): deliveries are records in the job store, so pending
ones, and their retries with backoff, survive a restart and even a SIGKILL; every delivery is
signed with the Standard Webhooks headers too, verifiable with the ``standardwebhooks``
package as a receiver would."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests
from standardwebhooks import Webhook

from comfygate.egress import EgressPolicy
from comfygate.jobs.model import Delivery
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.jobs.webhooks import (
    WebhookOptions,
    WebhookOutbox,
    standard_webhooks_secret,
    verify,
)
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.processes import GatewayProcess
from tests.receivers import Receiver
from tests.test_webhook_egress import SOLID

SECRET = "outbox-secret-0123456789"
LOOPBACK = EgressPolicy(allow_http=True, allow_private=True)


def test_deliveries_carry_standard_webhooks_signatures(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    receiver = Receiver()
    try:
        client = make_app(
            [fake.url], webhook_secret=SECRET, webhook_allow_private=True
        ).test_client()
        job = client.post(
            "/v1/jobs", json={**SOLID, "webhook_url": f"http://127.0.0.1:{receiver.port}/h"}
        ).get_json()
        assert wait_for(lambda: len(receiver.requests) == 1)
        _, headers, data = receiver.requests[0]
        # What a receiver in Python does, with either form of the secret:
        for secret in (SECRET.encode(), standard_webhooks_secret(SECRET)):
            payload = Webhook(secret).verify(data, headers)
            assert payload["id"] == job["id"]
        assert headers["webhook-id"] == headers["X-ComfyGate-Delivery"]
        assert verify(SECRET, data, headers["X-ComfyGate-Signature"])
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
        state = body(client.get(f"/v1/jobs/{job['id']}"))["webhook"]
        assert wait_for(lambda: body(client.get(f"/v1/jobs/{job['id']}"))["webhook"]["delivered"])
        assert state["delivery_id"] == headers["webhook-id"]
    finally:
        receiver.close()


def test_a_pending_delivery_from_before_a_restart_is_sent(tmp_path: Path) -> None:
    """The outbox on its own, on a real SQLite store, without Flask: a delivery that an
    earlier process left pending (two attempts made) is sent by the next one, same id."""
    receiver = Receiver()
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    recorded: list[Delivery] = []
    left = Delivery(
        job_id="j1",
        url=f"http://127.0.0.1:{receiver.port}/x",
        body=json.dumps({"id": "j1"}),
        attempts=2,
        next_attempt_at=time.time() - 1,
        last_error="HTTP 500",
    )
    store.save_delivery(left)
    outbox = WebhookOutbox(
        WebhookOptions(secret=SECRET, policy=LOOPBACK, backoff_s=0.05), store, recorded.append
    )
    outbox.start()
    try:
        assert wait_for(lambda: len(recorded) == 1)
        assert len(receiver.requests) == 1
        assert receiver.requests[0][1]["webhook-id"] == left.id
        assert (recorded[0].state, recorded[0].attempts) == ("delivered", 3)
        kept = store.get_delivery(left.id)
        assert kept is not None
        assert kept.state == "delivered"
        assert store.next_delivery_at() is None  # nothing pending any more
    finally:
        outbox.stop()
        store.close()
        receiver.close()


def test_a_failed_attempt_is_rescheduled_in_the_store(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.status = 503
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    recorded: list[Delivery] = []
    options = WebhookOptions(secret=SECRET, policy=LOOPBACK, backoff_s=30, max_attempts=3)
    outbox = WebhookOutbox(options, store, recorded.append)
    delivery = outbox.new("j2", f"http://127.0.0.1:{receiver.port}/x", "{}")
    store.save_delivery(delivery)
    before = time.time()
    outbox.start()
    try:
        assert wait_for(lambda: len(recorded) == 1)
        pending = store.get_delivery(delivery.id)
        assert pending is not None
        assert (pending.state, pending.attempts, pending.last_error) == ("pending", 1, "HTTP 503")
        # The next try is a backoff away, kept in the store (so a restart keeps it too).
        assert pending.next_attempt_at is not None
        assert before + 30 <= pending.next_attempt_at <= time.time() + 30
        assert store.claim_deliveries(time.time(), time.time() + 60, 10) == []  # not due
    finally:
        outbox.stop()
        store.close()
        receiver.close()


def test_a_sigkilled_gateway_delivers_its_pending_webhook_after_restart(
    tmp_path: Path, fake: FakeComfyUI
) -> None:
    receiver = Receiver()
    receiver.status = 503  # the receiver is down when the job ends
    env = {
        "COMFYGATE_WEBHOOK_ALLOW_PRIVATE": "true",
        "COMFYGATE_WEBHOOK_SECRET": SECRET,
        "COMFYGATE_WEBHOOK_BACKOFF_S": "3",
    }
    data = tmp_path / "data"
    gateway = GatewayProcess(fake.url, data, tmp_path / "gw1.log", env=env)
    try:
        job = requests.post(
            f"{gateway.url}/v1/jobs",
            json={**SOLID, "webhook_url": f"http://127.0.0.1:{receiver.port}/in"},
            timeout=10,
        ).json()
        assert wait_for(lambda: len(receiver.requests) == 1)

        def first_failure_written() -> bool:
            job_now = requests.get(f"{gateway.url}/v1/jobs/{job['id']}", timeout=10).json()
            return (job_now["webhook"] or {}).get("last_error") == "HTTP 503"

        assert wait_for(first_failure_written)
        gateway.kill()  # with the retry pending (due 3 s after the first attempt)
    finally:
        gateway.stop()
    receiver.status = 200
    again = GatewayProcess(fake.url, data, tmp_path / "gw2.log", env=env, port=gateway.port)
    try:
        assert wait_for(lambda: len(receiver.requests) == 2, 30)
        (_, first, _), (_, second, data2) = receiver.requests
        assert second["webhook-id"] == first["webhook-id"]  # the same delivery, not a new one
        assert Webhook(SECRET.encode()).verify(data2, second)["id"] == job["id"]

        def delivered() -> bool:
            state = requests.get(f"{again.url}/v1/jobs/{job['id']}", timeout=10).json()["webhook"]
            return bool(state["delivered"]) and state["attempts"] == 2

        assert wait_for(delivered)
    finally:
        again.stop()
        receiver.close()
