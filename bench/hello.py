"""The ceiling: a bare Flask app answering ``hello`` on the same WSGI server as the gateway
(waitress, same thread count and adjustments as ``comfygate serve``). With
``HELLO_JSON_FILE``, ``/json`` answers that file's JSON object through ``jsonify`` (the
baseline for job reads: the very job object, so the same bytes); with ``HELLO_STATIC_FILE``,
``/static.png`` serves that file (the baseline for cache hits).

    .venv/bin/python -m bench.hello --port 8299 --threads 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask, Response, jsonify, send_file
from waitress.server import create_server

from bench.serve import _value


def make_app() -> Flask:
    app = Flask("hello")

    @app.get("/")
    def hello() -> str:
        return "hello"

    json_file = os.environ.get("HELLO_JSON_FILE")
    if json_file:
        data = json.loads(Path(json_file).read_text())

        @app.get("/json")
        def json_answer() -> Response:
            return jsonify(data)

    static = os.environ.get("HELLO_STATIC_FILE")
    if static:
        # The baseline for cache hits: the same PNG as a plain static file, same server.
        @app.get("/static.png")
        def static_png() -> Response:
            return send_file(static, mimetype="image/png", conditional=False)

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=64)
    p.add_argument("--waitress", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args()
    adjustments: dict[str, Any] = {"threads": args.threads, "channel_timeout": 330}
    for item in args.waitress:
        name, _, value = item.partition("=")
        adjustments[name.strip()] = _value(value.strip())
    server = create_server(make_app(), host="127.0.0.1", port=args.port, **adjustments)

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with contextlib.suppress(OSError, ValueError):  # closed by the signal
        server.run()


if __name__ == "__main__":
    main()
