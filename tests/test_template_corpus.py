"""Every workflow of the corpus (real files from public repositories, tests/fixtures/workflows)
imports as a ComfyUI user would want, against the real ComfyUI 0.3.75's /object_info: each
expected parameter writes exactly the expected node inputs, and binding the defaults gives
back the workflow's graph (so every input a parameter ties held the same value)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from comfygate.templates import bind
from comfygate.templates.binding import apply_output_prefix
from comfygate.templates.infer import import_workflow
from comfygate.templates.registry import parse_template
from tests.corpus import CORPUS, MANIFEST, object_info, score

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
