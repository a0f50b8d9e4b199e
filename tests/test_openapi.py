"""GET /openapi.json (generated from the pydantic models and the templates), the per-template
routes it types, GET /docs, and the playground's files (GET /, /web/...)."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from PIL import Image

from comfygate.api import schemas
from comfygate.api.openapi import registered_operations, rule_path
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for


@pytest.fixture
def doc(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.content_type == "application/json"
    data: dict[str, Any] = body(resp)
    return data


def conforms(doc: dict[str, Any], schema_name: str, instance: Any) -> list[str]:
    """Errors of ``instance`` against a schema of the document (empty when it conforms)."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    return [e.message for e in OAS31Validator(root).iter_errors(instance)]


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    operation_ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_registered_route_is_documented(app: Flask, doc: dict[str, Any]) -> None:
    registered = registered_operations(app)
    assert ("/v1/generate", "post") in registered  # the walk does see the app's routes
    missing = [
        f"{method.upper()} {path}"
        for path, method in sorted(registered)
        if method not in doc["paths"].get(path, {})
    ]
    assert missing == [], f"routes missing from the OpenAPI document: {missing}"


def test_every_documented_route_is_registered(app: Flask, doc: dict[str, Any]) -> None:
    rules = [rule_path(r.rule) for r in app.url_map.iter_rules()]
    patterns = [
        re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(r)) + "$") for r in rules
    ]
    for path in doc["paths"]:
        assert any(p.match(path) for p in patterns), f"{path} is not a route of the app"


def test_rule_path() -> None:
    assert rule_path("/v1/outputs/<job_id>/<path:filename>") == "/v1/outputs/{job_id}/{filename}"
    assert rule_path("/v1/jobs") == "/v1/jobs"


def test_each_template_has_typed_components_and_routes(
    client: FlaskClient, doc: dict[str, Any]
) -> None:
    components = doc["components"]["schemas"]
    for name in ("txt2img", "solid"):
        public = body(client.get(f"/v1/templates/{name}"))["parameters"]
        params = components[f"{name}.Parameters"]
        # The same JSON Schema as GET /v1/templates/{name}: one source, no copy to drift
        # (but for `x-models`, the files the backends have now, which only the route knows).
        models = {n: p.pop("x-models") for n, p in public["properties"].items() if "x-models" in p}
        assert models == (
            {"checkpoint": ["random-sd15-fp16.safetensors"]} if name == "txt2img" else {}
        )
        assert params["properties"] == public["properties"]
        assert params.get("required") == public.get("required")
        generate = doc["paths"][f"/v1/templates/{name}/generate"]["post"]
        schema = generate["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}.GenerateRequest"}
        jobs = doc["paths"][f"/v1/templates/{name}/jobs"]["post"]
        schema = jobs["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}.JobRequest"}
        assert set(generate["responses"]) >= {"200", "400", "404", "413", "502", "503", "504"}
        assert set(jobs["responses"]) >= {"202", "400", "404", "409", "413", "503"}
    steps = components["txt2img.GenerateRequest"]["properties"]["steps"]
    assert steps["default"] == 20
    assert steps["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 150}
    assert components["txt2img.GenerateRequest"]["required"] == ["prompt"]
    assert "webhook_url" in components["txt2img.JobRequest"]["properties"]
    assert "webhook_url" not in components["txt2img.GenerateRequest"]["properties"]


def test_error_responses_use_the_error_schema(doc: dict[str, Any]) -> None:
    responses = doc["components"]["responses"]
    statuses = {"400", "404", "409", "413", "502", "503", "504"}
    seen = set()
    for path, operations in doc["paths"].items():
        for op in operations.values():
            for status, response in op["responses"].items():
                if status == "503" and path == "/readyz":
                    continue  # readiness answers 503 with its own body
                if status in statuses:
                    seen.add(status)
                    name = response["$ref"].rsplit("/", 1)[1]
                    content = responses[name]["content"]["application/json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
                    for example in content["examples"].values():
                        assert conforms(doc, "ErrorBody", example["value"]) == []
    assert seen == statuses
    assert "Retry-After" in responses["BackendUnavailable"]["headers"]


def test_every_operation_is_one_a_generator_can_build(doc: dict[str, Any]) -> None:
    """One request media type per operation, concrete media types, a default error answer."""
    responses = doc["components"]["responses"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            if "requestBody" in op:
                assert len(op["requestBody"]["content"]) == 1, where
            assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}, where
            for response in op["responses"].values():
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                for media in response.get("content", {}):
                    assert "*" not in media, (where, media)
    default = responses["Error"]["content"]["application/json"]["schema"]
    assert default == {"$ref": "#/components/schemas/ErrorBody"}
    # Binary answers also name application/octet-stream, before any JSON alternative.
    for name in ("GenerateResult", "OutputFile"):
        media = list(responses[name]["content"])
        assert "image/png" in media
        assert media.index("application/octet-stream") < len(media) - (name == "GenerateResult")
    archive = doc["paths"]["/v1/batches/{batch_id}/archive"]["get"]["responses"]["200"]
    assert list(archive["content"]) == ["application/zip", "application/octet-stream"]
    uploads = doc["paths"]["/v1/templates/img2img/generate/upload"]["post"]["requestBody"]
    assert list(uploads["content"]) == ["multipart/form-data"]
    assert "/v1/templates/solid/generate/upload" not in doc["paths"]  # no image to upload


def test_error_codes_and_params_are_typed(doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    codes = components["ErrorInfo"]["properties"]["code"]["enum"]
    assert {"validation_error", "not_found", "timeout", "cancelled", "internal_error"} <= set(codes)
    assert conforms(doc, "ErrorInfo", {"code": "no_such_code", "message": "x"}) != []
    params = components["Job"]["properties"]["params"]
    assert params["type"] == "object"
    assert {s["type"] for s in params["additionalProperties"]["anyOf"]} == {
        "string",
        "integer",
        "number",
        "boolean",
        "null",
    }


@pytest.mark.parametrize("route", ["generate", "jobs"])
def test_upload_routes_take_a_multipart_form(
    client: FlaskClient, fake: FakeComfyUI, route: str
) -> None:
    png = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(png, format="PNG")
    resp = client.post(
        f"/v1/templates/img2img/{route}/upload",
        data={
            "params": '{"prompt": "x", "width": 64, "height": 64, "steps": 1}',
            "image": (io.BytesIO(png.getvalue()), "in.png", "image/png"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == (200 if route == "generate" else 202), resp.get_data(as_text=True)
    assert wait_for(lambda: len(fake.submissions) == 1)
    [submission] = fake.submissions
    assert submission["prompt"]["1"]["inputs"]["image"].startswith("cg-")


def test_examples_conform_and_work(client: FlaskClient, doc: dict[str, Any]) -> None:
    for name in ("txt2img", "solid"):
        op = doc["paths"][f"/v1/templates/{name}/generate"]["post"]
        [example] = op["requestBody"]["content"]["application/json"]["examples"].values()
        assert conforms(doc, f"{name}.GenerateRequest", example["value"]) == []
        small = {"width": 64, "height": 64, "steps": 1} if name == "txt2img" else {}
        resp = client.post(f"/v1/templates/{name}/generate", json={**example["value"], **small})
        assert resp.status_code == 200, resp.get_data(as_text=True)
    generic = doc["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]
    for example in generic["examples"].values():
        assert conforms(doc, "GenerateRequest", example["value"]) == []


@pytest.mark.parametrize(
    ("schema", "instance", "ok"),
    [
        ("GenerateRequest", {"prompt": "x"}, True),  # txt2img, the default template
        ("GenerateRequest", {"template": "solid"}, True),
        ("GenerateRequest", {"template": "solid", "width": 8, "timeout_s": 3}, True),
        ("GenerateRequest", {}, False),  # txt2img needs a prompt
        ("GenerateRequest", {"template": "solid", "prompt": "x"}, False),
        ("GenerateRequest", {"prompt": "x", "steps": 0}, False),
        ("GenerateRequest", {"prompt": "x", "colour": 1}, False),
        ("GenerateRequest", {"prompt": "x", "webhook_url": "https://a.example"}, False),
        ("JobRequest", {"prompt": "x", "webhook_url": "https://a.example"}, True),
        ("JobRequest", {"template": "nope"}, False),
        ("solid.GenerateRequest", {}, True),
        ("solid.GenerateRequest", {"template": "txt2img"}, False),
        ("txt2img.GenerateRequest", {"prompt": "x", "sampler": "fast"}, False),
    ],
)
def test_request_schemas_accept_what_the_gateway_accepts(
    doc: dict[str, Any], schema: str, instance: dict[str, Any], ok: bool
) -> None:
    assert (conforms(doc, schema, instance) == []) is ok


def test_responses_conform_to_their_schemas(
    make_app: MakeApp, fake: FakeComfyUI, doc: dict[str, Any]
) -> None:
    # Loopback webhooks allowed: the job's webhook state must show in the answer.
    client = make_app([fake.url], webhook_allow_private=True).test_client()
    checks: list[tuple[str, Any]] = []
    job = body(
        client.post(
            "/v1/generate", json={"template": "solid"}, headers={"Accept": "application/json"}
        )
    )
    checks.append(("Job", job))
    submitted = client.post(
        "/v1/jobs", json={"template": "solid", "webhook_url": "http://127.0.0.1:9/hook"}
    )
    checks.append(("Job", body(submitted)))
    checks.append(("JobList", body(client.get("/v1/jobs"))))
    checks.append(("TemplateList", body(client.get("/v1/templates"))))
    checks.append(("Template", body(client.get("/v1/templates/txt2img"))))
    checks.append(("TemplateCheck", body(client.get("/v1/templates/check"))))
    checks.append(("BackendList", body(client.get("/v1/backends"))))
    checks.append(("Health", body(client.get("/healthz"))))
    checks.append(("Readiness", body(client.get("/readyz"))))
    checks.append(
        ("ErrorBody", body(client.post("/v1/generate", json={"prompt": "x", "steps": 0})))
    )
    checks.append(("ErrorBody", body(client.get("/v1/jobs/nope"))))
    webhook_job = body(submitted)["id"]
    assert wait_for(lambda: body(client.get(f"/v1/jobs/{webhook_job}"))["status"] == "succeeded")
    checks.append(("Job", body(client.get(f"/v1/jobs/{webhook_job}"))))
    fake.fail_next_execution("2")
    failed = body(client.post("/v1/generate", json={"template": "solid", "width": 3}))
    checks.append(("ErrorBody", failed))
    failed_job = body(client.get(f"/v1/jobs/{failed['error']['details']['job_id']}"))
    assert failed_job["error"]["code"] == "generation_failed"
    checks.append(("Job", failed_job))
    for name, instance in checks:
        assert conforms(doc, name, instance) == [], (name, instance)
        # The pydantic models themselves accept the answers too.
        model = getattr(schemas, name)
        model.model_validate(instance)


def test_the_document_follows_the_templates_actually_loaded(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    # (fake first: the gateway is stopped before the fake ComfyUI it talks to)
    client = make_app(
        [fake.url],
        template_defaults={"txt2img": {"steps": 8}},
        default_template="solid",
    ).test_client()
    doc = body(client.get("/openapi.json"))
    steps = doc["components"]["schemas"]["txt2img.GenerateRequest"]["properties"]["steps"]
    assert steps["default"] == 8
    assert conforms(doc, "GenerateRequest", {}) == []  # solid is the default now


# --- the per-template routes ----------------------------------------------------------------


def test_template_route_generates_like_v1_generate(client: FlaskClient, fake: FakeComfyUI) -> None:
    resp = client.post("/v1/templates/solid/generate", json={"width": 8})
    assert resp.status_code == 200
    assert resp.content_type == "image/png"
    job = body(client.get(f"/v1/jobs/{resp.headers['X-Job-Id']}"))
    assert job["template"] == "solid"
    assert job["params"]["width"] == 8
    resp = client.post(
        "/v1/templates/txt2img/generate",
        json={"prompt": "x", "width": 64, "height": 64, "steps": 1, "seed": 5},
        headers={"Accept": "application/json"},
    )
    assert resp.status_code == 200
    assert resp.headers["X-Seed"] == "5"
    assert body(resp)["template"] == "txt2img"


def test_template_route_submits_a_job_like_v1_jobs(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "k1"}
    first = client.post("/v1/templates/solid/jobs", json={"width": 8}, headers=headers)
    assert first.status_code == 202
    job = body(first)
    assert first.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["template"] == "solid"
    again = client.post("/v1/templates/solid/jobs", json={"width": 8}, headers=headers)
    assert body(again)["id"] == job["id"]
    other = client.post("/v1/templates/solid/jobs", json={"width": 9}, headers=headers)
    assert other.status_code == 409


@pytest.mark.parametrize("route", ["generate", "jobs"])
def test_template_route_errors(client: FlaskClient, fake: FakeComfyUI, route: str) -> None:
    resp = client.post(f"/v1/templates/nope/{route}", json={})
    assert resp.status_code == 404
    assert body(resp)["error"]["details"] == {"template": "nope"}
    resp = client.post(f"/v1/templates/solid/{route}", json={"template": "txt2img"})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "template"
    resp = client.post(f"/v1/templates/solid/{route}", json={"prompt": "x"})
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "prompt"
    resp = client.post(f"/v1/templates/solid/{route}", data="[]", content_type="application/json")
    assert body(resp)["error"]["code"] == "bad_request"
    # Naming the path's own template in the body is allowed.
    resp = client.post(f"/v1/templates/solid/{route}", json={"template": "solid"})
    assert resp.status_code in (200, 202)


# --- pages ----------------------------------------------------------------------------------


class _PageAudit(HTMLParser):
    """What a strict Content-Security-Policy would block in a page: inline code or styles."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.sources: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "style":
            self.problems.append("a <style> element")
        if "style" in names:
            self.problems.append(f"a style attribute on <{tag}>")
        self.problems += [f"{n} on <{tag}>" for n in names if n.startswith("on")]
        for attr in ("src", "href"):
            value = names.get(attr)
            if value:
                self.sources.append(value)
        if tag == "script":
            if not names.get("src"):
                self.problems.append("an inline <script>")
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("script text")


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_pages_have_a_strict_csp_and_nothing_inline(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe" not in csp
    audit = _PageAudit()
    audit.feed(resp.get_data(as_text=True))
    assert audit.problems == []
    # Every file the page names is served by the gateway itself, by a URL relative to the
    # page (so the page works under a sub-path behind a proxy).
    for source in audit.sources:
        assert not source.startswith("/"), source
        assert ":" not in source, source
        assert client.get("/" + source.removeprefix("./")).status_code == 200, source


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/web/app.js", "text/javascript"),
        ("/web/style.css", "text/css"),
        ("/web/favicon.svg", "image/svg+xml"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
    ],
)
def test_static_files(client: FlaskClient, path: str, content_type: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.content_type.startswith(content_type)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/web/../api/web.py",
        "/web/%2e%2e/api/web.py",
        "/web/..%2Fapi%2Fweb.py",
        "/web/nope.js",
        "/docs/index.html",
        "/docs/../web/app.js",
        "/docs/swagger-ui-bundle.js.map",
    ],
)
def test_no_other_file_is_served(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert body(resp)["error"]["code"] == "not_found"
