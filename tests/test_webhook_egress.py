"""Webhooks under the egress policy (issue 15 item 1): no webhook reaches loopback, private,
link-local or metadata addresses, however the address is spelt or resolved, unless
``WEBHOOK_ALLOW_PRIVATE``; a refusal is a 400 at submit, and the address is checked again, on
its resolution, at every delivery, with the POST sent to the checked address.

A receiver listens on 127.0.0.1 in every test: it must never be reached where the policy says
no. The connection mechanics are shown on 127.0.0.2, which the ``pretend_public`` fixture
(tests/test_inputs.py) lets count as public; 127.0.0.1 stays refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from comfygate.api.images import RESOLVER
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.receivers import Receiver
from tests.test_inputs import NOBODY_THERE, PRETEND_PUBLIC, FakeDNS, pretend_public  # noqa: F401

SOLID = {"template": "solid", "width": 8, "height": 8, "cache": False}


@pytest.fixture
def loopback() -> Iterator[Receiver]:
    r = Receiver("127.0.0.1")
    yield r
    r.close()


@pytest.fixture
def public(pretend_public: None) -> Iterator[Receiver]:  # noqa: F811
    r = Receiver(PRETEND_PUBLIC)
    yield r
    r.close()


def gateway_app(make_app: MakeApp, fake: FakeComfyUI, dns: FakeDNS, **settings: Any) -> Flask:
    app = make_app([fake.url], webhook_backoff_s=0.01, webhook_max_attempts=3, **settings)
    app.extensions[RESOLVER] = dns
    app.extensions["comfygate"].jobs.webhooks.resolver = dns
    return app


def hook(client: FlaskClient, job_id: str) -> dict[str, Any]:
    """The job's webhook delivery state ({} until the job has ended)."""
    state: dict[str, Any] | None = body(client.get(f"/v1/jobs/{job_id}"))["webhook"]
    return state or {}


def spellings(port: int) -> list[str]:
    """Every way the probe reached loopback, plus the metadata and private addresses."""
    return [
        f"http://127.0.0.1:{port}/x",
        f"http://127.1:{port}/x",
        f"http://2130706433:{port}/x",
        f"http://0x7f000001:{port}/x",
        f"http://0177.0.0.1:{port}/x",
        f"http://localhost:{port}/x",
        f"http://LOCALHOST.:{port}/x",
        f"http://[::1]:{port}/x",
        f"http://[::ffff:127.0.0.1]:{port}/x",
        f"http://loopback.example:{port}/x",  # a name that resolves to 127.0.0.1
        f"http://mixed.example:{port}/x",  # one public and one loopback address
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.5:8188/interrupt",
        "http://0.0.0.0:8188/",
        f"http://127.0.0.1:{port}\n/x",
    ]


DNS_RECORDS = {
    "loopback.example": ["127.0.0.1"],
    "mixed.example": [PRETEND_PUBLIC, "127.0.0.1"],
}


def test_every_spelling_of_a_private_address_is_refused_at_submit(
    fake: FakeComfyUI, make_app: MakeApp, loopback: Receiver
) -> None:
    dns = FakeDNS(dict(DNS_RECORDS))
    client = gateway_app(make_app, fake, dns).test_client()
    for url in spellings(loopback.port):
        resp = client.post("/v1/jobs", json={**SOLID, "webhook_url": url})
        assert resp.status_code == 400, (url, resp.get_data(as_text=True))
        error = body(resp)["error"]
        assert error["code"] == "validation_error"
        assert error["details"]["field"] == "webhook_url"
        assert "127.0.0.1" not in error["message"] or "127.0.0.1" in url  # nothing resolved leaks
    assert fake.submissions == []
    assert loopback.requests == []


def test_another_tenant_cannot_aim_a_webhook_at_comfyui(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    """The probe's worst case: key B's webhook at ComfyUI's /interrupt stopped key A's job."""
    user_a, user_b = "key-a-0123456789abcdef0123", "key-b-0123456789abcdef0123"
    client = make_app([fake.url], api_keys=f"{user_a},{user_b}").test_client()
    fake.caching = False
    fake.service_time_s = 0.5
    a_job = client.post(
        "/v1/jobs", json=SOLID, headers={"Authorization": f"Bearer {user_a}"}
    ).get_json()
    resp = client.post(
        "/v1/jobs",
        json={**SOLID, "color": 1, "webhook_url": f"{fake.url}/interrupt"},
        headers={"Authorization": f"Bearer {user_b}"},
    )
    assert resp.status_code == 400
    assert "private or reserved address" in body(resp)["error"]["message"]
    fake.service_time_s = 0

    def a_status() -> str:
        headers = {"Authorization": f"Bearer {user_a}"}
        status: str = client.get(f"/v1/jobs/{a_job['id']}", headers=headers).get_json()["status"]
        return status

    assert wait_for(lambda: a_status() in ("succeeded", "failed", "cancelled"))
    assert a_status() == "succeeded"
    assert len(fake.submissions) == 1


def test_delivered_to_the_checked_address_with_the_host_name(
    fake: FakeComfyUI, make_app: MakeApp, public: Receiver
) -> None:
    dns = FakeDNS({"hooks.example": [PRETEND_PUBLIC]})
    client = gateway_app(make_app, fake, dns).test_client()
    job = client.post(
        "/v1/jobs", json={**SOLID, "webhook_url": f"http://hooks.example:{public.port}/in"}
    ).get_json()
    assert wait_for(lambda: len(public.requests) == 1)
    path, headers, data = public.requests[0]
    assert path == "/in"
    assert headers["Host"] == f"hooks.example:{public.port}"
    assert json.loads(data)["id"] == job["id"]
    assert wait_for(lambda: bool(hook(client, job["id"]).get("delivered")))
    # Resolved at submit and again at delivery.
    assert [host for host, _ in dns.calls] == ["hooks.example", "hooks.example"]


def test_a_name_that_turns_private_after_submit_is_refused_at_delivery(
    fake: FakeComfyUI, make_app: MakeApp, public: Receiver, loopback: Receiver
) -> None:
    """DNS rebinding: public when the job is submitted, loopback when the webhook is sent."""
    dns = FakeDNS({"rebind.example": [PRETEND_PUBLIC]})
    client = gateway_app(make_app, fake, dns).test_client()
    fake.hold()
    job = client.post(
        "/v1/jobs", json={**SOLID, "webhook_url": f"http://rebind.example:{loopback.port}/x"}
    ).get_json()
    dns.records["rebind.example"] = ["127.0.0.1"]
    fake.release()
    assert wait_for(lambda: bool(hook(client, job["id"]).get("last_error")))
    state = hook(client, job["id"])
    assert state["delivered"] is False
    assert state["attempts"] == 1  # the policy's refusal is final: no retries
    assert "private or reserved address" in state["last_error"]
    assert loopback.requests == []
    assert public.requests == []


def test_redirects_are_not_followed(
    fake: FakeComfyUI, make_app: MakeApp, public: Receiver, loopback: Receiver
) -> None:
    public.status = 307
    public.location = f"http://127.0.0.1:{loopback.port}/x"
    dns = FakeDNS({"hooks.example": [PRETEND_PUBLIC]})
    client = gateway_app(make_app, fake, dns).test_client()
    job = client.post(
        "/v1/jobs", json={**SOLID, "webhook_url": f"http://hooks.example:{public.port}/in"}
    ).get_json()
    assert wait_for(lambda: hook(client, job["id"]).get("attempts") == 3)
    state = hook(client, job["id"])
    assert state == {**state, "delivered": False, "last_error": "HTTP 307"}
    assert len(public.requests) == 3
    assert loopback.requests == []


def test_failures_say_nothing_about_the_network(
    fake: FakeComfyUI,
    make_app: MakeApp,
    pretend_public: None,  # noqa: F811
) -> None:
    """A closed port is 'could not be reached', not an exception name a scanner can read."""
    dns = FakeDNS({"closed.example": [NOBODY_THERE]})
    client = gateway_app(make_app, fake, dns).test_client()
    job = client.post(
        "/v1/jobs", json={**SOLID, "webhook_url": "http://closed.example:9/x"}
    ).get_json()
    assert wait_for(lambda: hook(client, job["id"]).get("attempts") == 3)
    state = hook(client, job["id"])
    assert state["last_error"] == "'webhook_url' URL could not be reached"


def test_webhook_allow_private_lets_loopback_through(
    fake: FakeComfyUI, make_app: MakeApp, loopback: Receiver
) -> None:
    client = make_app([fake.url], webhook_allow_private=True).test_client()
    job = client.post("/v1/jobs", json={**SOLID, "webhook_url": f"http://127.1:{loopback.port}/x"})
    assert job.status_code == 400  # a non-canonical spelling is never taken
    job = client.post(
        "/v1/jobs", json={**SOLID, "webhook_url": f"http://127.0.0.1:{loopback.port}/x"}
    ).get_json()
    assert wait_for(lambda: len(loopback.requests) == 1)
    assert json.loads(loopback.requests[0][2])["id"] == job["id"]
