"""Where one synchronous generation's time goes, phase by phase, inside a live gateway.

The gateway runs as ``comfygate serve`` does (``comfygate.serving.run``) in a child process
whose hot-path functions are wrapped to record when each call starts and ends (one
``time.monotonic_ns`` pair per call, about a microsecond each). The parent sends sequential
``POST /v1/generate`` requests (model-free ``solid``) and stamps each one's send and its last
byte with the same clock (``CLOCK_MONOTONIC`` is one clock for every process on Linux), so
every phase is placed on the request's own time line: parse and validate, bind, each store
write, the hand-off to the submitting thread, ``POST /prompt``, ComfyUI's run, the websocket
event, the hand-off to the collecting thread, ``/history``, ``/view`` into the storage, the
succeeded write, the waiter's wake-up and the answer. Profiling by wrapping (rather than
cProfile) keeps the cost per call small and shows the gaps between calls, which is where the
thread hand-offs are.

    .venv/bin/python -m bench.phases --n 300                 # the local CPU ComfyUI
    .venv/bin/python -m bench.phases --quick                 # the fake ComfyUI
    .venv/bin/python -m bench.phases --src ../wt/before/src --name phases-before
                                      # another checkout's gateway code, traced the same way
"""

from __future__ import annotations

import atexit
import functools
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Deadline,
    Gateway,
    Report,
    add_real_options,
    backend_dirs,
    comfy_backend,
    fmt,
    parser,
    pyplot,
    save_figure,
    work_dir,
)
from bench.gateway_client import generate
from bench.workloads import SOLID

# (module, attribute path, label): the calls placed on the time line.
TRACED: list[tuple[str, str, str]] = [
    ("flask.app", "Flask.wsgi_app", "Flask (from waitress's hand-off)"),
    ("flask.app", "Flask.preprocess_request", "before-request hooks"),
    ("flask.app", "Flask.process_response", "after-request hooks"),
    ("comfygate.api.generate", "read_body", "parse the body"),
    ("comfygate.api.generate", "run_request_with_images", "validate the request"),
    ("comfygate.jobs.engine", "JobEngine.create", "create (admission + claim)"),
    ("comfygate.jobs.admission", "Admission.prepare", "fill in the parameters"),
    ("comfygate.jobs.admission", "Admission.cached", "cache lookup"),
    ("comfygate.jobs.admission", "Admission.bind", "bind the graph"),
    ("comfygate.jobs.admission", "Admission.enqueue", "enqueue (insert)"),
    ("comfygate.jobs.dispatch", "Dispatcher.create", "create (submitted, or queued)"),
    ("comfygate.jobs.dispatch", "Dispatcher.dispatch", "dispatch (claim, submitted)"),
    ("comfygate.jobs.dispatch", "Dispatcher._submit", "submitting thread"),
    ("comfygate.comfy.client", "ComfyClient.submit", "POST /prompt"),
    ("comfygate.jobs.watch", "Watcher.on_event", "websocket event"),
    ("comfygate.jobs.collect", "Collector.finalize", "collect"),
    ("comfygate.comfy.client", "ComfyClient.history", "GET /history"),
    ("comfygate.jobs.collect", "Collector._save", "output into storage (/view or disk)"),
    ("comfygate.jobs.cache", "ResultCache.put", "cache put"),
    ("comfygate.jobs.ledger", "Ledger.succeeded", "succeeded (write)"),
    ("comfygate.jobs.engine", "JobEngine.wait", "wait (until done)"),
    ("comfygate.api.generate", "_answer", "answer (open the file)"),
]
STORE_METHODS = (
    "insert",
    "insert_held",
    "claim",
    "swap",
    "get",
    "count",
    "join_in_flight",
    "leave_in_flight",
    "cache_get",
)

Span = tuple[str, int, int, int]  # label, start ns, end ns, this thread's CPU ns in the call
_spans: list[Span] = []
_lock = threading.Lock()


def _wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.monotonic_ns(), time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu = time.thread_time_ns() - cpu
            end = time.monotonic_ns()
            name = label
            if label == "websocket event" and len(args) > 2:
                name = f"event {type(args[2]).__name__}"
            with _lock:
                _spans.append((name, start, end, cpu))

    return traced


def install() -> None:
    """Wrap the traced calls in this process (the gateway child)."""
    import importlib

    for module_name, path, label in TRACED:
        module = importlib.import_module(module_name)
        owner: Any = module
        parts = path.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part)
        if hasattr(owner, parts[-1]):
            setattr(owner, parts[-1], _wrap(label, getattr(owner, parts[-1])))
    from comfygate.jobs.sqlite_store import SQLiteJobStore

    for method in STORE_METHODS:
        if hasattr(SQLiteJobStore, method):
            setattr(
                SQLiteJobStore, method, _wrap(f"store.{method}", getattr(SQLiteJobStore, method))
            )


def serve(trace_path: Path, argv: list[str]) -> None:
    """The child: ``comfygate serve`` with the traced calls wrapped; the spans are written
    to ``trace_path`` when it stops."""
    install()

    def dump() -> None:
        with _lock:
            trace_path.write_text(json.dumps(_spans))

    atexit.register(dump)
    sys.argv = ["bench.serve", *argv]
    from bench import serve as serve_module

    serve_module.main()
    dump()


# --------------------------------------------------------------------------------------------
# the parent: requests, then the time line
# --------------------------------------------------------------------------------------------


Row = tuple[str, float, float, float, float]


def timeline(requests_ns: list[tuple[int, int]], spans: list[Span]) -> tuple[list[Row], float]:
    """Per label: median start offset from the request's send, median duration, median CPU
    time of its thread in it, calls per request; and the median round trip (ms)."""
    spans.sort(key=lambda s: s[1])
    offsets: dict[str, list[float]] = defaultdict(list)
    durations: dict[str, list[float]] = defaultdict(list)
    cpus: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    i = 0
    for sent, received in requests_ns:
        while i < len(spans) and spans[i][1] < sent:
            i += 1
        j = i
        seen: set[str] = set()
        while j < len(spans) and spans[j][1] <= received:
            label, start, end, cpu = spans[j]
            counts[label] += 1
            if label not in seen:  # the first call of each kind places it
                seen.add(label)
                offsets[label].append((start - sent) / 1e6)
                durations[label].append((end - start) / 1e6)
                cpus[label].append(cpu / 1e6)
            j += 1
    rows = [
        (
            label,
            statistics.median(offsets[label]),
            statistics.median(durations[label]),
            statistics.median(cpus[label]),
            counts[label] / len(requests_ns),
        )
        for label in offsets
    ]
    rows.sort(key=lambda r: r[1])
    total = statistics.median((r - s) / 1e6 for s, r in requests_ns)
    return rows, total


def _plot(report: Report, rows: list[Row], total: float) -> None:
    """The time line: one bar per traced call, from its median start for its median
    duration; the CPU part darker."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.4))
    for i, (_, start, took, cpu, _calls) in enumerate(rows):
        ax.barh(i, took, left=start, color="#9ecae1")
        ax.barh(i, min(cpu, took), left=start, color="#3182bd")
    ax.axvline(total, color="#d62728", linestyle="--", label=f"round trip {total:.2f} ms")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel("ms after the request is sent (medians; dark: CPU time of the call)")
    ax.set_title(report.title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, report.figure())


def main(argv: list[str] | None = None) -> Path:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["serve"]:
        serve(Path(args_in[1]), args_in[2:])
        return Path(args_in[1])
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=300, help="sequential generations")
    p.add_argument("--budget", type=float, default=180.0, help="seconds at most")
    add_real_options(p)  # --no-peer is accepted and ignored: no peer is traced
    p.add_argument("--src", type=Path, help="run another checkout's src/ (e.g. a worktree)")
    p.add_argument("--name", default="phases", help="the report's file name")
    p.add_argument("--threads", type=int, help="the gateway's THREADS (default: its own)")
    args = p.parse_args(args_in)
    real = not (args.quick or args.no_real)
    n = 30 if args.quick else args.n
    title = "Where one generation's time goes, phase by phase"
    if args.src is not None:
        title += f" ({args.src})"
    report = Report(args.name, title, args.out)
    report.quick = args.quick
    where = "the real CPU ComfyUI" if real else "the fake ComfyUI"
    with (
        work_dir("phases") as work,
        comfy_backend(real, args.comfyui_url, work) as backend_url,
    ):
        trace = work / "trace.json"
        gw = Gateway(
            [backend_url],
            work,
            threads=args.threads,
            waitress={"asyncore_use_poll": True},
            settings=backend_dirs([backend_url]) if args.src is None else None,
        )
        gw.cmd = [gw.cmd[0], "-m", "bench.phases", "serve", str(trace), *gw.cmd[3:]]
        if args.src is not None:
            gw.env["PYTHONPATH"] = str(args.src.resolve())
        sent_received: list[tuple[int, int]] = []
        with gw.start(), requests.Session() as session:
            for _ in range(10):  # warm-up: first connections, first template use
                generate(session, gw.url, SOLID.body(SOLID.params()))
            deadline = Deadline(args.budget)
            for _ in range(n):
                if deadline.passed:
                    break
                body = SOLID.body(SOLID.params())
                sent = time.monotonic_ns()
                result = generate(session, gw.url, body)
                received = time.monotonic_ns()
                if result.ok:
                    sent_received.append((sent, received))
        spans: list[Span] = [
            (str(a), int(b), int(c), int(d)) for a, b, c, d in json.loads(trace.read_text())
        ]
    rows, total = timeline(sent_received, spans)
    report.note(
        f"{len(sent_received)} sequential model-free generations (`solid` 64x64) through "
        f"`comfygate serve` on {where}; median round trip {fmt(total, 2)} ms. "
        "Each row is a traced call: when it starts after the request is sent (median), how long "
        "it takes (median), the CPU time its thread spent in it (median: what is left when "
        "the wait for the GIL or for I/O is taken out) and how often it runs per request."
    )
    report.table(
        "Time line of one generation",
        ["call", "starts at ms", "takes ms", "CPU ms", "calls per request"],
        [(label, fmt(o, 2), fmt(d, 3), fmt(u, 3), fmt(c, 1)) for label, o, d, u, c in rows],
    )
    report.data["rows"] = rows
    report.data["round_trip_ms"] = total
    _plot(report, rows, total)
    return report.write()


if __name__ == "__main__":
    main()
