"""The browser threat model (issue 15 item 6: cross-site requests, DNS rebinding), backend
names that never tell an address (item 7), and the limit on wrong API keys (item 9)."""

from __future__ import annotations

import io

import pytest
from flask.testing import FlaskClient

from comfygate.config import ConfigError
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body

SOLID = {"template": "solid", "width": 8, "height": 8}

# --- Host: DNS rebinding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["rebind.evil.example", "rebind.evil.example:8288", "localhost.evil.example", "10.0.0.5"],
)
def test_a_rebound_host_is_refused(client: FlaskClient, fake: FakeComfyUI, host: str) -> None:
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host: nothing is read."""
    resp = client.get("/v1/jobs", headers={"Host": host})
    assert resp.status_code == 400
    error = body(resp)["error"]
    assert error["code"] == "bad_request"
    assert "ALLOWED_HOSTS" in error["message"]
    assert client.post("/v1/jobs", json=SOLID, headers={"Host": host}).status_code == 400
    assert client.get("/healthz", headers={"Host": host}).status_code == 400
    assert fake.submissions == []


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8288", "[::1]:8288", "LOCALHOST:1"])
def test_loopback_hosts_are_answered_by_default(client: FlaskClient, host: str) -> None:
    assert client.get("/v1/jobs", headers={"Host": host}).status_code == 200


def test_allowed_hosts_setting(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], allowed_hosts="gateway.example,.internal.example").test_client()
    ok = ["gateway.example", "gateway.example:443", "a.internal.example", "internal.example"]
    for host in ok:
        assert client.get("/v1/jobs", headers={"Host": host}).status_code == 200, host
    for host in ["localhost", "evil.example", "gateway.example.evil.example", "xinternal.example"]:
        assert client.get("/v1/jobs", headers={"Host": host}).status_code == 400, host


def test_any_host_off_loopback(fake: FakeComfyUI, make_app: MakeApp) -> None:
    """Listening beyond loopback, the default is '*' (keys protect it; a proxy names it)."""
    client = make_app([fake.url], host="0.0.0.0").test_client()
    assert client.get("/v1/jobs", headers={"Host": "gpu.example"}).status_code == 200
    star = make_app([fake.url], allowed_hosts="*").test_client()
    assert star.get("/v1/jobs", headers={"Host": "anything.example"}).status_code == 200


def test_bad_allowed_hosts_stop_the_start(make_app: MakeApp, fake: FakeComfyUI) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_HOSTS"):
        make_app([fake.url], allowed_hosts="http://x.example/")


# --- Origin: cross-site requests ---------------------------------------------------------------


def test_a_cross_site_form_post_is_refused(client: FlaskClient, fake: FakeComfyUI) -> None:
    """The probe: a web page's form POST (multipart, no preflight) got 202, webhook included."""
    resp = client.post(
        "/v1/jobs",
        data={"params": '{"template": "solid"}', "image": (io.BytesIO(b"x"), "x.png")},
        content_type="multipart/form-data",
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert resp.status_code == 403
    error = body(resp)["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == {"header": "Origin"}
    assert body(client.get("/v1/jobs"))["jobs"] == []
    assert fake.submissions == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},  # sandboxed frames, file: pages
        {"Origin": "http://localhost:1"},  # another port is another origin
        {"Origin": "https://localhost"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_other_origins_are_refused_on_every_state_change(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    assert client.post("/v1/generate", json=SOLID, headers=headers).status_code == 403
    assert client.post("/v1/jobs", json=SOLID, headers=headers).status_code == 403
    assert (
        client.post("/v1/batches", json={**SOLID, "items": [{}]}, headers=headers).status_code
        == 403
    )
    assert client.delete("/v1/jobs/" + "0" * 32, headers=headers).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the SDK, servers: no browser headers
        {"Origin": "http://localhost"},  # the playground itself
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed in the address bar
    ],
)
def test_same_origin_and_non_browser_requests_pass(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    resp = client.post("/v1/jobs", json=SOLID, headers=headers)
    assert resp.status_code == 202, resp.get_data(as_text=True)


def test_cors_origins_may_post(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], cors_origins="https://app.example").test_client()
    allowed = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
    resp = client.post("/v1/jobs", json=SOLID, headers=allowed)
    assert resp.status_code == 202
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = {"Origin": "https://evil.example"}
    assert client.post("/v1/jobs", json=SOLID, headers=other).status_code == 403
    preflight = client.options(
        "/v1/jobs",
        headers={**allowed, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_reads_from_other_origins_are_left_to_the_browser(client: FlaskClient) -> None:
    """A GET changes nothing; the browser keeps its answer from the other page (no CORS)."""
    resp = client.get("/v1/jobs", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


# --- Backend names ---------------------------------------------------------------------------


def test_backend_addresses_are_never_shown(fake: FakeComfyUI, make_app: MakeApp) -> None:
    app = make_app([fake.url, "gpu=" + fake.url])
    client = app.test_client()
    address = fake.url.removeprefix("http://")
    ready = body(client.get("/readyz"))
    assert sorted(ready["usable_backends"]) == ["backend-1", "gpu"]
    backends = body(client.get("/v1/backends"))["backends"]
    assert sorted(b["name"] for b in backends) == ["backend-1", "gpu"]
    for route in ("/readyz", "/v1/backends", "/metrics", "/healthz"):
        assert address not in client.get(route).get_data(as_text=True), route


# --- Wrong keys --------------------------------------------------------------------------------

GOOD = "good-key-0123456789abcdef0123"


def test_wrong_keys_are_limited_per_address(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], api_keys=GOOD, auth_failure_limit="5/minute").test_client()
    wrong = {"Authorization": "Bearer wrong-key-0123456789abcdef"}
    statuses = [client.get("/v1/jobs", headers=wrong).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    limited = client.get("/v1/jobs", headers=wrong)
    error = body(limited)["error"]
    assert error["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert error["details"]["retry_after_s"] == int(limited.headers["Retry-After"])
    # A guess is not even looked at now, so a right key from this address waits too...
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {GOOD}"}).status_code == 429
    # ...while the public routes stay open and another address is not affected.
    assert client.get("/healthz").status_code == 200
    other = {"REMOTE_ADDR": "127.0.0.9"}
    resp = client.get("/v1/jobs", headers={"Authorization": f"Bearer {GOOD}"}, environ_base=other)
    assert resp.status_code == 200


def test_right_keys_are_not_counted(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], api_keys=GOOD, auth_failure_limit="2/minute").test_client()
    good = {"Authorization": f"Bearer {GOOD}"}
    assert all(client.get("/v1/jobs", headers=good).status_code == 200 for _ in range(10))


def test_requests_without_a_key_do_not_lock_an_address_out(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    """A probe without a key (a monitor, a misconfigured client) guesses nothing: it gets its
    401s, and the keyed clients behind the same address keep working."""
    client = make_app([fake.url], api_keys=GOOD, auth_failure_limit="3/minute").test_client()
    assert [client.get("/v1/jobs").status_code for _ in range(6)] == [401] * 6
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {GOOD}"}).status_code == 200
