"""Run every benchmark, each as its own process (so each report records its exact command),
sharing one real local ComfyUI for those that use it. Writes ``run_all.md`` beside the reports
with what ran, how long each took, and which failed.

    .venv/bin/python -m bench.run_all            # the full suite (about 20 minutes here)
    .venv/bin/python -m bench.run_all --quick    # tiny sizes, fake ComfyUI only
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    DEFAULT_OUT,
    ROOT,
    Report,
    comfyui_version,
    fmt,
    real_comfyui,
    work_dir,
)

# (module, uses the real ComfyUI and the peer)
BENCHMARKS: list[tuple[str, bool]] = [
    ("overhead", True),
    ("phases", True),
    ("completion", True),
    ("repetition", True),
    ("load", False),
    ("concurrency", False),
    ("scaling", False),
    ("growth", False),
    ("replicas", False),  # 1, 2 and 3 replicas on one Redis
    ("backend_growth", False),  # starts its own ComfyUI: it empties and restarts it
]


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes, fake ComfyUI only")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-real", action="store_true", help="no real ComfyUI parts")
    p.add_argument("--no-peer", action="store_true", help="no comfy-api-proxy + comfy-sdk")
    p.add_argument("--only", default="", help="comma-separated benchmark names")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    args = p.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only.split(",")]
    real = not (args.quick or args.no_real)
    summary = Report("run_all", "The whole benchmark suite", args.out, args.quick)
    rows: list[list[object]] = []
    failed = 0
    with work_dir("run_all") as wd, contextlib.ExitStack() as stack:
        comfy_url: str | None = None
        if real and any(uses_real for _, uses_real in chosen):
            comfy_url = stack.enter_context(real_comfyui(None, wd))
            summary.extra_versions["ComfyUI"] = comfyui_version(comfy_url)
        for name, uses_real in chosen:
            cmd = [sys.executable, "-m", f"bench.{name}"]
            if args.out.resolve() != DEFAULT_OUT:
                cmd += ["--out", str(args.out)]
            if args.quick:
                cmd.append("--quick")
            if uses_real:
                if comfy_url:
                    cmd.append(f"--comfyui-url={comfy_url}")
                else:
                    cmd.append("--no-real")
                if args.no_peer:
                    cmd.append("--no-peer")
            print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
            started = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=ROOT)
            try:
                code = proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                code = -1
            finally:
                if proc.poll() is None:  # timed out or we are stopping: let it clean up
                    proc.terminate()
                    proc.wait(60)
            elapsed = time.monotonic() - started
            failed += code != 0
            rows.append([name, "ok" if code == 0 else f"FAILED ({code})", fmt(elapsed, 0)])
    total = time.monotonic() - summary.started
    rows.append(["total", "", fmt(total, 0)])
    summary.table("Benchmarks run", ["benchmark", "result", "seconds"], rows)
    summary.note(
        "Each benchmark's report (`NAME.md`), plot (`NAME.png`) and raw figures (`NAME.json`) "
        "are beside this file; `docs/BENCHMARKS.md` reads them."
    )
    summary.write()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
