"""A table of hostile inputs against every route: each gets a documented 4xx in the API's
error shape, never a 5xx, a file outside the data directory, a path or a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import body

JOB = "0123456789abcdef0123456789abcdef"
TRAVERSALS = [
    "..",
    "../../etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2Fetc%2Fpasswd",
    "%252e%252e%252f",
    "....//....//etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/passwd",
    "%00",
    "a%00.png",
    "~root",
    "%c0%ae%c0%ae/",
]
ROUTES = [
    ("get", "/v1/jobs/{x}"),
    ("delete", "/v1/jobs/{x}"),
    ("get", "/v1/jobs/{x}/events"),
    ("get", "/v1/outputs/{x}/3-0.png"),
    ("get", "/v1/outputs/" + JOB + "/{x}"),
    ("get", "/v1/outputs/{x}/{x}"),
    ("get", "/v1/templates/{x}"),
    ("post", "/v1/templates/{x}/generate"),
    ("post", "/v1/templates/{x}/jobs"),
    ("get", "/v1/batches/{x}"),
    ("get", "/v1/batches/{x}/archive"),
    ("get", "/web/{x}"),
    ("get", "/docs/{x}"),
]


@pytest.mark.parametrize("value", TRAVERSALS)
@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_path_traversal_in_every_route_parameter(
    client: FlaskClient, method: str, route: str, value: str
) -> None:
    resp = getattr(client, method)(route.replace("{x}", value), json={"template": "solid"})
    assert resp.status_code in (400, 404, 405), (route, value, resp.status_code)
    text = resp.get_data(as_text=True)
    assert "root:" not in text
    assert "[fonts]" not in text
    assert "Traceback" not in text
    error = body(resp)["error"]
    assert error["code"] in ("not_found", "bad_request", "method_not_allowed", "validation_error")


HOSTILE_BODIES: list[tuple[str, Any, int, str]] = [
    ("10 MB prompt", {"prompt": "x" * 10_000_000}, 400, "validation_error"),
    ("prompt over MAX_BODY_MB", {"prompt": "x" * 21_000_000}, 413, "payload_too_large"),
    ("deep JSON", '{"prompt":' + "[" * 5000 + "]" * 5000 + "}", 400, "bad_request"),
    ("deep object", '{"a":' * 100 + "1" + "}" * 100, 400, "bad_request"),
    ("many values", "[" + ",".join(["{}"] * 200_000) + "]", 400, "bad_request"),
    ("huge number", '{"prompt":"x","steps":' + "9" * 5000 + "}", 400, "bad_request"),
    ("NaN", '{"prompt":"x","cfg":NaN}', 400, "bad_request"),
    ("Infinity timeout", '{"prompt":"x","timeout_s":Infinity}', 400, "bad_request"),
    ("duplicate keys", '{"prompt":"x","prompt":{"a":1}}', 400, "validation_error"),
    ("bool as int", {"prompt": "x", "steps": True}, 400, "validation_error"),
    ("string as int", {"prompt": "x", "steps": "20"}, 400, "validation_error"),
    ("template traversal", {"template": "../../etc/passwd"}, 404, "not_found"),
    ("template object", {"template": {"$ne": ""}}, 400, "validation_error"),
    ("NUL in prompt", {"prompt": "a\u0000b", "steps": 0}, 400, "validation_error"),
    (
        "checkpoint path",
        {"prompt": "x", "checkpoint": "../../../etc/passwd"},
        400,
        "validation_error",
    ),
    ("unknown key", {"prompt": "x", "__proto__": {}}, 400, "validation_error"),
    ("empty body", "", 400, "bad_request"),
    ("not UTF-8", b"\xff\xfe{", 400, "bad_request"),
]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [(p, s, c) for _, p, s, c in HOSTILE_BODIES],
    ids=[i for i, _, _, _ in HOSTILE_BODIES],
)
@pytest.mark.parametrize("route", ["/v1/generate", "/v1/jobs"])
def test_hostile_bodies(
    client: FlaskClient, fake: FakeComfyUI, route: str, payload: Any, status: int, code: str
) -> None:
    data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    resp = client.post(route, data=data, content_type="application/json")
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert body(resp)["error"]["code"] == code
    assert fake.submissions == []


@pytest.mark.parametrize(
    "url",
    ["ftp://169.254.169.254/", "file:///etc/passwd", "http://user:pw@example.com/", "x" * 3000],
)
def test_hostile_webhook_urls(client: FlaskClient, fake: FakeComfyUI, url: str) -> None:
    resp = client.post("/v1/jobs", json={"template": "solid", "webhook_url": url})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "webhook_url"
    assert fake.submissions == []
