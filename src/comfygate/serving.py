"""``comfygate serve`` and ``comfygate config``: every setting as a flag, and the server.

The flags are made from the ``Settings`` model (config.py), so ``serve --help`` lists every
setting with its meaning, its ``COMFYGATE_*`` variable and its default, and a new setting is a
flag without another line here. Secrets (``SECRET_SETTINGS``) get no flag: a command line is
visible to every user of the machine (``ps``); they come from the environment or the file.

``comfygate config`` shows each setting's value (secrets masked) and source, and names the
``COMFYGATE_*`` variables that are no setting; ``run`` builds the app and runs it on waitress
until SIGTERM or Ctrl-C, then stops in order.
"""

from __future__ import annotations

import difflib
import gc
import json
import logging
import os
import signal
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from comfygate import __version__, logs
from comfygate.config import ENV_PREFIX, ConfigError, Settings, is_loopback
from comfygate.config_load import load_settings_with_sources, without_password

log = logging.getLogger("comfygate.serve")

F = TypeVar("F", bound=Callable[..., Any])

# COMFYGATE_* variables that are not settings: the config file, and the client commands'.
OTHER_VARIABLES = frozenset({"CONFIG", "SERVER", "API_KEY"})


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``COMFYGATE_*`` variable that is no setting (a typo is otherwise
    silently ignored: ``COMFYGATE_BACKEND=...`` would start the local ComfyUI instead),
    naming the likely intended one."""
    env = os.environ if environ is None else environ
    known = {name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    warnings = []
    for key in sorted(env):
        name = key.removeprefix(ENV_PREFIX)
        if not key.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        warnings.append(f"{key} is not a ComfyGate setting and is ignored{hint}")
    return warnings


# Shown masked by `comfygate config`; URLs are shown without their password.
SECRET_SETTINGS = frozenset({"api_keys", "webhook_secret"})
_URL_SETTINGS = frozenset({"redis_url", "rate_limit_storage_uri"})


def shown_value(settings: Settings, name: str) -> str:
    """A setting's value as an operator may see it: secrets masked, lists comma-separated."""
    value = getattr(settings, name)
    if value is None or value == [] or value == {}:
        return "unset"
    if value == "":
        return '""'  # set, and empty (S3_PREFIX's default)
    if name in SECRET_SETTINGS:
        count = len(value) if isinstance(value, list) else 1
        return f"*** ({count} key{'s' if count != 1 else ''})" if name == "api_keys" else "***"
    if name in _URL_SETTINGS:
        return without_password(str(value))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# Names kept from before the flags were generated (the README and scripts use them).
_ALIASES = {"backends": ("--backend",)}

SETTINGS_EPILOG = (
    "Every flag is also an environment variable COMFYGATE_<NAME> and a key in the --config "
    "TOML file (flag > environment > file > default). "
    + ", ".join(n.upper() for n in sorted(SECRET_SETTINGS))
    + " have no flag (a command line is visible to every user): set them in the environment "
    "or the file. `comfygate config` shows the effective settings and where each came from."
)


def _plain(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _default_text(name: str, info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if default is None or default in ([], {}):
        return "unset"
    return shown_value(Settings.model_construct(**{name: default}), name)


def _option(name: str, info: FieldInfo) -> Callable[[F], F]:
    kind = _plain(info.annotation)
    flag = "--" + name.replace("_", "-")
    help_text = (info.description or "").rstrip(".")
    help_text += f" [env {ENV_PREFIX}{name.upper()}; default: {_default_text(name, info)}]"
    decls = [*_ALIASES.get(name, ()), flag, name]
    options: dict[str, Any] = {"help": help_text, "default": None}
    if kind is bool:
        decls = [f"{flag}/--no-{flag[2:]}", name]
    elif get_origin(kind) is Literal:
        options["type"] = click.Choice([str(c) for c in get_args(kind)], case_sensitive=False)
    elif get_origin(kind) is list:
        options.update(multiple=True, metavar="A[,B...]")
    elif get_origin(kind) is dict:
        options["metavar"] = "JSON"
    elif kind is int:
        options["type"] = click.INT
    elif kind is float:
        options["type"] = click.FLOAT
    elif kind is Path:
        options["type"] = click.Path()
    return click.option(*decls, **options)


def settings_options(command: F) -> F:
    """Decorate a click command with ``--config``, a flag per setting, and the epilog."""
    for name, info in reversed(Settings.model_fields.items()):
        if name not in SECRET_SETTINGS:
            command = _option(name, info)(command)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help=f"a TOML settings file [env {ENV_PREFIX}CONFIG]",
    )(command)


def overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """The settings given as flags (lists joined: each value may itself be a, b, c)."""
    out: dict[str, Any] = {}
    for name, value in flags.items():
        if name not in Settings.model_fields or value is None or value == ():
            continue
        out[name] = ",".join(value) if isinstance(value, tuple) else value
    return out


def resolve(config_file: str | None, flags: dict[str, Any]) -> tuple[Settings, dict[str, str]]:
    """The settings and their sources, or exit 2 with one line naming the bad setting."""
    try:
        return load_settings_with_sources(config_file, overrides(flags))
    except ConfigError as exc:
        click.echo(f"comfygate: {exc}", err=True)
        sys.exit(2)


def print_config(settings: Settings, sources: dict[str, str]) -> None:
    """``NAME  VALUE  SOURCE`` for every setting, secrets masked; unknown variables after."""
    rows = [(n.upper(), shown_value(settings, n), sources[n]) for n in Settings.model_fields]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    click.echo(f"{'NAME':<{widths[0]}}  {'VALUE':<{widths[1]}}  SOURCE")
    for name, value, source in rows:
        click.echo(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}")
    for warning in unknown_variables():
        click.echo(f"comfygate: warning: {warning}", err=True)


def run(settings: Settings, waitress: dict[str, Any] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; exit 1 with one line if the gateway cannot start.
    ``waitress``: server adjustments on top of ``build_server``'s (bench/serve.py's)."""
    from comfygate.api.auth import EXTENSION as KEYS
    from comfygate.app import create_app
    from comfygate.wsgi_server import build_server

    logs.configure(settings.log_format, settings.log_level)
    # Before anything starts: a mistyped COMFYGATE_BACKEND would start the local ComfyUI.
    for warning in unknown_variables():
        log.warning("%s", warning)
    try:
        app = create_app(settings=settings, configure_logging=False)
    except ConfigError as exc:
        logs.finish()
        click.echo(f"comfygate: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        logs.finish()
        click.echo(f"comfygate: cannot start: {exc}", err=True)
        sys.exit(1)
    gateway = app.extensions["comfygate"]
    # The one place that warns about an open gateway (docs/SECURITY.md).
    if not is_loopback(settings.host) and not app.extensions[KEYS]:
        log.warning(
            "listening on %s with no API_KEYS or API_KEYS_FILE: anyone who reaches it can use it",
            settings.host,
        )
    try:
        server = build_server(app, settings, **(waitress or {}))
    except OSError as exc:
        gateway.stop()
        logs.finish()
        click.echo(
            f"comfygate: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", err=True
        )
        sys.exit(1)

    stopping = False

    def _graceful(signum: int, frame: types.FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            # A second SIGTERM or Ctrl-C while waitress stops its threads: raising again
            # inside its shutdown would break it (a traceback and exit code 1).
            log.info("signal %s: already stopping", signal.Signals(signum).name)
            return
        stopping = True
        log.info("signal %s: stopping", signal.Signals(signum).name)
        gateway.stopping()
        # waitress's run() ends its loop and stops its worker threads on SystemExit; closing
        # the listening socket alone would leave the loop serving open connections.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    # What start-up made (templates, schemas, the app) lives as long as the process: out of
    # the collector's sight, so a full collection no longer walks it in the middle of a
    # request (the p99 of a model-free generation).
    gc.collect()
    gc.freeze()
    log.info("ComfyGate %s listening on http://%s:%s", __version__, settings.host, settings.port)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        server.close()
        gateway.stop()
