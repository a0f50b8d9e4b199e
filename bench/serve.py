"""``comfygate serve``, plus waitress adjustments the CLI does not offer (yet).

Runs the gateway exactly as ``comfygate serve`` does (``comfygate.serving.run``: the same
settings sources, server, graceful stop) and applies ``--waitress NAME=VALUE`` on top, e.g.
``--waitress connection_limit=2000 --waitress asyncore_use_poll=true``. The benchmarks use it
only where they measure such an adjustment; everything else runs the real ``comfygate serve``.
"""

from __future__ import annotations

import argparse
from typing import Any

from comfygate.config_load import load_settings
from comfygate.serving import run


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
    adjustments: dict[str, Any] = {}
    for item in args.waitress:
        name, _, value = item.partition("=")
        adjustments[name.strip()] = _value(value.strip())
    run(settings, waitress=adjustments)


if __name__ == "__main__":
    main()
