"""Fake ComfyUIs in a process of their own, for the benchmarks that need many or slow backends.

Prints ``{"urls": [...]}`` on one line once all listen, then answers commands read from stdin,
one JSON line each: ``hold`` / ``release`` (every fake), ``stats`` (prompts each one ran).
Stops at end of input. ``--slow INDEX:FACTOR`` makes fake INDEX that many times slower;
``--checkpoint NAME`` (repeatable) sets the checkpoints the fakes offer (a job that names one
only these fakes have runs on them only).
"""

from __future__ import annotations

import argparse
import json
import sys

from comfygate.testing.fake_comfyui import FakeComfyUI


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--service-time", type=float, default=0.0)
    p.add_argument("--no-caching", action="store_true")
    p.add_argument("--slow", action="append", default=[], metavar="INDEX:FACTOR")
    p.add_argument("--checkpoint", action="append", default=None, metavar="NAME")
    args = p.parse_args()
    factors = {int(i): float(f) for i, f in (s.split(":") for s in args.slow)}
    fakes = [
        FakeComfyUI(
            service_time_s=args.service_time * factors.get(i, 1.0), checkpoints=args.checkpoint
        )
        for i in range(args.count)
    ]
    for fake in fakes:
        fake.caching = not args.no_caching
        fake.previews = False
        fake.start()
    try:
        print(json.dumps({"urls": [f.url for f in fakes]}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "hold":
                for fake in fakes:
                    fake.hold()
            elif command == "release":
                for fake in fakes:
                    fake.release()
            answer = {
                "ok": True,
                "ran": [len(f.submissions) for f in fakes],
                "queued": [f.queue_remaining for f in fakes],
            }
            print(json.dumps(answer), flush=True)
    finally:
        for fake in fakes:
            fake.stop()


if __name__ == "__main__":
    main()
