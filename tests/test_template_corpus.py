"""Every workflow of the corpus (real files from public repositories, tests/fixtures/workflows)
imports as a ComfyUI user would want, against the real ComfyUI 0.3.75's /object_info: each
expected parameter writes exactly the expected node inputs, and binding the defaults gives
back the workflow's graph (so every input a parameter ties held the same value)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from comfygate.comfy.local import LocalComfyUI
from comfygate.templates import bind
from comfygate.templates.binding import apply_output_prefix
from comfygate.templates.infer import import_workflow
from comfygate.templates.registry import parse_template
from tests.conftest import MakeApp, body
from tests.corpus import CORPUS, MANIFEST, object_info, score
from tests.real_comfyui import RANDOM_SD15

ENTRIES = MANIFEST["workflows"]
INFO = object_info()


def test_the_corpus_covers_what_people_use() -> None:
    assert len(ENTRIES) >= 30
    assert {e["format"] for e in ENTRIES} == {"api", "ui"}
    text = " ".join(e["workflow"] for e in ENTRIES)
    for family in (
        "SD 1.5",
        "SDXL base + refiner",
        "img2img",
        "inpaint",
        "ControlNet",
        "LoRA",
        "upscale",
        "Flux",
        "SD 3.5",
        "video",
        "audio",
        "subgraph",
    ):
        assert family in text, family
    for entry in ENTRIES:
        assert entry["source"]["repo"]
        assert entry["source"]["path"]
        assert entry["licence"]
        assert (CORPUS / entry["file"]).is_file()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_a_corpus_workflow_imports_as_a_user_would_want(entry: dict[str, Any]) -> None:
    outcome = score(entry, INFO)
    assert outcome.wanted, outcome.why
    data = json.loads((CORPUS / entry["file"]).read_text(encoding="utf-8"))
    template = parse_template(import_workflow(data, "corpus", INFO).template, entry["file"])
    defaults = {n: p.default for n, p in template.parameters.items() if p.default is not None}
    assert defaults  # every corpus workflow has values worth defaulting
    # Every input a defaulted parameter writes (all of its tied inputs) held that value.
    bound = bind(template, defaults, "job")
    assert bound == apply_output_prefix(copy.deepcopy(template.workflow), "job")


@pytest.mark.comfyui
def test_an_imported_hires_fix_ui_workflow_runs_on_the_real_comfyui(
    make_app: MakeApp, real_comfyui: LocalComfyUI, tmp_path: Path
) -> None:
    """Comfy-Org's hires-fix template (UI format, two KSampler passes), imported with the
    live ComfyUI's node list, runs there: one seed and one prompt write both passes."""
    live = requests.get(f"{real_comfyui.url}/object_info", timeout=60).json()
    data = json.loads((CORPUS / "comfy-org" / "hiresfix_latent_workflow.json").read_text())
    templates = tmp_path / "templates"
    templates.mkdir()
    imported = import_workflow(data, "hires", live).template
    (templates / "hires.json").write_text(json.dumps(imported))
    client = make_app([real_comfyui.url], templates_dir=str(templates), read_timeout_s=120.0)
    request = {
        "template": "hires",
        "prompt": "a lighthouse",
        "checkpoint": RANDOM_SD15,
        "seed": 7,
        **{"width": 64, "height": 64, "steps": 1},
        **{"hires_width": 64, "hires_height": 64, "hires_steps": 1},
    }
    resp = client.test_client().post(
        "/v1/generate", json=request, headers={"Accept": "application/json"}
    )
    assert resp.status_code == 200, body(resp)
    job = body(resp)
    assert job["status"] == "succeeded"
    assert (job["params"]["seed"], job["params"]["hires_denoise"]) == (7, 0.5)
    [output] = job["outputs"]  # the SaveImage of the second pass (the preview is temp)
    image = client.test_client().get(output["url"])
    assert Image.open(io.BytesIO(image.data)).size == (64, 64)
