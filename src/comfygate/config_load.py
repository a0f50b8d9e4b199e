"""Where the settings come from, in order of precedence: CLI flags, ``COMFYGATE_*``
environment, a TOML file (``--config`` or ``COMFYGATE_CONFIG``), the defaults of
``config.Settings``; where each one came from (``comfygate config``); and DATA_DIR's check.
A bad setting is one ``ConfigError`` line naming it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from comfygate.config import ENV_PREFIX, ConfigError, Settings


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    section = data.get("comfygate", data)
    return {str(k).lower(): v for k, v in section.items()}


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            out[name] = environ[key]
    return out


def load_settings(
    config_file: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge the sources in order of precedence and validate once."""
    return load_settings_with_sources(config_file, overrides, environ)[0]


def load_settings_with_sources(
    config_file: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """The settings, and where each one came from: ``flag``, ``env COMFYGATE_X``,
    ``file PATH`` or ``default`` (what ``comfygate config`` shows)."""
    env = dict(os.environ if environ is None else environ)
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = env[ENV_PREFIX + "CONFIG"]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        from_file = _from_file(Path(config_file))
        merged.update(from_file)
        sources.update(dict.fromkeys(from_file, f"file {config_file}"))
    from_env = _from_env(env)
    merged.update(from_env)
    sources.update({name: f"env {ENV_PREFIX}{name.upper()}" for name in from_env})
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged.update(flags)
    sources.update(dict.fromkeys(flags, "flag"))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    return settings, {name: sources.get(name, "default") for name in Settings.model_fields}


def without_password(uri: str) -> str:
    """``uri`` with its password (``redis://:secret@host``) replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}***@{parts.netloc.rpartition('@')[2]}").geturl()


def _one_line(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check of settings together: its message names them
            messages.append(msg)
            continue
        name = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        messages.append(f"{name.upper()} (env {ENV_PREFIX}{name.upper()}): {msg}")
    return "invalid configuration: " + "; ".join(messages)


def prepare_data_dir(settings: Settings) -> Path:
    """Create DATA_DIR if missing and prove it is writable, or fail with one clear line."""
    path = settings.data_dir.expanduser().resolve()
    try:
        # Owner only when the gateway creates it: it holds outputs, inputs and secrets.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"DATA_DIR {settings.data_dir} is not writable: {exc.strerror or exc}"
        ) from None
    return path
