"""Issue 15, items 10 to 12: non-finite numbers, what unauthenticated requests learn, which
files an output route serves, anchored name patterns, file permissions, and what a cache hit
tells about the job that first made its result."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for

USER = "user-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"
WORKFLOWS = "workflows-key-0123456789ab"
KEYS = f"{USER},{OTHER},{WORKFLOWS}:workflows"
ORIGIN = "https://app.example"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def solid_graph(width: Any = 16) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": 8, "batch_size": 1, "color": 255},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }


@pytest.fixture
def keyed_app(fake: FakeComfyUI, make_app: MakeApp) -> Flask:
    return make_app([fake.url], api_keys=KEYS, cors_origins=ORIGIN)


@pytest.fixture
def keyed(keyed_app: Flask) -> FlaskClient:
    return keyed_app.test_client()


# --- item 10: every non-finite number is refused -------------------------------------------

NON_FINITE = ["1e999", "-1e999", "1E400", "-0.5e99999"]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("/v1/generate", '{{"template":"solid","width":{n}}}'),
        ("/v1/jobs", '{{"template":"solid","nested":{{"deep":[1,{{"n":{n}}}]}}}}'),
        ("/v1/jobs", '{{"template":"solid","timeout_s":{n}}}'),
        ("/v1/batches", '{{"template":"solid","items":[{{"width":{n}}}]}}'),
        ("/v1/templates/solid/generate", '{{"color":{n}}}'),
    ],
)
def test_non_finite_numbers_are_bad_requests(
    client: FlaskClient, fake: FakeComfyUI, route: str, template: str, number: str
) -> None:
    resp = client.post(route, data=template.format(n=number), content_type="application/json")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert error["code"] == "bad_request"
    assert "finite" in error["message"]
    assert fake.submissions == []


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_non_finite_numbers_in_a_multipart_params_field(client: FlaskClient, number: str) -> None:
    resp = client.post(
        "/v1/generate",
        data={"params": f'{{"template":"solid","width":{number}}}'},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400
    assert body(resp)["error"]["code"] == "bad_request"


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_non_finite_numbers_in_a_raw_workflow(
    fake: FakeComfyUI, make_app: MakeApp, number: str
) -> None:
    client = make_app([fake.url], allow_raw_workflows=True).test_client()
    text = json.dumps({"workflow": solid_graph(width=123456789)}).replace("123456789", number)
    resp = client.post("/v1/workflows/run", data=text, content_type="application/json")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert body(resp)["error"]["code"] == "bad_request"
    assert fake.submissions == []


def test_large_finite_numbers_still_pass_parsing(client: FlaskClient) -> None:
    # 1e308 is finite: refused by the template's bounds (a validation error), not the parser.
    resp = client.post(
        "/v1/generate", data='{"template":"solid","width":1e308}', content_type="application/json"
    )
    assert resp.status_code == 400
    assert body(resp)["error"]["code"] == "validation_error"


# --- item 11: unauthenticated requests learn nothing about routes --------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs",
        "/v1/generate",
        "/v1/jobs/0123456789abcdef0123456789abcdef",
        "/v1/workflows/run",
        "/metrics",
        "/v1/nope",
        "/nope/at/all",
    ],
)
@pytest.mark.parametrize("method", ["OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE"])
def test_unauthenticated_requests_all_answer_401(
    keyed: FlaskClient, path: str, method: str
) -> None:
    resp = keyed.open(path, method=method)
    assert resp.status_code == 401, (method, path, resp.status_code)
    assert "Allow" not in resp.headers
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert body(resp)["error"]["code"] == "unauthorized"


def test_a_known_and_an_unknown_route_look_the_same_without_a_key(keyed: FlaskClient) -> None:
    known, unknown = keyed.options("/v1/jobs"), keyed.options("/v1/nope")

    def seen(resp: Any) -> tuple[int, list[tuple[str, str]], Any]:
        headers = [(k, v) for k, v in resp.headers if k not in ("X-Request-Id", "Content-Length")]
        return resp.status_code, sorted(headers), body(resp)

    assert seen(known) == seen(unknown)


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/generate", "/v1/nope"])
def test_cors_preflight_from_an_allowed_origin_works_without_a_key(
    keyed: FlaskClient, path: str
) -> None:
    resp = keyed.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    # Every path alike (a browser preflight carries no key, so it must not tell routes apart).
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Allow" not in resp.headers


def test_cors_preflight_from_another_origin_needs_a_key(keyed: FlaskClient) -> None:
    resp = keyed.options(
        "/v1/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 401
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_public_routes_and_keyed_options_still_answer(keyed: FlaskClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.options("/healthz").status_code == 200
    assert keyed.options("/v1/jobs", headers=bearer(USER)).status_code == 200
    assert keyed.get("/v1/nope", headers=bearer(USER)).status_code == 404


# --- item 12: outputs, name patterns, file modes, cache hits -------------------------------


def test_only_recorded_outputs_are_served(keyed: FlaskClient, keyed_app: Flask) -> None:
    resp = keyed.post(
        "/v1/generate",
        json={"template": "solid"},
        headers={**bearer(USER), "Accept": "application/json"},
    )
    job = body(resp)
    job_id = job["id"]
    recorded = job["outputs"][0]
    assert keyed.get(recorded["url"], headers=bearer(USER)).status_code == 200
    folder = keyed_app.extensions["comfygate"].data_dir / "outputs" / job_id
    (folder / "evil.html").write_text("<script>alert(1)</script>")
    (folder / "9-0.png").write_bytes((folder / recorded["filename"]).read_bytes())
    for name in ("evil.html", "9-0.png"):
        resp = keyed.get(f"/v1/outputs/{job_id}/{name}", headers=bearer(USER))
        assert resp.status_code == 404, name
        assert body(resp)["error"]["code"] == "not_found"


@pytest.mark.parametrize("node_id", ["1\n", "1\r\n", "\n1"])
def test_a_node_id_with_a_newline_is_refused(
    fake: FakeComfyUI, make_app: MakeApp, node_id: str
) -> None:
    client = make_app([fake.url], allow_raw_workflows=True).test_client()
    graph = solid_graph()
    graph[node_id] = graph.pop("1")
    graph["2"]["inputs"]["images"] = [node_id, 0]
    resp = client.post("/v1/workflows/run", json={"workflow": graph})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert body(resp)["error"]["code"] == "validation_error"
    assert fake.submissions == []


def test_storage_refuses_names_with_a_trailing_newline(app: Flask) -> None:
    storage = app.extensions["comfygate"].storage
    job_id = "0123456789abcdef0123456789abcdef"
    with pytest.raises(ValueError, match="invalid output name"):
        storage.save(job_id, "3-0.png\n", [b"x"])
    with pytest.raises(ValueError, match="invalid output name"):
        storage.save(job_id + "\n", "3-0.png", [b"x"])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_files_are_private(fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path) -> None:
    client = make_app([fake.url], data_dir=str(tmp_path / "fresh")).test_client()
    assert client.post("/v1/generate", json={"template": "solid"}).status_code == 200
    data = tmp_path / "fresh"
    databases = sorted(p for p in data.iterdir() if p.name.endswith((".sqlite3", "-wal", "-shm")))
    assert any(p.name.endswith(".sqlite3") for p in databases)
    assert any(p.name.endswith("-wal") for p in databases)
    for path in databases:
        assert _mode(path) == 0o600, (path.name, oct(_mode(path)))
    assert _mode(data) == 0o700
    assert _mode(data / "webhook-secret") == 0o600  # created so, never wider for a moment


def test_an_existing_store_file_is_made_private(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path
) -> None:
    data = tmp_path / "old"
    data.mkdir()
    old = data / "jobs.sqlite3"
    old.touch()
    old.chmod(0o644)
    make_app([fake.url], data_dir=str(data))
    assert _mode(old) == 0o600


def test_a_cache_hit_tells_nothing_of_the_first_job(keyed: FlaskClient) -> None:
    first = keyed.post(
        "/v1/generate",
        json={"template": "solid"},
        headers={**bearer(USER), "Accept": "application/json"},
    )
    a = body(first)
    assert a["cached"] is False
    a_bytes = keyed.get(a["outputs"][0]["url"], headers=bearer(USER)).data
    # The entry is written as A's job ends, just after its answer (another key's request
    # meanwhile would simply run).
    cache = keyed.application.extensions["comfygate"].jobs.cache
    assert wait_for(lambda: cache.size() > 0)
    hit = keyed.post("/v1/generate", json={"template": "solid"}, headers=bearer(OTHER))
    assert hit.status_code == 200
    b_id = hit.headers["X-Job-Id"]
    assert b_id != a["id"]
    b = body(keyed.get(f"/v1/jobs/{b_id}", headers=bearer(OTHER)))
    assert b["cached"] is True
    assert hit.data == a_bytes  # the same bytes...
    # ...that name neither job: not in the headers, the job object, or the image's metadata.
    seen = json.dumps(dict(hit.headers)) + json.dumps(b) + hit.data.decode("latin-1")
    assert a["id"] not in seen
    info = Image.open(io.BytesIO(hit.data)).info
    assert a["id"] not in json.dumps(info)
    assert b_id not in json.dumps(info)
