"""``comfygate serve``, plus waitress adjustments the CLI does not offer (yet).

Builds the app and the server exactly as ``comfygate serve`` does (same settings sources, the
same ``comfygate.wsgi_server.build_server``) and applies ``--waitress NAME=VALUE`` on top, e.g.
``--waitress connection_limit=2000 --waitress asyncore_use_poll=true``. The benchmarks use it
only where they measure such an adjustment; everything else runs the real ``comfygate serve``.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType
from typing import Any

from comfygate.app import create_app
from comfygate.config import load_settings
from comfygate.wsgi_server import build_server


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backend", action="append", default=[])
    p.add_argument("--port", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int)
    p.add_argument("--waitress", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args()
    settings = load_settings(
        None,
        {
            "backends": args.backend or None,
            "port": args.port,
            "data_dir": args.data_dir,
            "threads": args.threads,
        },
    )
    app = create_app(settings=settings)
    gateway = app.extensions["comfygate"]
    adjustments: dict[str, Any] = {}
    for item in args.waitress:
        name, _, value = item.partition("=")
        adjustments[name.strip()] = _value(value.strip())
    server = build_server(app, settings, **adjustments)

    def _graceful(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # as in cli.serve: waitress' run() shuts down on SystemExit

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        server.close()
        gateway.stop()


if __name__ == "__main__":
    main()
