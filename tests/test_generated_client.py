"""A client generated from the served /openapi.json by openapi-python-client works: it imports,
generates (the image's bytes), uploads an image, submits, reads, cancels, downloads an output
and a batch archive, and reads errors as the typed error body, against a live gateway (waitress,
the fake ComfyUI behind it).

The client is generated once for the module (about a second) into a temporary folder and
imported from there under its own package name.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from comfygate.app import create_app
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for
from tests.live import serve

PACKAGE = "comfygate_generated_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@dataclass
class Live:
    url: str
    fake: FakeComfyUI


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data = tmp_path_factory.mktemp("data")
    with FakeComfyUI() as fake:
        app = create_app(
            {"backends": [fake.url], "data_dir": str(data), "poll_interval_s": 0.2},
            configure_logging=False,
        )
        try:
            with serve(app) as url:
                yield Live(url, fake)
        finally:
            app.extensions["comfygate"].stop()


@pytest.fixture(scope="module")
def gen(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported (``gen.api...``, ``gen.models...``)."""
    folder = tmp_path_factory.mktemp("client")
    config = folder / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: only the code matters here
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--url",
            f"{live.url}/openapi.json",
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation and answer was understood: nothing left out of the client.
    assert "WARNING" not in result.stdout, result.stdout
    assert "Unsupported" not in result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        package = importlib.import_module(PACKAGE)
        # Every module of the client imports (one that does not is a broken operation).
        for path in sorted((folder / PACKAGE).rglob("*.py")):
            module = ".".join(path.relative_to(folder).with_suffix("").parts)
            importlib.import_module(module.removesuffix(".__init__"))
        yield package
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def client(gen: Any, live: Live) -> Iterator[Any]:
    with gen.Client(base_url=live.url, raise_on_unexpected_status=True, timeout=30.0) as client:
        yield client


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def test_generate_answers_the_image_bytes(client: Any) -> None:
    models = module("models")
    generate_solid = module("api.generate.generate_solid")
    resp = generate_solid.sync_detailed(
        client=client, body=models.SolidGenerateRequest(width=8, height=6)
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/png"
    assert png_size(resp.parsed.payload.read()) == (8, 6)
    # The generic route, with the default template (txt2img), gives bytes too.
    generate = module("api.generate.generate")
    image = generate.sync(
        client=client,
        body=models.Txt2ImgGenerateRequest(prompt="a cat", width=64, height=64, steps=1, seed=7),
    )
    assert png_size(image.payload.read()) == (64, 64)
    # Another template's model names its template by itself (a default in the document).
    image = generate.sync(client=client, body=models.SolidGenerateRequest(width=3, height=2))
    assert png_size(image.payload.read()) == (3, 2)
    submit = module("api.jobs.submit_job")
    job = submit.sync(client=client, body=models.SolidJobRequest(color=255))
    assert job.template == "solid"


def test_upload_an_image_as_a_file(client: Any, live: Live) -> None:
    models = module("models")
    types = module("types")
    upload = module("api.generate.generate_img2img_upload")
    picture = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(picture, format="PNG")
    body = models.GenerateImg2ImgUploadBody(
        params=json.dumps({"prompt": "winter", "width": 64, "height": 64, "steps": 1}),
        image=types.File(payload=io.BytesIO(picture.getvalue()), file_name="in.png"),
    )
    live.fake.submissions.clear()
    image = upload.sync(client=client, body=body)
    assert png_size(image.payload.read()) == (64, 64)
    [submission] = live.fake.submissions
    name = submission["prompt"]["1"]["inputs"]["image"]
    assert live.fake.file(name, folder_type="input") is not None


def test_submit_read_and_download_an_output(client: Any) -> None:
    models = module("models")
    submit = module("api.jobs.submit_job_solid")
    get_job = module("api.jobs.get_job")
    get_output = module("api.outputs.get_output")
    job = submit.sync(client=client, body=models.SolidJobRequest(width=5, height=4, color=255))
    assert isinstance(job, models.Job)
    assert job.params["color"] == 255

    def succeeded() -> bool:
        nonlocal job
        job = get_job.sync(client=client, job_id=job.id)
        return bool(job.status == models.JobStatus.SUCCEEDED)

    assert wait_for(succeeded)
    assert isinstance(job.params, models.JobParams)
    assert job.params["width"] == 5
    [output] = job.outputs
    assert output.content_type == "image/png"
    file = get_output.sync(client=client, job_id=job.id, filename=output.filename)
    data = file.payload.read()
    assert len(data) == output.size
    assert png_size(data) == (5, 4)


def test_a_batch_and_its_archive(client: Any) -> None:
    models = module("models")
    create = module("api.batches.create_batch")
    get_batch = module("api.batches.get_batch")
    archive = module("api.batches.batch_archive")
    body = models.CreateBatchBody.from_dict(
        {"template": "solid", "items": [{"color": 0}, {"color": 255}], "width": 4, "height": 4}
    )
    created = create.sync(client=client, body=body)
    assert isinstance(created, models.BatchCreated)
    assert len(created.jobs) == 2
    assert wait_for(lambda: get_batch.sync(client=client, batch_id=created.id).done)
    file = archive.sync(client=client, batch_id=created.id)
    with zipfile.ZipFile(io.BytesIO(file.payload.read())) as zipped:
        names = sorted(zipped.namelist())
        assert [n.split("-", 1)[0] for n in names] == ["0000", "0001"]
        assert png_size(zipped.read(names[1])) == (4, 4)


def test_errors_are_the_typed_error_body(client: Any, live: Live) -> None:
    models = module("models")
    get_job = module("api.jobs.get_job")
    generate_txt2img = module("api.generate.generate_txt2img")
    cancel = module("api.jobs.cancel_job")
    submit = module("api.jobs.submit_job_txt_2_img")
    missing = get_job.sync(client=client, job_id="nope")
    assert isinstance(missing, models.ErrorBody)
    assert missing.error.code == models.ErrorInfoCode.NOT_FOUND
    refused = generate_txt2img.sync(
        client=client, body=models.Txt2ImgGenerateRequest(prompt="x", steps=0)
    )
    assert refused.error.code == models.ErrorInfoCode.VALIDATION_ERROR
    assert refused.error.details["field"] == "steps"
    # A cancelled job's error parses too ("cancelled" is one of the codes).
    live.fake.step_time_s = 0.5
    try:
        job = submit.sync(
            client=client,
            body=models.Txt2ImgJobRequest(prompt="x", width=64, height=64, steps=20),
        )
        cancelled = cancel.sync(client=client, job_id=job.id)
        assert isinstance(cancelled, models.Job)
        assert cancelled.status == models.JobStatus.CANCELLED
        assert cancelled.error.code == models.ErrorInfoCode.CANCELLED
    finally:
        live.fake.step_time_s = 0.0
