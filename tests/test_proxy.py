"""Behind a reverse proxy (TRUSTED_PROXIES): X-Forwarded-* are believed only when the operator
says how many proxies append to them; a client can never pick its own address otherwise."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp
from tests.helpers import parse_sse

PROXY = {"REMOTE_ADDR": "10.9.9.9"}  # where every request comes from: the proxy


def get(client: FlaskClient, forwarded_for: str) -> int:
    resp = client.get(
        "/v1/templates", headers={"X-Forwarded-For": forwarded_for}, environ_base=PROXY
    )
    return resp.status_code


def test_a_spoofed_forwarded_for_does_not_escape_a_per_address_limit(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([fake.url], rate_limit="2/minute").test_client()
    assert [get(client, f"203.0.113.{i}") for i in range(3)] == [200, 200, 429]


def test_with_a_trusted_proxy_each_client_has_its_own_limit(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([fake.url], rate_limit="2/minute", trusted_proxies=1).test_client()
    assert [get(client, f"203.0.113.{i}") for i in range(3)] == [200, 200, 200]
    assert [get(client, "203.0.113.50") for _ in range(3)] == [200, 200, 429]
    # Only the last entry is the proxy's to vouch for: what the client put before it is not.
    assert [get(client, f"198.51.100.{i}, 203.0.113.60") for i in range(3)] == [200, 200, 429]


def test_a_forwarded_prefix_is_in_the_location_only_from_a_trusted_proxy(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    headers = {"X-Forwarded-Prefix": "/comfygate", "X-Forwarded-Proto": "https"}
    for trusted, prefix in ((0, ""), (1, "/comfygate")):
        client = make_app([fake.url], trusted_proxies=trusted).test_client()
        resp = client.post("/v1/jobs", json={"template": "solid"}, headers=headers)
        assert resp.status_code == 202
        assert resp.headers["Location"] == f"{prefix}/v1/jobs/{resp.get_json()['id']}"


def test_the_access_log_names_the_client_the_trusted_proxy_saw(
    fake: FakeComfyUI, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "comfygate.access")
    for trusted, client in ((0, "10.9.9.9"), (1, "203.0.113.7")):
        caplog.clear()
        app = make_app([fake.url], trusted_proxies=trusted)
        assert get(app.test_client(), "203.0.113.7") == 200
        (line,) = [r for r in caplog.records if r.getMessage() == "request"]
        assert line.__dict__["client"] == client


def test_job_urls_carry_the_prefix_only_from_a_trusted_proxy(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    """Behind a proxy at /comfygate, a client follows a job's output url through the proxy
    as it is: in the job object, the job list, the event stream and a batch."""
    headers = {"X-Forwarded-Prefix": "/comfygate"}
    for trusted, prefix in ((0, ""), (1, "/comfygate")):
        client = make_app([fake.url], trusted_proxies=trusted).test_client()
        made = client.post(
            "/v1/generate",
            json={"template": "solid", "cache": False},
            headers={**headers, "Accept": "application/json"},
        ).get_json()
        expected = f"{prefix}/v1/outputs/{made['id']}/{made['outputs'][0]['filename']}"
        assert made["outputs"][0]["url"] == expected
        read = client.get(f"/v1/jobs/{made['id']}", headers=headers).get_json()
        assert read["outputs"][0]["url"] == expected
        listed = client.get("/v1/jobs", headers=headers).get_json()["jobs"][0]
        assert listed["outputs"][0]["url"] == expected
        events = parse_sse(
            client.get(f"/v1/jobs/{made['id']}/events", headers=headers).get_data(as_text=True)
        )
        assert [d["url"] for name, d in events if name == "output"] == [expected]
        batch = client.post("/v1/batches", json={"template": "solid", "items": [{}]}).get_json()
        shown = client.get(f"/v1/batches/{batch['id']}", headers=headers).get_json()
        assert shown["archive_url"] == f"{prefix}/v1/batches/{batch['id']}/archive"
        # The path itself is the proxy's to strip: the gateway serves the unprefixed one.
        assert (
            client.get(f"/v1/outputs/{made['id']}/{made['outputs'][0]['filename']}").status_code
            == 200
        )
