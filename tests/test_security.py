"""API keys, scopes, ownership, security headers, request limits, rate limits and cost limits."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from comfygate.app import create_app
from comfygate.config import ConfigError
from comfygate.keys import KeyRing, owner_id
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.live import serve

USER = "user-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
WORKFLOWS = "workflows-key-0123456789ab"
KEYS = f"{USER},{OTHER},{ADMIN}:admin,{WORKFLOWS}:workflows"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed_app(fake: FakeComfyUI, make_app: MakeApp) -> Flask:
    return make_app([fake.url], api_keys=KEYS)


@pytest.fixture
def keyed(keyed_app: Flask) -> FlaskClient:
    return keyed_app.test_client()


# --- authentication -------------------------------------------------------------------------

PROTECTED = [
    ("post", "/v1/generate"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/0123456789abcdef0123456789abcdef"),
    ("delete", "/v1/jobs/0123456789abcdef0123456789abcdef"),
    ("get", "/v1/jobs/0123456789abcdef0123456789abcdef/events"),
    ("get", "/v1/outputs/0123456789abcdef0123456789abcdef/9-0.png"),
    ("get", "/v1/templates"),
    ("get", "/v1/templates/txt2img"),
    ("post", "/v1/templates/solid/generate"),
    ("post", "/v1/workflows/run"),
    ("get", "/v1/backends"),
    ("get", "/metrics"),
    ("get", "/v1/templates/check"),
    ("get", "/v1/nope"),  # unknown routes too: nothing is said about what exists
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789abcdef"},
        {"X-API-Key": "wrong"},
        {"Authorization": f"Basic {USER}"},  # only the Bearer scheme
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {USER}x"},
        {"Authorization": f"Bearer {USER[:-1]}"},
    ],
)
def test_keys_are_required(
    keyed: FlaskClient, method: str, path: str, headers: dict[str, str]
) -> None:
    resp = getattr(keyed, method)(path, headers=headers, json={})
    assert resp.status_code == 401, (path, resp.get_data(as_text=True))
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert body(resp)["error"]["code"] == "unauthorized"


def test_a_key_in_the_query_string_is_not_accepted(keyed: FlaskClient) -> None:
    assert keyed.get(f"/v1/templates?api_key={USER}").status_code == 401
    assert keyed.get(f"/v1/templates?key={USER}").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [bearer(USER), {"X-API-Key": USER}, {"authorization": f"bearer {USER}"}],
)
def test_keys_are_accepted_in_both_headers(keyed: FlaskClient, headers: dict[str, str]) -> None:
    assert keyed.get("/v1/templates", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/openapi.json", "/docs", "/", "/web/app.js"]
)
def test_public_routes_need_no_key(keyed: FlaskClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_cors_preflight_passes_without_a_key(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], api_keys=KEYS, cors_origins="https://app.example").test_client()
    resp = client.options(
        "/v1/jobs",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"


@pytest.mark.parametrize("path", ["/v1/backends", "/metrics", "/v1/templates/check"])
def test_operations_routes_need_the_admin_scope(keyed: FlaskClient, path: str) -> None:
    resp = keyed.get(path, headers=bearer(USER))
    assert resp.status_code == 403
    assert body(resp)["error"]["code"] == "forbidden"
    assert keyed.get(path, headers=bearer(ADMIN)).status_code == 200


def test_open_gateway_needs_no_key(client: FlaskClient) -> None:
    assert client.get("/v1/backends").status_code == 200
    assert client.get("/v1/templates").status_code == 200


def test_identify_compares_every_key_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing([f"key-{i:02d}-0123456789abcdef" for i in range(10)])
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    first = ring.identify("key-00-0123456789abcdef")
    assert first is not None
    assert first.owner == owner_id("key-00-0123456789abcdef")
    assert len(calls) == 10  # no early exit on the first key
    calls.clear()
    assert ring.identify("nope") is None
    assert len(calls) == 10


def test_keys_file_with_scopes_and_rotation(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# operators\n{ADMIN}:admin, workflows\n\n{USER}\n")
    client = make_app([fake.url], api_keys_file=str(keys_file)).test_client()
    assert client.get("/v1/backends", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/v1/backends", headers=bearer(USER)).status_code == 403
    assert client.get("/v1/templates", headers=bearer(OTHER)).status_code == 401
    # Rotation: the file changes, the gateway follows without a restart.
    monkeypatch.setattr("comfygate.keys.RELOAD_CHECK_S", 0.0)
    keys_file.write_text(f"{OTHER}\n")
    assert wait_for(lambda: client.get("/v1/templates", headers=bearer(OTHER)).status_code == 200)
    assert client.get("/v1/templates", headers=bearer(USER)).status_code == 401
    # A broken file keeps the keys read last.
    keys_file.write_text("bad key with spaces\n")
    assert client.get("/v1/templates", headers=bearer(OTHER)).status_code == 200


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"api_keys": "k:root"}, "unknown scope"),
        ({"api_keys": "k e y"}, "printable ASCII"),
        ({"api_keys_file": "/nonexistent/keys"}, "cannot read"),
        ({"rate_limit": "lots"}, "not a rate limit"),
        ({"redis_url": "localhost:6379"}, "REDIS_URL"),
        ({"redis_url": "http://127.0.0.1:6379"}, "not a storage URI"),
        ({"rate_limit_storage_uri": "mongodb://db"}, "RATE_LIMIT_STORAGE_URI"),
    ],
)
def test_bad_key_and_limit_settings_stop_the_start(
    tmp_path: Path, settings: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        create_app(
            {"backends": ["http://127.0.0.1:9"], "data_dir": str(tmp_path), **settings},
            start=False,
            configure_logging=False,
        )
    assert "k e y" not in str(info.value)
    assert "\n" not in str(info.value)


def test_keys_are_never_logged(
    keyed: FlaskClient, fake: FakeComfyUI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keyed.post("/v1/generate", json={"template": "solid"}, headers=bearer(USER))
    keyed.get("/v1/jobs", headers={"X-API-Key": "wrong-but-secret-0123456789"})
    keyed.get("/v1/backends", headers=bearer(USER))
    text = caplog.text
    assert USER not in text
    assert "wrong-but-secret" not in text


# --- ownership ------------------------------------------------------------------------------


def test_jobs_and_outputs_belong_to_their_key(keyed: FlaskClient, keyed_app: Flask) -> None:
    resp = keyed.post("/v1/generate", json={"template": "solid", "width": 8}, headers=bearer(USER))
    assert resp.status_code == 200
    job_id = resp.headers["X-Job-Id"]
    output = f"/v1/outputs/{job_id}/3-0.png"
    for key in (USER, ADMIN):
        assert keyed.get(f"/v1/jobs/{job_id}", headers=bearer(key)).status_code == 200
        assert keyed.get(output, headers=bearer(key)).status_code == 200
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events", output):
        resp = keyed.get(path, headers=bearer(OTHER))
        assert resp.status_code == 404, path
        assert body(resp)["error"]["code"] == "not_found"
    assert keyed.delete(f"/v1/jobs/{job_id}", headers=bearer(OTHER)).status_code == 404
    mine = body(keyed.get("/v1/jobs", headers=bearer(USER)))["jobs"]
    assert [j["id"] for j in mine] == [job_id]
    assert body(keyed.get("/v1/jobs", headers=bearer(OTHER)))["jobs"] == []
    everyone = body(keyed.get("/v1/jobs", headers=bearer(ADMIN)))["jobs"]
    assert job_id in [j["id"] for j in everyone]
    # The job row holds a hash of the key, never the key.
    job = keyed_app.extensions["comfygate"].jobs.get(job_id)
    assert job.owner == owner_id(USER)
    assert USER not in str(job.to_record())
    assert "owner" not in job.public()


def test_cancel_is_refused_for_another_key(keyed: FlaskClient, fake: FakeComfyUI) -> None:
    fake.hold()
    try:
        job = body(keyed.post("/v1/jobs", json={"template": "solid"}, headers=bearer(USER)))
        assert keyed.delete(f"/v1/jobs/{job['id']}", headers=bearer(OTHER)).status_code == 404
        resp = keyed.delete(f"/v1/jobs/{job['id']}", headers=bearer(USER))
        assert resp.status_code == 200
        assert body(resp)["status"] == "cancelled"
    finally:
        fake.release()


def test_idempotency_keys_are_per_api_key(keyed: FlaskClient) -> None:
    same = {"Idempotency-Key": "retry-1"}
    first = body(
        keyed.post("/v1/jobs", json={"template": "solid"}, headers={**same, **bearer(USER)})
    )
    again = body(
        keyed.post("/v1/jobs", json={"template": "solid"}, headers={**same, **bearer(USER)})
    )
    assert again["id"] == first["id"]
    other = keyed.post(
        "/v1/jobs", json={"template": "solid", "width": 9}, headers={**same, **bearer(OTHER)}
    )
    assert other.status_code == 202  # not a conflict, not the first key's job
    assert body(other)["id"] != first["id"]


# --- headers, hygiene -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "json_body"),
    [
        ("get", "/v1/templates", None),
        ("get", "/v1/jobs/nope", None),
        ("post", "/v1/generate", {"prompt": "x", "steps": 0}),
        ("get", "/healthz", None),
        ("get", "/", None),
        ("get", "/openapi.json", None),
    ],
)
def test_security_headers_on_every_answer(
    client: FlaskClient, method: str, path: str, json_body: Any
) -> None:
    resp = getattr(client, method)(path, json=json_body)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    if resp.mimetype == "application/json":
        assert resp.headers["Cache-Control"] == "no-store"
    assert "Server" not in resp.headers


def test_no_server_version_over_real_http(app: Flask) -> None:
    with serve(app) as url:
        for path in ("/healthz", "/v1/nope", "/v1/jobs/x"):
            resp = requests.get(url + path, timeout=10)
            server = resp.headers.get("Server", "")
            assert not any(c.isdigit() for c in server), server
            for leak in ("waitress", "Werkzeug", "Python", "Flask"):
                assert leak.lower() not in server.lower()
                assert leak not in resp.text


# --- rate limits and cost limits ------------------------------------------------------------


def test_rate_limit_per_key_with_retry_after(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], api_keys=KEYS, rate_limit="3/minute").test_client()
    for _ in range(3):
        assert client.get("/v1/templates", headers=bearer(USER)).status_code == 200
    resp = client.get("/v1/templates", headers=bearer(USER))
    assert resp.status_code == 429
    error = body(resp)["error"]
    assert error["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert int(resp.headers["Retry-After"]) == error["details"]["retry_after_s"]
    # Another key has its own budget; public routes are not counted.
    assert client.get("/v1/templates", headers=bearer(OTHER)).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_rate_limit_per_address_without_keys(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], rate_limit="2/minute").test_client()
    assert client.get("/v1/templates").status_code == 200
    assert client.get("/v1/templates").status_code == 200
    assert client.get("/v1/templates").status_code == 429
    other = {"REMOTE_ADDR": "10.9.9.9"}
    assert client.get("/v1/templates", environ_base=other).status_code == 200


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"prompt": "x", "width": 512, "height": 512, "steps": 1}, "width"),
        ({"prompt": "x", "width": 64, "height": 64}, "steps"),  # the default (20) counts
        ({"prompt": "x", "width": 64, "height": 64, "steps": 1, "batch_size": 3}, "batch_size"),
        ({"prompt": "x" * 101, "width": 64, "height": 64, "steps": 1}, "prompt"),
        (
            {"prompt": "x", "negative_prompt": "y" * 101, "width": 64, "height": 64, "steps": 1},
            "negative_prompt",
        ),
    ],
)
def test_cost_limits_name_the_field(
    fake: FakeComfyUI, make_app: MakeApp, request_body: dict[str, Any], field: str
) -> None:
    client = make_app(
        [fake.url], max_pixels=128 * 128, max_steps=10, max_batch_size=2, max_prompt_chars=100
    ).test_client()
    resp = client.post("/v1/generate", json=request_body)
    assert resp.status_code == 400
    error = body(resp)["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == field
    ok = {"prompt": "x", "width": 64, "height": 64, "steps": 2}
    assert client.post("/v1/generate", json=ok).status_code == 200
