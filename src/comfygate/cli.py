"""The ``comfygate`` command: ``serve`` runs the gateway on a production WSGI server (serving.py;
``config`` shows its settings, ``comfyui install`` sets up the local ComfyUI); ``run``,
``jobs`` and ``templates list/check`` are clients of a running gateway, through the public
SDK (``comfygate.sdk.Client``) and nothing else; ``templates import`` works on local files.

Client commands print results on stdout and every error as one ``comfygate: ...`` line on
stderr; exit 2 for a request that is wrong (usage, validation), 1 for anything else.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from comfygate import __version__, serving
from comfygate.sdk import (
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT_S,
    Client,
    ClientTimeoutError,
    ComfyGateAPIError,
    ComfyGateError,
    Event,
    Job,
)
from comfygate.serving import SETTINGS_EPILOG, settings_options

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

log = logging.getLogger("comfygate.cli")


@click.group()
@click.version_option(__version__, prog_name="comfygate")
def main() -> None:
    """ComfyGate: an HTTP API gateway for ComfyUI."""


@main.command(epilog=SETTINGS_EPILOG)
@settings_options
@click.option(
    "--print-config",
    is_flag=True,
    help="print the effective settings and where each came from, then exit",
)
def serve(config_file: str | None, print_config: bool, **flags: Any) -> None:
    """Run the gateway (waitress, a production WSGI server)."""
    settings, sources = serving.resolve(config_file, flags)
    if print_config:
        serving.print_config(settings, sources)
        return
    serving.run(settings)


@main.command("config", epilog=SETTINGS_EPILOG)
@settings_options
def config_command(config_file: str | None, **flags: Any) -> None:
    """Show the effective settings (secrets masked) and where each came from: flag,
    environment, file or default. Takes the same flags as serve."""
    serving.print_config(*serving.resolve(config_file, flags))


@main.group("comfyui")
def comfyui_group() -> None:
    """The local CPU ComfyUI that serve runs when no backend is given."""


@comfyui_group.command("install")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="where to install [env COMFYGATE_COMFYUI_HOME; default ~/.cache/comfygate/comfyui]",
)
@click.option(
    "--no-checkpoint",
    is_flag=True,
    help="skip the random-weight SD 1.5 checkpoint (2 GiB; txt2img needs a checkpoint)",
)
def comfyui_install(home: Path | None, no_checkpoint: bool) -> None:
    """Install ComfyUI 0.3.75 (CPU) into its own virtual environment, and a random-weight
    SD 1.5 checkpoint so txt2img runs with no download. About 3 minutes and 8 GB the first
    time; nothing to do when it is there. Safe to run again after a failure."""
    from comfygate.comfy.install import Installer, InstallError
    from comfygate.comfy.local import default_home

    installer = Installer(home or default_home(), checkpoint=not no_checkpoint)
    if installer.complete():
        click.echo(f"ComfyUI is installed in {installer.home}; nothing to do")
        return
    click.echo(f"installing the local CPU ComfyUI into {installer.home} (log: {installer.log})")
    try:
        with _InstallView() as view:
            installer.install(view)
    except InstallError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        _die("interrupted; run it again to go on where it stopped", EXIT_INTERRUPTED)
    click.echo("ready: `comfygate serve` runs it when no backend is given")


class _InstallView:
    """One line per install step: a spinner, the time it takes and what pip is fetching on a
    terminal; plain lines otherwise (a log, CI)."""

    def __init__(self) -> None:
        self.console = _console()
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.title = ""

    def __enter__(self) -> _InstallView:
        if self.console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                SpinnerColumn(finished_text="ok"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[doing]}", style="dim"),
                console=self.console,
            )
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, index: int, total: int, title: str) -> None:
        self.title = f"[{index}/{total}] {title}"
        if self.bar is not None:
            self.task = self.bar.add_task(self.title, total=1, doing="")
        else:
            self.console.print(self.title)

    def activity(self, text: str) -> None:
        if self.bar is not None and self.task is not None:
            width = max(10, self.console.width - len(self.title) - 20)
            shown = text if len(text) <= width else text[: width - 1] + "\u2026"
            self.bar.update(self.task, doing=shown)

    def step_done(self, seconds: float, skipped: bool) -> None:
        result = "already there" if skipped else f"done in {seconds:.0f} s"
        if self.bar is not None and self.task is not None:
            # The time column shows how long it took.
            self.bar.update(self.task, doing=result.split(" in ")[0], completed=1)
        else:
            self.console.print(f"{self.title}: {result}")


# --- client commands: they speak only the gateway's public HTTP API, through the SDK ---------

EXIT_FAILURE = 1
EXIT_USAGE = 2  # also click's own code for usage errors
EXIT_INTERRUPTED = 130
# Error codes that mean "what you asked for is wrong", not "it went wrong".
USAGE_CODES = frozenset({"bad_request", "validation_error"})

server_option = click.option(
    "--server",
    envvar="COMFYGATE_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    metavar="URL",
    help="the gateway's base URL (env COMFYGATE_SERVER)",
)
api_key_option = click.option(
    "--api-key",
    envvar="COMFYGATE_API_KEY",
    metavar="KEY",
    help="sent as 'Authorization: Bearer KEY' (env COMFYGATE_API_KEY)",
)


def _die(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"comfygate: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _error_line(code: str, message: str, details: Mapping[str, Any]) -> str:
    """``generation_failed: node 4 (CheckpointLoaderSimple): <ComfyUI's message>``."""
    node_id, node_type, detail = (
        details.get("node_id"),
        details.get("node_type"),
        details.get("message"),
    )
    if node_id and node_type and detail:
        return f"{code}: node {node_id} ({node_type}): {detail}"
    return f"{code}: {message}"


@contextmanager
def _reporting() -> Iterator[None]:
    """Every SDK error leaves as one line on stderr: 2 for a request that is wrong, 1 else."""
    try:
        yield
    except ComfyGateAPIError as exc:
        _die(
            _error_line(exc.code, exc.message, exc.details),
            EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILURE,
        )
    except ComfyGateError as exc:
        _die(str(exc))


@contextmanager
def _client(
    server: str, api_key: str | None, timeout: float = DEFAULT_TIMEOUT_S
) -> Iterator[Client]:
    try:
        client = Client(server, api_key or None, timeout)
    except ValueError as exc:
        _die(f"--server: {exc}", EXIT_USAGE)
    with _reporting(), client:
        yield client


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # Markup off: template descriptions and error messages are data, not rich markup. A pipe
    # gets a wide console so ids and messages are not wrapped mid-word.
    probe = Console(stderr=stderr)
    return Console(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        width=None if probe.is_terminal else 200,
    )


# --- run ---------------------------------------------------------------------------------


def _schema_property(prop: Mapping[str, Any]) -> tuple[str | None, list[Any] | None]:
    """The JSON type and enum of a parameter's schema (optional ones are ``anyOf [T, null]``)."""
    candidates = [prop, *(p for p in prop.get("anyOf", []) if isinstance(p, Mapping))]
    kind = next(
        (c["type"] for c in candidates if isinstance(c.get("type"), str) and c["type"] != "null"),
        None,
    )
    enum = next((c["enum"] for c in candidates if isinstance(c.get("enum"), list)), None)
    if kind is None and enum:
        kind = {bool: "boolean", int: "integer", float: "number"}.get(type(enum[0]), "string")
    return kind, enum


def _convert(key: str, raw: str, kind: str | None, enum: list[Any] | None) -> Any:
    value: Any = raw
    try:
        if kind == "integer":
            value = int(raw)
        elif kind == "number":
            value = float(raw)
    except ValueError:
        article = "an" if kind == "integer" else "a"
        _die(f"--param {key}={raw}: '{key}' must be {article} {kind}", EXIT_USAGE)
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            _die(f"--param {key}={raw}: '{key}' must be true or false", EXIT_USAGE)
        value = raw.lower() == "true"
    if enum is not None and value not in enum:
        choices = ", ".join(str(c) for c in enum)
        _die(f"--param {key}={raw}: '{key}' must be one of: {choices}", EXIT_USAGE)
    return value


def parse_params(
    template: Mapping[str, Any], pairs: Sequence[str], prompt: str | None
) -> dict[str, Any]:
    """``KEY=VALUE`` strings typed by the template's JSON Schema (from GET /v1/templates/x)."""
    schema = template.get("parameters") or {}
    props: Mapping[str, Any] = schema.get("properties") or {}
    name = template.get("name", "?")
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _die(f"--param {pair!r} must be KEY=VALUE", EXIT_USAGE)
        raw[key.strip()] = value
    if prompt is not None:
        raw["prompt"] = prompt
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in props:
            known = ", ".join(sorted(props)) or "none"
            option = "--prompt" if key == "prompt" and prompt is not None else f"--param {key}"
            _die(
                f"{option}: template '{name}' has no parameter '{key}' (known: {known})",
                EXIT_USAGE,
            )
        values[key] = _convert(key, value, *_schema_property(props[key]))
    return values


class _ProgressView:
    """Shows a job's events: a rich progress bar on a terminal, plain lines otherwise (a log,
    a CI job). On stderr, so stdout carries only the saved paths."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.console = _console(stderr=True)
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.last_line = ""

    def __enter__(self) -> _ProgressView:
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(f"{self.job_id[:8]} queued", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def _line(self, text: str) -> None:
        if text != self.last_line:
            self.last_line = text
            self.console.print(f"{self.job_id}: {text}")

    def __call__(self, event: Event) -> None:
        if event.type == "status" and event.job is not None:
            status = event.job.status
            if self.bar is not None and self.task is not None:
                self.bar.update(self.task, description=f"{self.job_id[:8]} {status}")
            else:
                self._line(status)
        elif event.type == "progress" and event.progress is not None:
            step = event.progress
            if self.bar is not None and self.task is not None:
                self.bar.update(
                    self.task,
                    total=step.max or None,
                    completed=step.value,
                    description=f"{self.job_id[:8]} node {step.node}",
                )
            else:
                self._line(f"step {step.value}/{step.max} (node {step.node})")


def _output_paths(job: Job, target: Path | None, target_is_dir: bool) -> list[Path]:
    outputs = job.outputs
    if target is None or target_is_dir:
        folder = target or Path.cwd()
        return [folder / f"{job.id}-{o.filename}" for o in outputs]
    if len(outputs) == 1:
        return [target]
    # A file name for several outputs: number them after it rather than fail after the work.
    return [
        target.with_name(f"{target.stem}-{i}{target.suffix or Path(o.filename).suffix}")
        for i, o in enumerate(outputs, 1)
    ]


def _cancel_quietly(client: Client, job_id: str) -> bool:
    try:
        client.cancel(job_id)
    except ComfyGateError:
        return False
    return True


@main.command()
@click.argument("template", required=False)
@click.option("--prompt", metavar="TEXT", help="the 'prompt' parameter")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="a template parameter, typed by the template's schema (repeatable)",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE_OR_DIR",
    help="where to save: a file for one output, a directory (ending in /) for several; "
    "default ./<job_id>-<filename>",
)
@server_option
@api_key_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="give up after S seconds (the job is then cancelled)",
)
@click.option("--no-wait", is_flag=True, help="submit, print the job id, and return")
def run(
    template: str | None,
    prompt: str | None,
    params: tuple[str, ...],
    output: str | None,
    server: str,
    api_key: str | None,
    timeout: float | None,
    no_wait: bool,
) -> None:
    """Run TEMPLATE (default: the gateway's default template) and save its outputs."""
    with _client(server, api_key) as client:
        name = template or client.default_template()
        values = parse_params(client.template(name), params, prompt)
        job = client.submit(template=name, params=values)
        if no_wait:
            click.echo(job.id)
            return
        try:
            with _ProgressView(job.id) as view:
                job = client.wait(job.id, timeout, on_event=view)
        except ClientTimeoutError:
            cancelled = _cancel_quietly(client, job.id)
            _die(
                f"timeout: job {job.id} did not finish within {timeout or 0:g} s"
                + ("; it was cancelled" if cancelled else "; it goes on")
            )
        except KeyboardInterrupt:
            cancelled = _cancel_quietly(client, job.id)
            _die(
                f"interrupted; job {job.id} " + ("cancelled" if cancelled else "goes on"),
                EXIT_INTERRUPTED,
            )
        if not job.succeeded:
            error = job.error
            if error is None:
                _die(f"{job.status}: job {job.id} ended {job.status}")
            _die(
                _error_line(error.code, error.message, error.details),
                EXIT_USAGE if error.code in USAGE_CODES else EXIT_FAILURE,
            )
        target = Path(output) if output else None
        target_is_dir = output is not None and (
            output.endswith(("/", os.sep)) or Path(output).is_dir()
        )
        paths = _output_paths(job, target, target_is_dir)
        if target is not None and target_is_dir:
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                _die(f"{target}: cannot create: {exc.strerror} (job {job.id} succeeded)")
        for out, path in zip(job.outputs, paths, strict=True):
            try:
                client.download(out, path)
            except OSError as exc:
                _die(f"{path}: cannot write: {exc.strerror} (job {job.id} succeeded)")
            click.echo(str(path))
        if not job.outputs:
            click.echo(f"comfygate: job {job.id} succeeded without output files", err=True)


# --- jobs ---------------------------------------------------------------------------------


@main.group("jobs")
def jobs_group() -> None:
    """Jobs on a running gateway."""


@jobs_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    help="only jobs in this state",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, metavar="N")
@server_option
@api_key_option
def jobs_list(status: str | None, limit: int, server: str, api_key: str | None) -> None:
    """The newest jobs, as a table."""
    from rich.table import Table

    with _client(server, api_key) as client:
        table = Table("id", "status", "template", "created", "outputs", "error")
        for job in itertools.islice(client.jobs(status, limit=min(limit, 200)), limit):
            created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
            table.add_row(
                job.id,
                job.status,
                job.template,
                created,
                str(len(job.outputs)),
                job.error.code if job.error else "",
            )
        _console().print(table)


@jobs_group.command("show")
@click.argument("job_id")
@server_option
@api_key_option
def jobs_show(job_id: str, server: str, api_key: str | None) -> None:
    """One job object, as JSON."""
    with _client(server, api_key) as client:
        click.echo(json.dumps(client.get(job_id).raw, indent=2))


@jobs_group.command("cancel")
@click.argument("job_id")
@server_option
@api_key_option
def jobs_cancel(job_id: str, server: str, api_key: str | None) -> None:
    """Cancel a queued or running job."""
    with _client(server, api_key) as client:
        job = client.cancel(job_id)
        click.echo(f"{job.id} {job.status}")


# --- templates ----------------------------------------------------------------------------


@main.group("templates")
def templates_group() -> None:
    """Templates: list and check those of a gateway, import a ComfyUI workflow."""


@templates_group.command("list")
@server_option
@api_key_option
def templates_list(server: str, api_key: str | None) -> None:
    """Name, description and required parameters of every template."""
    from rich.table import Table

    with _client(server, api_key) as client:
        table = Table("name", "description", "required")
        for item in client.templates():
            required = (item.get("parameters") or {}).get("required") or []
            table.add_row(
                str(item.get("name", "")), str(item.get("description", "")), ", ".join(required)
            )
        _console().print(table)


@templates_group.command("check")
@server_option
@api_key_option
def templates_check(server: str, api_key: str | None) -> None:
    """Each template against each backend's node list: missing node types, inputs, models,
    values every run would fail on. Exit 1 if anything is missing; an optional template (the
    built-in SDXL and Flux ones) that only lacks models or node types is 'unavailable'."""
    from rich.table import Table

    with _client(server, api_key) as client:
        report = client.check_templates()
    table = Table("backend", "template", "result", "missing")
    failed = False
    backends = report.get("backends") or []
    for backend in backends:
        name = str(backend.get("name", ""))
        if not backend.get("checked", True):
            failed = True
            table.add_row(name, "-", "not checked", str(backend.get("error", "")))
            continue
        for item in backend.get("templates") or []:
            problems = item.get("problems") or []
            unavailable = (
                bool(problems)
                and bool(item.get("optional"))
                and all(p.get("kind") in ("node_type", "model") for p in problems)
            )
            failed = failed or (bool(problems) and not unavailable)
            lines = [
                f"{p.get('kind')}: node {p.get('node_id')} ({p.get('class_type')}): "
                f"{p.get('detail')}"
                for p in problems
            ]
            result = "ok" if not problems else "unavailable" if unavailable else "MISSING"
            table.add_row(name, str(item.get("name", "")), result, "\n".join(lines))
    if not backends:
        _die("the gateway has no backends to check")
    _console().print(table)
    if failed:
        sys.exit(EXIT_FAILURE)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" takes a "\n"


@templates_group.command("import")
@click.argument("workflow", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="default <name>.json"
)
@click.option("--name", help="the template's name (default: from the file name)")
@click.option(
    "--object-info",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a saved /object_info of the ComfyUI it will run on (sharper parameter inference)",
)
@click.option("--force", is_flag=True, help="overwrite an existing output file")
def templates_import(
    workflow: Path, output: Path | None, name: str | None, object_info: Path | None, force: bool
) -> None:
    """Make a template from a ComfyUI workflow: Export (API), or the UI format that 'Save'
    writes (with --object-info). Review the inferred parameters it prints before using it."""
    try:
        from comfygate.templates.infer import default_name, import_workflow
        from comfygate.templates.infer.nodeinfo import check_object_info
    except ImportError:
        _die("templates import is not available in this version of comfygate")
    from comfygate.templates.registry import TemplateError, parse_template

    # A gateway loads NAME.json as template NAME only: the name follows the output file.
    name = name or default_name(output.stem if output is not None else workflow.stem)
    if not _NAME.fullmatch(name):
        _die(f"--name {name!r}: letters, digits, '_', '.', '-' (64 at most)", EXIT_USAGE)
    if output is not None and output.stem != name:
        _die(
            f"-o {output}: a gateway loads it as template {output.stem!r} only; name the file "
            f"{name}.json, or give --name {output.stem}",
            EXIT_USAGE,
        )
    data = _read_json(workflow)
    info = _read_json(object_info) if object_info is not None else None
    if info is not None:
        try:
            check_object_info(info)
        except TemplateError as exc:
            _die(f"--object-info {object_info}: {exc}", EXIT_USAGE)
    try:
        imported = import_workflow(data, name, info)
        # Checked again here: what is written must load in a gateway, whoever inferred it.
        template = parse_template(imported.template, f"template inferred from {workflow}")
    except TemplateError as exc:
        _die(f"{workflow}: {exc}", EXIT_USAGE)
    target = output or Path(f"{name}.json")
    if target.exists() and not force:
        _die(f"{target} exists (--force to overwrite)", EXIT_USAGE)
    try:
        target.write_text(json.dumps(imported.template, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        _die(f"{target}: cannot write: {exc.strerror}", EXIT_USAGE)

    from rich.table import Table

    table = Table("parameter", "type", "default", "targets")
    for pname, param in template.parameters.items():
        flags = [f for f, on in (("required", param.required), ("seed", param.seed)) if on]
        if param.model_folder:
            flags.append(f"model in {param.model_folder}")
        kind = param.type + (f" ({', '.join(flags)})" if flags else "")
        default = "" if param.default is None else json.dumps(param.default)
        table.add_row(pname, kind, default, ", ".join(str(t) for t in param.parsed_targets))
    err = _console(stderr=True)
    err.print(table)
    for note in imported.notes:
        err.print(f"note: {note}")
    click.echo(str(target))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _die(f"{path}: cannot read: {exc.strerror}", EXIT_USAGE)
    except ValueError as exc:
        _die(f"{path}: not valid JSON: {exc}", EXIT_USAGE)
