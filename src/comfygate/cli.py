"""The ``comfygate`` command: ``serve`` runs the gateway on a production WSGI server."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

import click

from comfygate import __version__
from comfygate.config import ConfigError, load_settings

log = logging.getLogger("comfygate.cli")


@click.group()
@click.version_option(__version__, prog_name="comfygate")
def main() -> None:
    """ComfyGate: an HTTP API gateway for ComfyUI."""


@main.command()
@click.option("--host", help="address to listen on (default 127.0.0.1)")
@click.option("--port", type=int, help="port to listen on (default 8288)")
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="URL",
    help="a ComfyUI base URL (repeatable); none: run the local ComfyUI",
)
@click.option(
    "--local-comfyui", is_flag=True, default=None, help="also run the managed local CPU ComfyUI"
)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="a TOML settings file"
)
@click.option("--data-dir", help="database, outputs, cache (default ./comfygate-data)")
@click.option("--threads", type=int, help="WSGI worker threads")
def serve(
    host: str | None,
    port: int | None,
    backends: tuple[str, ...],
    local_comfyui: bool | None,
    config_file: str | None,
    data_dir: str | None,
    threads: int | None,
) -> None:
    """Run the gateway (waitress, a production WSGI server)."""
    from waitress.server import create_server

    from comfygate.app import create_app

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "local_comfyui": local_comfyui,
        "data_dir": data_dir,
        "threads": threads,
        "backends": list(backends) or None,
    }
    try:
        settings = load_settings(config_file, overrides)
        app = create_app(settings=settings)
    except ConfigError as exc:
        click.echo(f"comfygate: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        click.echo(f"comfygate: cannot start: {exc}", err=True)
        sys.exit(1)
    gateway = app.extensions["comfygate"]
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_keys:
        log.warning(
            "listening on %s with no API_KEYS: anyone who reaches it can use it", settings.host
        )
    try:
        server = create_server(
            app,
            host=settings.host,
            port=settings.port,
            threads=settings.threads,
            ident="comfygate",
            channel_timeout=max(120, int(settings.request_timeout_s) + 30),
        )
    except OSError as exc:
        gateway.stop()
        click.echo(
            f"comfygate: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", err=True
        )
        sys.exit(1)
    stopping = threading.Event()

    def _graceful(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("signal %s: stopping", signal.Signals(signum).name)
            server.close()

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    log.info("ComfyGate %s listening on http://%s:%s", __version__, settings.host, settings.port)
    try:
        server.run()
    except (OSError, ValueError):
        if not stopping.is_set():
            raise
    finally:
        gateway.stop()
