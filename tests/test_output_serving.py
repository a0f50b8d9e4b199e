"""Outputs served through the storage interface (storage/base.py): GET /v1/outputs and the
batch archive stream what ``storage.open`` gives, from a local directory or from S3 (a real
S3 API, s3rver); with OUTPUT_URLS=presigned, output urls are presigned S3 urls that work
without the gateway. The STORAGE settings are checked at start and shown by
`comfygate config`."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from click.testing import CliRunner
from flask import Flask

from comfygate.cli import main
from comfygate.config import ConfigError
from comfygate.config_load import load_settings
from comfygate.sdk import Client
from comfygate.sdk.errors import ComfyGateError
from comfygate.storage.local import LocalStorage
from comfygate.storage.resolve import open_storage
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import parse_sse, wait_for
from tests.processes import S3Server
from tests.test_jobs_api import finished, submit


def make_s3_app(make_app: MakeApp, fake: FakeComfyUI, s3: S3Server, **overrides: Any) -> Flask:
    return make_app(
        [fake.url],
        storage="s3",
        s3_bucket=s3.bucket,
        s3_endpoint_url=s3.url,
        s3_prefix=f"api-{uuid.uuid4().hex}/",
        **overrides,
    )


def solid_job(app: Flask, color: int = 0xFF0000) -> tuple[dict[str, Any], bytes]:
    client = app.test_client()
    job = finished(client, submit(client, {"template": "solid", "color": color})["id"])
    assert job["status"] == "succeeded"
    url = job["outputs"][0]["url"]
    if url.startswith("http"):  # a presigned url: the bucket answers, not the gateway
        fetched = requests.get(url, timeout=10)
        assert fetched.status_code == 200
        return job, fetched.content
    resp = client.get(url)
    assert resp.status_code == 200
    return job, resp.data


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_an_output_is_streamed_from_its_storage(
    kind: str,
    fake: FakeComfyUI,
    make_app: MakeApp,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kind == "s3":
        app = make_s3_app(make_app, fake, request.getfixturevalue("s3_env"))
    else:
        app = make_app([fake.url])
    job, png = solid_job(app)
    if kind == "s3":  # collected into the bucket: no copy of it on the gateway's disk
        data_dir = app.extensions["comfygate"].data_dir
        assert not [p for p in data_dir.rglob("*") if p.suffix == ".png"]
    client = app.test_client()
    output = job["outputs"][0]
    resp = client.get(output["url"])
    assert resp.status_code == 200
    assert resp.data == png
    assert png.startswith(b"\x89PNG")
    assert resp.mimetype == "image/png"
    assert resp.content_length == output["size"] == len(png)
    assert resp.headers["Cache-Control"] == "private, max-age=3600"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    etag = resp.headers["ETag"]
    again = client.get(output["url"], headers={"If-None-Match": etag})
    assert (again.status_code, again.data) == (304, b"")
    part = client.get(output["url"], headers={"Range": "bytes=1-7"})
    assert part.status_code == 206
    assert part.data == png[1:8]
    assert part.headers["Content-Range"] == f"bytes 1-7/{len(png)}"
    head = client.head(output["url"])
    assert (head.status_code, head.content_length, head.data) == (200, len(png), b"")
    # Gone from the storage (retention, an operator): a 404, as for any unknown output.
    app.extensions["comfygate"].storage.delete_group(job["id"])
    gone = client.get(output["url"])
    assert gone.status_code == 404
    assert body(gone)["error"]["code"] == "not_found"


def test_the_batch_archive_streams_from_s3(
    fake: FakeComfyUI, make_app: MakeApp, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_s3_app(make_app, fake, s3_env)
    client = app.test_client()
    resp = client.post("/v1/batches", json={"template": "solid", "items": [{}, {"color": 255}]})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    created = body(resp)
    jobs = [finished(client, job_id) for job_id in created["jobs"]]
    pngs = [client.get(job["outputs"][0]["url"]).data for job in jobs]
    archive = client.get(f"/v1/batches/{created['id']}/archive")
    assert archive.status_code == 200
    assert archive.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zf:
        names = [f"{i:04d}-{job['outputs'][0]['filename']}" for i, job in enumerate(jobs)]
        assert zf.namelist() == names
        assert [zf.read(name) for name in names] == pngs
    assert pngs[0] != pngs[1]


def test_presigned_output_urls_work_without_the_gateway(
    fake: FakeComfyUI, make_app: MakeApp, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_s3_app(make_app, fake, s3_env, output_urls="presigned", presign_expires_s=600)
    job, png = solid_job(app)
    client = app.test_client()
    shown = body(client.get(f"/v1/jobs/{job['id']}"))
    url = shown["outputs"][0]["url"]
    assert url.startswith(f"{s3_env.url}/{s3_env.bucket}/")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Expires"] == "600"
    assert "X-Amz-Signature" in query
    got = requests.get(url, timeout=10)
    assert got.status_code == 200
    assert got.content == png
    assert got.headers["Content-Type"] == "image/png"
    listed = body(client.get("/v1/jobs"))["jobs"]
    assert listed[0]["outputs"][0]["url"].startswith(s3_env.url)
    # The event stream of a finished job: its status, output and done events too.
    events = parse_sse(client.get(f"/v1/jobs/{job['id']}/events").get_data(as_text=True))
    urls = [data["url"] for kind, data in events if kind == "output"]
    urls += [data["outputs"][0]["url"] for kind, data in events if kind in ("status", "done")]
    assert len(urls) == 3
    assert all(u.startswith(f"{s3_env.url}/{s3_env.bucket}/") for u in urls)
    assert requests.get(urls[0], timeout=10).content == png


def test_an_unreachable_s3_is_a_503(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = S3Server(tmp_path / "own-s3").start()  # stopped below; the session's keeps running
    for key, value in own.aws_env().items():
        monkeypatch.setenv(key, value)
    try:
        app = make_s3_app(make_app, fake, own)
        client = app.test_client()
        created = body(client.post("/v1/batches", json={"template": "solid", "items": [{}]}))
        job = finished(client, created["jobs"][0])
        own.stop()
        for path in (job["outputs"][0]["url"], f"/v1/batches/{created['id']}/archive"):
            resp = client.get(path)
            assert resp.status_code == 503, path
            assert body(resp)["error"]["code"] == "backend_unavailable"
            assert int(resp.headers["Retry-After"]) > 0
            text = resp.get_data(as_text=True)
            assert str(own.port) not in text
            assert "127.0.0.1" not in text
        own.start()  # back: served again, no restart of the gateway
        assert client.get(job["outputs"][0]["url"]).status_code == 200
    finally:
        own.stop()


def test_an_s3_down_while_collecting_fails_that_job_after_retries_not_the_gateway(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = S3Server(tmp_path / "own-s3").start()
    for key, value in own.aws_env().items():
        monkeypatch.setenv(key, value)
    try:
        app = make_s3_app(make_app, fake, own)
        client = app.test_client()
        own.stop()
        job = finished(client, submit(client, {"template": "solid", "color": 1})["id"])
        assert job["status"] == "failed"
        assert job["error"]["code"] == "backend_unavailable"
        assert job["error"]["message"].startswith("could not collect the outputs")
        assert str(own.port) not in json.dumps(job)
        assert job["outputs"] == []
        assert client.get("/healthz").status_code == 200
        own.start()  # back: the next job is collected, with no restart of the gateway
        again = finished(client, submit(client, {"template": "solid", "color": 2})["id"])
        assert again["status"] == "succeeded"
        assert client.get(again["outputs"][0]["url"]).status_code == 200
    finally:
        own.stop()


def test_retention_deletes_a_jobs_objects_in_s3(
    fake: FakeComfyUI, make_app: MakeApp, s3_env: S3Server
) -> None:
    app = make_s3_app(make_app, fake, s3_env, job_retention_s=0.05)
    job, _ = solid_job(app)
    gateway = app.extensions["comfygate"]
    name = job["outputs"][0]["filename"]
    assert gateway.storage.stat(job["id"], name) is not None  # in the bucket
    assert wait_for(lambda: gateway.jobs.sweep() >= 1)
    assert gateway.storage.stat(job["id"], name) is None  # the object is gone too
    assert app.test_client().get(job["outputs"][0]["url"]).status_code == 404


def test_storage_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STORAGE=s3 needs S3_BUCKET"):
        load_settings(environ={"COMFYGATE_STORAGE": "s3"})
    with pytest.raises(ConfigError, match="OUTPUT_URLS=presigned needs STORAGE=s3"):
        load_settings(environ={"COMFYGATE_OUTPUT_URLS": "presigned"})
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        load_settings(
            environ={
                "COMFYGATE_STORAGE": "s3",
                "COMFYGATE_S3_BUCKET": "b",
                "COMFYGATE_S3_ENDPOINT_URL": "127.0.0.1:9000",
            }
        )
    with pytest.raises(ConfigError, match="PRESIGN_EXPIRES_S"):
        load_settings(environ={"COMFYGATE_PRESIGN_EXPIRES_S": "0"})
    local = load_settings(environ={"COMFYGATE_DATA_DIR": str(tmp_path)})
    assert (local.storage, local.output_urls, local.presign_expires_s) == ("local", "gateway", 3600)
    assert isinstance(open_storage(local, "inputs"), LocalStorage)
    assert (tmp_path / "inputs").is_dir()


def test_comfygate_config_shows_the_storage_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYGATE_STORAGE", "s3")
    monkeypatch.setenv("COMFYGATE_S3_BUCKET", "outputs-bucket")
    monkeypatch.setenv("COMFYGATE_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    result = CliRunner().invoke(main, ["config", "--output-urls", "presigned"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["STORAGE"] == ["s3", "env", "COMFYGATE_STORAGE"]
    assert rows["S3_BUCKET"] == ["outputs-bucket", "env", "COMFYGATE_S3_BUCKET"]
    assert rows["S3_PREFIX"] == ['""', "default"]
    assert rows["S3_ENDPOINT_URL"][0] == "http://127.0.0.1:9000"
    assert rows["OUTPUT_URLS"] == ["presigned", "flag"]
    assert rows["PRESIGN_EXPIRES_S"] == ["3600", "default"]


def test_the_sdk_downloads_a_presigned_output_without_its_key(
    fake: FakeComfyUI,
    make_app: MakeApp,
    s3_env: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    app = make_s3_app(make_app, fake, s3_env, output_urls="presigned")
    job, png = solid_job(app)
    url = body(app.test_client().get(f"/v1/jobs/{job['id']}"))["outputs"][0]["url"]
    # S3 refuses a presigned url that comes with an Authorization header too.
    assert requests.get(url, headers={"Authorization": "Bearer k"}, timeout=10).status_code >= 400
    with Client("http://127.0.0.1:9", api_key="the-users-key") as gw:  # no gateway needed
        saved = gw.download({**job["outputs"][0], "url": url}, tmp_path / "out.png")
        assert saved.read_bytes() == png
        app.extensions["comfygate"].storage.delete_group(job["id"])
        with pytest.raises(ComfyGateError, match="presigned url"):
            gw.download(url, tmp_path / "gone.png")
    assert not (tmp_path / "gone.png").exists()
