"""The workflow corpus (tests/fixtures/workflows): real workflows from public repositories,
each with the parameters a ComfyUI user would want from ``templates import``.

``python -m tests.corpus`` prints, for the ``comfygate`` on the path, how many files import as
a user would want (every expected parameter, writing exactly the expected inputs). Run it
with ``PYTHONPATH`` pointing at another checkout's ``src`` to compare versions.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfygate.templates.infer import import_workflow
from comfygate.templates.registry import TemplateError

CORPUS = Path(__file__).parent / "fixtures" / "workflows"
MANIFEST: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))


def object_info() -> dict[str, Any]:
    """The real ComfyUI 0.3.75's /object_info, with the audio nodes its install cannot load."""
    info: dict[str, Any] = {}
    for name in MANIFEST["object_info"]:
        path = CORPUS / name
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            info.update(json.load(f))
    return info


@dataclass(frozen=True)
class Outcome:
    file: str
    wanted: bool
    why: str


def score(entry: dict[str, Any], info: dict[str, Any]) -> Outcome:
    data = json.loads((CORPUS / entry["file"]).read_text(encoding="utf-8"))
    try:
        template = import_workflow(data, "corpus", info).template
    except TemplateError as exc:
        return Outcome(entry["file"], False, f"refused: {str(exc)[:100]}")
    got = {name: p["targets"] for name, p in template["parameters"].items()}
    for name, targets in entry["expect"].items():
        if name not in got:
            return Outcome(entry["file"], False, f"no {name!r}")
        if sorted(got[name]) != sorted(targets):
            return Outcome(entry["file"], False, f"{name!r} writes {got[name]}, not {targets}")
    return Outcome(entry["file"], True, "")


def main() -> None:
    info = object_info()
    outcomes = [score(entry, info) for entry in MANIFEST["workflows"]]
    for outcome in outcomes:
        print(f"{'ok  ' if outcome.wanted else 'FAIL'} {outcome.file} {outcome.why}")
    wanted = sum(o.wanted for o in outcomes)
    print(f"{wanted} of {len(outcomes)} imported as a user would want")


if __name__ == "__main__":
    main()
