"""Image parameters end to end on the fake ComfyUI: the img2img template with an image sent as
a data: URI, a multipart upload or a URL; what is kept where; uploads on every submission."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from comfygate import egress
from comfygate.api.images import RESOLVER
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.test_inputs import PRETEND_PUBLIC, Server, serve

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "steps": 1, "seed": 3}


def png(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def gateway_name(data: bytes) -> str:
    import hashlib

    return f"cg-{hashlib.sha256(data).hexdigest()[:32]}.png"


def finished(client: FlaskClient, job_id: str) -> dict[str, Any]:
    assert wait_for(
        lambda: (
            body(client.get(f"/v1/jobs/{job_id}"))["status"] in ("succeeded", "failed", "cancelled")
        ),
        20,
    )
    job: dict[str, Any] = body(client.get(f"/v1/jobs/{job_id}"))
    return job


def test_img2img_with_a_data_uri(client: FlaskClient, app: Flask, fake: FakeComfyUI) -> None:
    image = png()
    resp = client.post(
        "/v1/generate",
        json={"template": "img2img", "image": data_uri(image), "denoise": 0.5, **SMALL},
        headers={"Accept": "application/json"},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    job = body(resp)
    name = gateway_name(image)
    assert job["params"]["image"] == name
    assert job["params"]["denoise"] == 0.5
    [output] = job["outputs"]
    out = Image.open(io.BytesIO(client.get(output["url"]).data))
    assert out.size == (64, 64)  # scaled to width x height
    # Uploaded to ComfyUI under the gateway's name, byte for byte.
    assert fake.file(name, "", "input") == image
    [submitted] = fake.submissions[-1:]
    graph = submitted.get("prompt", submitted)
    assert json.dumps(graph).count(name) == 1
    # Kept beside the outputs, not in the job row.
    gateway = app.extensions["comfygate"]
    kept = gateway.data_dir / "inputs" / job["id"] / name
    assert kept.read_bytes() == image
    row = gateway.store.get(job["id"]).to_record()
    assert base64.b64encode(image).decode()[:40] not in json.dumps(row)
    assert row["inputs"] == [name]
    # Deleted with the job.
    gateway.jobs.options = type(gateway.jobs.options)(retention_s=0.0)
    assert gateway.jobs.sweep() >= 1
    assert not kept.parent.exists()


def test_img2img_multipart_with_a_params_field(client: FlaskClient, fake: FakeComfyUI) -> None:
    image = png((80, 80))
    resp = client.post(
        "/v1/templates/img2img/generate",
        data={
            "params": json.dumps(SMALL),
            "image": (io.BytesIO(image), "../../etc/passwd.png", "text/html"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type == "image/png"
    name = gateway_name(image)
    assert fake.file(name, "", "input") == image  # the client's file name is never used


def test_img2img_multipart_with_form_fields(client: FlaskClient, fake: FakeComfyUI) -> None:
    image = png((64, 48))
    resp = client.post(
        "/v1/jobs",
        data={
            "template": "img2img",
            "prompt": "a dog",
            "width": "64",
            "height": "64",
            "steps": "1",
            "denoise": "0.25",
            "cache": "false",
            "image": (io.BytesIO(image), "dog.png"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = finished(client, body(resp)["id"])
    assert job["status"] == "succeeded"
    assert job["params"]["width"] == 64
    assert job["params"]["denoise"] == 0.25


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"template": "img2img", "prompt": "x", "steps": "many"}, "steps"),
        ({"template": "img2img", "prompt": "x", "cache": "maybe"}, "cache"),
        ({"template": "solid", "image": (io.BytesIO(png()), "a.png")}, "image"),
        ({"params": "[1]"}, None),
        ({"params": "{not json"}, None),
    ],
)
def test_bad_multipart_bodies(client: FlaskClient, form: dict[str, Any], field: str | None) -> None:
    resp = client.post("/v1/generate", data=form, content_type="multipart/form-data")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = body(resp)["error"]
    if field is None:
        assert error["code"] == "bad_request"
    else:
        assert error["details"]["field"] == field


def test_multipart_only_where_images_are_taken(client: FlaskClient) -> None:
    resp = client.get("/v1/templates")
    assert resp.status_code == 200
    for route in ("/v1/batches", "/v1/workflows/run"):
        resp = client.post(route, data={"params": "{}"}, content_type="multipart/form-data")
        assert resp.status_code in (403, 415), route
        if resp.status_code == 415:
            assert body(resp)["error"]["code"] == "unsupported_media_type"


def test_resubmission_uploads_the_image_again(make_app: MakeApp) -> None:
    with FakeComfyUI() as a, FakeComfyUI() as b:
        a.hold()
        b.hold()
        client = make_app([f"a={a.url}", f"b={b.url}"], max_in_flight_per_backend=1).test_client()
        image = png((16, 16), (1, 2, 3))
        name = gateway_name(image)
        resp = client.post(
            "/v1/jobs", json={"template": "img2img", "image": data_uri(image), **SMALL}
        )
        assert resp.status_code == 202
        job_id = body(resp)["id"]
        assert wait_for(lambda: bool(a.submissions or b.submissions))
        victim, survivor = (a, b) if a.submissions else (b, a)
        assert victim.file(name, "", "input") == image
        assert survivor.file(name, "", "input") is None
        survivor.release()
        victim.stop()
        job = finished(client, job_id)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 2
        assert survivor.file(name, "", "input") == image


# --- refused images -------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""
    import struct
    import zlib

    data = bytearray(png((1, 1)))
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


def animated_png() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


class FakeDNS:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records

    def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.records[host])


DNS = FakeDNS(
    {
        "internal.example.com": ["10.1.2.3"],
        "metadata.example.com": ["169.254.169.254"],
        "images.example.com": [PRETEND_PUBLIC],
    }
)

HOSTILE_IMAGES: list[tuple[str, Any, str]] = [
    ("path on ComfyUI", "example.png", "data: URI or an https URL"),
    ("annotated path", "x.png [output]", "data: URI or an https URL"),
    ("traversal", "../../../../etc/passwd", "data: URI or an https URL"),
    ("not a string", 12, "data: URI or an https URL"),
    ("text as png", data_uri(b"hello"), "is not a PNG, JPEG or WebP image"),
    ("svg", data_uri(b"<svg/>", "image/svg+xml"), "media type"),
    ("truncated", data_uri(png((64, 64))[:60]), "damaged or truncated"),
    ("bomb", data_uri(png_claiming(100_000, 100_000)), "pixels than the limit"),
    ("animated", data_uri(animated_png()), "animated"),
    ("not base64", "data:image/png;base64,@@@@", "not valid base64"),
    ("loopback", "https://127.0.0.1/cat.png", "private or reserved"),
    ("metadata ip", "https://169.254.169.254/latest/meta-data/", "private or reserved"),
    ("ipv6 loopback", "https://[::1]/cat.png", "private or reserved"),
    ("dns to 10.x", "https://internal.example.com/cat.png", "resolves to a private"),
    ("dns to metadata", "https://metadata.example.com/x.png", "resolves to a private"),
    ("unknown name", "https://nowhere.example.com/x.png", "could not be resolved"),
    ("plain http", "http://images.example.com/image.png", "https"),
    ("decimal ip", "https://2130706433/x.png", "invalid host"),
    ("file url", "file:///etc/passwd", "data: URI or an https URL"),
    ("credentials", "https://user:pw@images.example.com/x.png", "user name or password"),
]


@pytest.mark.parametrize(
    ("value", "message"),
    [(v, m) for _, v, m in HOSTILE_IMAGES],
    ids=[i for i, _, _ in HOSTILE_IMAGES],
)
def test_hostile_images_are_refused_before_comfyui(
    client: FlaskClient, app: Flask, fake: FakeComfyUI, value: Any, message: str
) -> None:
    app.extensions[RESOLVER] = DNS
    before = len(fake.submissions)
    resp = client.post("/v1/generate", json={"template": "img2img", "image": value, **SMALL})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = body(resp)["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == "image"
    assert message in error["message"], error["message"]
    assert "10.1.2.3" not in error["message"]  # never what a name resolved to
    assert len(fake.submissions) == before


def test_oversized_image_is_refused(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], max_image_mb=0.001).test_client()
    noise = Image.frombytes("RGB", (64, 64), random.Random(1).randbytes(64 * 64 * 3))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    big = buf.getvalue()
    assert len(big) > 1100
    resp = client.post(
        "/v1/generate", json={"template": "img2img", "image": data_uri(big), **SMALL}
    )
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "image"
    resp = client.post(
        "/v1/generate",
        data={
            "params": json.dumps(SMALL),
            "template": "img2img",
            "image": (io.BytesIO(big), "b.png"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400
    assert "over the limit" in body(resp)["error"]["message"]


def test_max_pixels_bounds_input_images(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], max_pixels=64 * 64).test_client()
    resp = client.post(
        "/v1/generate", json={"template": "img2img", "image": data_uri(png((65, 64))), **SMALL}
    )
    assert resp.status_code == 400
    assert "over the limit of 4096" in body(resp)["error"]["message"]


@pytest.fixture
def public_web(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A web server on 127.0.0.2 that the SSRF check takes for a public address."""
    real = egress.refused
    pretend = ipaddress.ip_address(PRETEND_PUBLIC)
    monkeypatch.setattr(egress, "refused", lambda ip: ip != pretend and real(ip))
    with serve(PRETEND_PUBLIC) as server:
        yield server


def test_image_url_fetched_when_allowed(
    public_web: Server, fake: FakeComfyUI, make_app: MakeApp
) -> None:
    app = make_app([fake.url], allow_http_image_urls=True)
    app.extensions[RESOLVER] = DNS
    client = app.test_client()
    url = f"http://images.example.com:{public_web.port}/image.png"
    resp = client.post("/v1/generate", json={"template": "img2img", "image": url, **SMALL})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert public_web.log[-1][1] == f"images.example.com:{public_web.port}"
    # A redirect to the metadata address is checked again, and refused.
    url = f"http://images.example.com:{public_web.port}/redirect-metadata"
    resp = client.post("/v1/generate", json={"template": "img2img", "image": url, **SMALL})
    assert resp.status_code == 400
    assert "private or reserved" in body(resp)["error"]["message"]


def test_image_parameters_cannot_have_defaults(tmp_path: Path) -> None:
    from comfygate.templates.registry import TemplateError, parse_template

    data = {
        "name": "t",
        "parameters": {"image": {"type": "image", "default": "x.png", "targets": ["1.image"]}},
        "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}},
    }
    with pytest.raises(TemplateError, match="cannot have a default"):
        parse_template(data, "t.json")
