"""The client commands (run, jobs, templates) against a real gateway on the fake ComfyUI."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from PIL import Image
from rich.console import Console

from comfygate import cli
from comfygate.cli import main, parse_params
from comfygate.sdk import Event
from comfygate.testing.fake_comfyui import DEFAULT_CHECKPOINT, FakeComfyUI
from tests.conftest import MakeApp
from tests.corpus import CORPUS
from tests.corpus import object_info as corpus_object_info
from tests.helpers import wait_for
from tests.live import serve


@pytest.fixture
def app(fake: FakeComfyUI, make_app: MakeApp) -> Flask:
    return make_app([fake.url], sse_heartbeat_s=0.5)


@pytest.fixture
def url(app: Flask) -> Iterator[str]:
    with serve(app) as base:
        yield base


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def invoke(runner: CliRunner, url: str, *args: str) -> Result:
    return runner.invoke(main, [*args, "--server", url])


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("comfygate: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


SMALL = ("--param", "width=64", "--param", "height=64")


# --- run ----------------------------------------------------------------------------------


def test_run_saves_the_png_and_prints_its_path(
    runner: CliRunner, url: str, app: Flask, fake: FakeComfyUI, tmp_path: Path
) -> None:
    # The job starts once the command follows its events: it sees every step.
    fake.hold()
    events = app.extensions["comfygate"].jobs.events

    def release_once_followed() -> None:
        wait_for(lambda: events.subscriber_count() > 0)
        fake.release()

    release = threading.Thread(target=release_once_followed)
    release.start()
    result = invoke(runner, url, "run", "--prompt", "a cat", "--param", "steps=2", *SMALL)
    release.join(10)
    assert result.exit_code == 0, result.output
    [printed] = result.stdout.splitlines()
    path = Path(printed)
    assert path.parent == tmp_path
    assert path.name.endswith("-9-0.png")
    assert len(path.name.split("-")[0]) == 32  # the job id
    assert _png_size(path) == (64, 64)
    # Not a terminal: plain progress lines, on stderr.
    assert "step 1/2 (node 3)" in result.stderr
    assert "step 2/2 (node 3)" in result.stderr


def test_run_params_are_typed_by_the_schema(
    runner: CliRunner, url: str, fake: FakeComfyUI, tmp_path: Path
) -> None:
    result = invoke(
        runner,
        url,
        "run",
        "txt2img",
        "--prompt",
        "a cat",
        "--param",
        "steps=2",
        "--param",
        "cfg=6.5",
        "--param",
        "sampler=euler",
        *SMALL,
        "-o",
        "cat.png",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "cat.png"
    assert _png_size(tmp_path / "cat.png") == (64, 64)
    inputs = fake.submissions[-1]["prompt"]["3"]["inputs"]
    assert (inputs["steps"], inputs["cfg"], inputs["sampler_name"]) == (2, 6.5, "euler")
    assert isinstance(inputs["steps"], int)


def test_run_several_outputs_into_a_directory(runner: CliRunner, url: str, tmp_path: Path) -> None:
    result = invoke(runner, url, "run", "solid", "--param", "batch_size=2", "-o", "out/")
    assert result.exit_code == 0, result.output
    paths = [Path(p) for p in result.stdout.splitlines()]
    assert [p.name.split("-", 1)[1] for p in paths] == ["3-0.png", "3-1.png"]
    assert all((tmp_path / p).parent == tmp_path / "out" for p in paths)
    assert all(_png_size(tmp_path / p) == (64, 64) for p in paths)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("steps=abc", "comfygate: --param steps=abc: 'steps' must be an integer"),
        ("cfg=high", "comfygate: --param cfg=high: 'cfg' must be a number"),
        ("sampler=warp", "comfygate: --param sampler=warp: 'sampler' must be one of: euler, "),
        ("colour=red", "comfygate: --param colour: template 'txt2img' has no parameter"),
        ("steps", "comfygate: --param 'steps' must be KEY=VALUE"),
    ],
)
def test_run_bad_params_exit_2_before_submitting(
    runner: CliRunner, url: str, fake: FakeComfyUI, param: str, message: str
) -> None:
    result = invoke(runner, url, "run", "--prompt", "x", "--param", param)
    assert result.exit_code == 2
    assert _one_error_line(result).startswith(message)
    assert fake.submissions == []


def test_unknown_param_lists_the_known_ones(runner: CliRunner, url: str) -> None:
    result = invoke(runner, url, "run", "solid", "--prompt", "x")
    assert result.exit_code == 2
    assert _one_error_line(result) == (
        "comfygate: --prompt: template 'solid' has no parameter 'prompt' "
        "(known: batch_size, color, height, width)"
    )


def test_run_validation_error_from_the_gateway_exits_2(runner: CliRunner, url: str) -> None:
    result = invoke(runner, url, "run", "--prompt", "x", "--param", "steps=0")
    assert result.exit_code == 2
    assert _one_error_line(result).startswith("comfygate: validation_error: 'steps'")


def test_run_generation_failure_is_one_line_and_exit_1(
    runner: CliRunner, url: str, fake: FakeComfyUI
) -> None:
    fake.fail_next_execution("4", message="cannot load the checkpoint\nat line 3")
    result = invoke(runner, url, "run", "--prompt", "x", "--param", "steps=1", *SMALL)
    assert result.exit_code == 1
    assert _one_error_line(result) == (
        "comfygate: generation_failed: node 4 (CheckpointLoaderSimple): "
        "cannot load the checkpoint at line 3"
    )
    assert result.stdout == ""


def test_run_with_a_model_no_backend_has_is_one_line(runner: CliRunner, url: str) -> None:
    result = invoke(
        runner, url, "run", "--prompt", "x", "--param", "checkpoint=missing.safetensors", *SMALL
    )
    line = _one_error_line(result)
    assert "missing.safetensors" in line
    # Refused up front (validation_error: exit 2) or by ComfyUI (generation_failed: exit 1).
    code = line.split(": ")[1]
    assert result.exit_code == (2 if code == "validation_error" else 1)


def test_run_timeout_cancels_the_job(runner: CliRunner, url: str, fake: FakeComfyUI) -> None:
    fake.hold()
    result = invoke(runner, url, "run", "solid", "--timeout", "0.3")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "did not finish within 0.3 s; it was cancelled" in line
    job_id = line.split("job ")[1].split()[0]
    show = invoke(runner, url, "jobs", "show", job_id)
    assert json.loads(show.stdout)["status"] == "cancelled"


def test_run_no_wait_then_jobs_show_list_cancel(
    runner: CliRunner, url: str, fake: FakeComfyUI
) -> None:
    fake.hold()
    submitted = invoke(runner, url, "run", "solid", "--no-wait")
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip()
    shown = invoke(runner, url, "jobs", "show", job_id)
    assert shown.exit_code == 0
    job = json.loads(shown.stdout)
    assert (job["id"], job["status"], job["template"]) == (job_id, "queued", "solid")
    listed = invoke(runner, url, "jobs", "list", "--status", "queued")
    assert listed.exit_code == 0
    assert job_id in listed.stdout
    cancelled = invoke(runner, url, "jobs", "cancel", job_id)
    assert cancelled.exit_code == 0
    assert cancelled.stdout.strip() == f"{job_id} cancelled"
    again = invoke(runner, url, "jobs", "cancel", job_id)
    assert again.exit_code == 1
    assert _one_error_line(again) == (
        f"comfygate: conflict: job '{job_id}' has already ended (cancelled)"
    )
    missing = invoke(runner, url, "jobs", "show", "nope")
    assert missing.exit_code == 1
    assert _one_error_line(missing) == "comfygate: not_found: no job with id 'nope'"


def test_jobs_list_limit(runner: CliRunner, url: str) -> None:
    for _ in range(3):
        assert invoke(runner, url, "run", "solid").exit_code == 0
    listed = invoke(runner, url, "jobs", "list", "--limit", "2")
    assert listed.exit_code == 0
    assert listed.stdout.count("succeeded") == 2


def test_server_and_api_key_from_the_environment(runner: CliRunner, url: str) -> None:
    result = runner.invoke(
        main, ["templates", "list"], env={"COMFYGATE_SERVER": url, "COMFYGATE_API_KEY": "k"}
    )
    assert result.exit_code == 0, result.output
    assert "txt2img" in result.stdout


def test_unreachable_gateway_is_one_line_exit_1(runner: CliRunner) -> None:
    result = runner.invoke(main, ["jobs", "list", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert _one_error_line(result).startswith(
        "comfygate: cannot reach the ComfyGate gateway at http://127.0.0.1:9"
    )


def test_bad_server_url_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["jobs", "list", "--server", "localhost:8288"])
    assert result.exit_code == 2
    assert _one_error_line(result).startswith("comfygate: --server: ")


# --- templates ----------------------------------------------------------------------------


def test_templates_list(runner: CliRunner, url: str) -> None:
    result = invoke(runner, url, "templates", "list")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert set(rows) >= {"solid", "txt2img"}
    assert rows["txt2img"].split("│")[3].strip() == "prompt"


def test_templates_check_all_ok(runner: CliRunner, url: str) -> None:
    result = invoke(runner, url, "templates", "check")
    assert result.exit_code == 0, result.output
    assert "MISSING" not in result.stdout
    assert result.stdout.count(" ok ") == 3  # img2img, solid, txt2img
    # The SDXL and Flux ones need model files (and nodes) the fake lacks: not a failure.
    rows = [line for line in result.stdout.splitlines() if "unavailable" in line]
    assert [row.split("│")[2].strip() for row in rows] == [
        "flux-dev",
        "flux-schnell",
        "sdxl",
        "sdxl-refiner",
    ]


@pytest.fixture
def bare() -> Iterator[FakeComfyUI]:
    """A ComfyUI with no checkpoint. Requested before make_app, so it stops after the
    gateways built on it: stopping it under a connected gateway would race its shutdown."""
    with FakeComfyUI(checkpoints=[]) as server:
        yield server


def test_templates_check_reports_a_missing_model(
    runner: CliRunner, bare: FakeComfyUI, make_app: MakeApp
) -> None:
    with serve(make_app([bare.url])) as base:
        result = invoke(runner, base, "templates", "check")
    assert result.exit_code == 1
    [txt2img] = [line for line in result.stdout.splitlines() if "txt2img" in line]
    assert "MISSING" in txt2img
    assert "model: node 4 (CheckpointLoaderSimple): no model in folder 'checkpoints'" in txt2img
    [solid] = [line for line in result.stdout.splitlines() if "solid" in line]
    assert " ok " in solid


def test_templates_import_writes_the_template(runner: CliRunner, tmp_path: Path) -> None:
    workflow = _builtin_workflow("txt2img")
    (tmp_path / "my flow.json").write_text(json.dumps(workflow))
    result = runner.invoke(main, ["templates", "import", "my flow.json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "my-flow.json"
    template = json.loads((tmp_path / "my-flow.json").read_text())
    assert template["name"] == "my-flow"
    assert template["workflow"] == workflow
    assert template["parameters"]
    assert "parameter" in result.stderr  # the table of inferred parameters
    again = runner.invoke(main, ["templates", "import", "my flow.json"])
    assert again.exit_code == 2
    named = runner.invoke(
        main, ["templates", "import", "my flow.json", "--name", "cat", "-o", "t/cat.json"]
    )
    assert named.exit_code == 2  # the folder does not exist: refused, not a traceback
    (tmp_path / "t").mkdir()
    named = runner.invoke(
        main, ["templates", "import", "my flow.json", "--name", "cat", "-o", "t/cat.json"]
    )
    assert named.exit_code == 0, named.output
    assert json.loads((tmp_path / "t" / "cat.json").read_text())["name"] == "cat"


def test_templates_import_makes_loadimage_an_image_parameter(
    runner: CliRunner, tmp_path: Path, fake: FakeComfyUI, make_app: MakeApp
) -> None:
    workflow = _builtin_workflow("img2img")
    workflow["4"]["inputs"]["ckpt_name"] = DEFAULT_CHECKPOINT  # exported from this ComfyUI
    (tmp_path / "flow.json").write_text(json.dumps(workflow))
    (tmp_path / "templates").mkdir()
    result = runner.invoke(
        main, ["templates", "import", "flow.json", "--name", "mine", "-o", "templates/mine.json"]
    )
    assert result.exit_code == 0, result.output
    rows = {  # the table of inferred parameters: name -> type, default, targets
        cells[1]: cells[2:5]
        for line in result.stderr.splitlines()
        if len(cells := [cell.strip() for cell in line.split("│")]) == 6
    }
    assert rows["image"] == ["image (required)", "", "1.image"]  # no default file name
    template = json.loads((tmp_path / "templates" / "mine.json").read_text())
    assert template["parameters"]["image"]["type"] == "image"
    with serve(make_app([fake.url], templates_dir=str(tmp_path / "templates"))) as base:
        check = invoke(runner, base, "templates", "check")
    assert check.exit_code == 0, check.output
    [mine] = [line for line in check.stdout.splitlines() if " mine " in line]
    assert " ok " in mine


def test_templates_import_refuses_a_file_that_is_not_json(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "flow.json").write_text("{not json")
    result = runner.invoke(main, ["templates", "import", "flow.json"])
    assert result.exit_code == 2
    assert _one_error_line(result).startswith("comfygate: ")


def _builtin_workflow(name: str) -> dict[str, Any]:
    from comfygate.templates import TemplateRegistry

    return dict(TemplateRegistry.load().get(name).workflow)


# --- pieces -------------------------------------------------------------------------------


def test_parse_params_types_every_json_schema_type() -> None:
    template = {
        "name": "t",
        "parameters": {
            "properties": {
                "n": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "x": {"type": "number"},
                "flag": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                "s": {"type": "string"},
                "size": {"enum": [1, 2]},
            }
        },
    }
    values = parse_params(template, ["n=3", "x=0.5", "flag=TRUE", "s=a=b", "size=2"], prompt=None)
    assert values == {"n": 3, "x": 0.5, "flag": True, "s": "a=b", "size": 2}
    with pytest.raises(SystemExit) as info:
        parse_params(template, ["flag=yes"], prompt=None)
    assert info.value.code == 2


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80)
    monkeypatch.setattr(cli, "_console", lambda **_: terminal)
    job = {"id": "j" * 32, "status": "running"}
    with cli._ProgressView("j" * 32) as view:
        view(Event("status", job))
        view(Event("progress", {"value": 1, "max": 2, "node": "3"}))
        view(Event("progress", {"value": 2, "max": 2, "node": "3"}))
        view(Event("done", {**job, "status": "succeeded"}))
        assert view.bar is not None
        [task] = view.bar.tasks
        assert (task.completed, task.total) == (2, 2)


def test_serve_is_still_there() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "run", "jobs", "templates"):
        assert command in result.stdout
    serve_help = CliRunner().invoke(main, ["serve", "--help"]).stdout
    for option in ("--host", "--port", "--backend", "--local-comfyui", "--config"):
        assert option in serve_help


def test_templates_import_of_the_ui_format_needs_object_info(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    result = runner.invoke(main, ["templates", "import", "ui.json"])
    assert result.exit_code == 2
    assert "UI format" in _one_error_line(result)


def test_templates_import_of_a_flux_ui_workflow(runner: CliRunner, tmp_path: Path) -> None:
    # The README's example: Comfy-Org's Flux dev template, with the real 0.3.75 node list.
    source = CORPUS / "comfy-org" / "flux_dev_full_text_to_image.json"
    (tmp_path / "flux_dev_full_text_to_image.json").write_bytes(source.read_bytes())
    (tmp_path / "object_info.json").write_text(json.dumps(corpus_object_info()))
    result = runner.invoke(
        main,
        [
            "templates",
            "import",
            "flux_dev_full_text_to_image.json",
            "--object-info",
            "object_info.json",
            "-o",
            "flux-dev-mine.json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "flux-dev-mine.json"
    template = json.loads((tmp_path / "flux-dev-mine.json").read_text())
    assert template["name"] == "flux-dev-mine"  # named after -o: the gateway loads it
    params = template["parameters"]
    assert params["prompt"]["targets"] == ["41.clip_l", "41.t5xxl"]
    assert params["unet"]["model_folder"] == "diffusion_models"
    assert params["seed"]["seed"] is True
    assert {"guidance", "steps", "width", "height", "clip", "clip_2", "vae"} <= params.keys()
    assert "guidance" in result.stderr  # the table of inferred parameters


def test_templates_import_names(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "My Flow (v2)..json").write_text(json.dumps(_builtin_workflow("txt2img")))
    result = runner.invoke(main, ["templates", "import", "My Flow (v2)..json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "My-Flow-v2.json"  # cut sanely: no trailing '.' or '-'
    clash = runner.invoke(
        main, ["templates", "import", "My Flow (v2)..json", "--name", "cat", "-o", "dog.json"]
    )
    assert clash.exit_code == 2
    assert "loads it as template 'dog' only" in _one_error_line(clash)
    newline = runner.invoke(main, ["templates", "import", "My Flow (v2)..json", "--name", "cat\n"])
    assert newline.exit_code == 2  # "^...$" would take the trailing newline


def test_templates_import_with_a_file_that_is_no_object_info(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "flow.json").write_text(json.dumps(_builtin_workflow("txt2img")))
    (tmp_path / "info.json").write_text(json.dumps(_builtin_workflow("txt2img")))
    result = runner.invoke(main, ["templates", "import", "flow.json", "--object-info", "info.json"])
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "--object-info info.json" in line
    assert "GET /object_info" in line


def test_run_into_a_folder_that_does_not_exist_is_one_line(runner: CliRunner, url: str) -> None:
    result = invoke(runner, url, "run", "solid", "-o", "nowhere/x.png")
    assert result.exit_code == 1
    assert "nowhere/x.png: cannot write: No such file or directory" in _one_error_line(result)
