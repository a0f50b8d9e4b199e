"""Load: requests per second and p50/p99 latency of cheap gateway routes (GET /v1/jobs/{id},
GET /healthz, and result-cache hits when the gateway has a result cache) at 1, 16, 64 and 256
concurrent keep-alive clients, against the ceilings: a bare Flask app on the same WSGI server
with the same settings, answering ``hello``, the very job object as JSON (the same bytes as
the job read: its baseline) and the cache hit's PNG as a static file (the hits' baseline).
Repeated for several waitress thread counts, and once with waitress' connection limit
raised, to find the best server settings. Each measurement also reads the serving process's
CPU time (user and system) and its threads' context switches from ``/proc``, per request:
where a route's cost goes beyond Python (a system call that gives up the GIL costs a thread
switch under load, which py-spy does not show).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import loadgen
from bench.common import (
    Fakes,
    Gateway,
    Hello,
    Report,
    cpu_use,
    fmt,
    parser,
    pyplot,
    save_figure,
    work_dir,
)
from bench.workloads import SOLID

HELLO = "bare Flask hello (ceiling)"
HELLO_JSON = "bare Flask JSON of the job's size (ceiling for job reads)"
HEALTHZ = "GET /healthz"
JOB = "GET /v1/jobs/{id}"
CACHE = "POST /v1/generate (cache hit)"
STATIC = "GET the same PNG as a static file (ceiling for cache hits)"
SERVED_BY_HELLO = frozenset({HELLO, HELLO_JSON, STATIC})
# What each route is compared with (the rest: the hello answer).
BASELINE = {JOB: HELLO_JSON, CACHE: STATIC}
# A fake txt2img image of 184x184 noise pixels: an incompressible PNG of about 100 KB.
CACHE_BODY = {"prompt": "a cat", "width": 184, "height": 184, "steps": 1, "seed": 5}


@dataclass(frozen=True)
class ServerConfig:
    name: str
    threads: int
    waitress: dict[str, object] = field(default_factory=dict)
    server: str = "waitress"


DEFAULT = ServerConfig(
    "comfygate serve defaults (threads 1024)",
    1024,
    {"connection_limit": 1124, "asyncore_use_poll": True, "backlog": 2048},
)
CONFIGS = [
    DEFAULT,
    ServerConfig("threads 16", 16),
    ServerConfig("threads 256", 256),
    ServerConfig("threads 64, connection_limit 1000", 64, {"connection_limit": 1000}),
    ServerConfig("gunicorn gthread, 1 worker, threads 64", 64, server="gunicorn"),
]


def _finished_job(url: str) -> str:
    resp = requests.post(f"{url}/v1/jobs", json=SOLID.body(SOLID.params()), timeout=30)
    job_id = str(resp.json()["id"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if requests.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()["status"] == "succeeded":
            return job_id
        time.sleep(0.05)
    raise RuntimeError("the job for GET /v1/jobs/{id} did not finish")


def _cache_body(url: str, png: Path) -> tuple[bytes | None, str]:
    """A generate body whose second run is a cache hit (its PNG saved to ``png``), or None
    and why there is none."""
    body = CACHE_BODY
    headers = {"Accept": "application/json"}
    first = requests.post(f"{url}/v1/generate", json=body, headers=headers, timeout=60).json()
    second = requests.post(f"{url}/v1/generate", json=body, headers=headers, timeout=60).json()
    if second.get("cached") is True:
        image = requests.post(f"{url}/v1/generate", json=body, timeout=60)
        png.write_bytes(image.content)
        return json.dumps(body).encode(), ""
    return None, (
        "this gateway has no result cache yet (no `cache` setting in config.py; an identical "
        f"second request ran again: cached={second.get('cached')!r}, "
        f"same job={first.get('id') == second.get('id')}), so cache hits were not measured"
    )


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--levels", default="1,16,64,256", help="concurrent clients")
    p.add_argument("--repeats", type=int, default=2, help="runs of each; the best is kept")
    p.add_argument("--python-loadgen", action="store_true", help="do not use wrk")
    p.add_argument("--configs", default="", help="only server set-ups whose name has one of these")
    args = p.parse_args(argv)
    levels = [1, 4] if args.quick else [int(x) for x in args.levels.split(",")]
    duration = 1.0 if args.quick else args.duration
    repeats = 1 if args.quick else args.repeats
    configs = [DEFAULT] if args.quick else CONFIGS
    if args.configs:
        configs = [c for c in configs if any(w in c.name for w in args.configs.split(","))]
    tool = "python" if args.python_loadgen or not loadgen.have_wrk() else "wrk"
    report = Report("load", "Load: cheap routes against a bare Flask ceiling", args.out, args.quick)
    results: list[dict[str, Any]] = []
    cache_note = ""
    with work_dir("load") as wd, Fakes(wd) as fakes:
        fakes.start()
        for config in configs:
            with (
                Gateway(
                    fakes.urls,
                    wd,
                    threads=config.threads,
                    waitress=config.waitress,
                    server=config.server,
                ) as gw,
                Hello(
                    wd, config.threads, config.waitress, config.server, wd / "static.png"
                ) as hello,
            ):
                gw.start()
                job_url = gw.url + f"/v1/jobs/{_finished_job(gw.url)}"
                job_answer = requests.get(job_url, timeout=10).content
                hello.json_file = wd / "job.json"
                hello.json_file.write_bytes(job_answer)
                targets: dict[str, tuple[str, bytes | None]] = {
                    HEALTHZ: (gw.url + "/healthz", None),
                    JOB: (job_url, None),
                }
                if config is DEFAULT:
                    body, cache_note = _cache_body(gw.url, wd / "static.png")
                    if body is not None:
                        targets[CACHE] = (gw.url + "/v1/generate", body)
                        targets[STATIC] = (hello.url + "/static.png", None)
                        size = (wd / "static.png").stat().st_size
                        report.note(f"Cache hits and the static file: one PNG of {size:,} bytes.")
                hello.start()
                targets[HELLO] = (hello.url + "/", None)
                targets[HELLO_JSON] = (hello.url + "/json", None)
                if config is DEFAULT:
                    report.note(
                        f"Job reads and their baseline: one JSON answer of {len(job_answer):,} "
                        "bytes (the baseline answers the same job object through `jsonify`)."
                    )
                report.note(f"Gateway command ({config.name}): `{gw.command}`.")
                names = list(targets)
                for i, level in enumerate(levels):
                    for rep in range(repeats):
                        turn = i + rep
                        for name in names[turn % len(names) :] + names[: turn % len(names)]:
                            url, body = targets[name]
                            pid = (hello if name in SERVED_BY_HELLO else gw).pid
                            before = cpu_use(pid)
                            r = loadgen.run(
                                url, level, duration, body=body, force_python=tool == "python"
                            )
                            used = cpu_use(pid) - before
                            n = max(r.requests, 1)
                            # gunicorn serves from a worker process: its CPU is not the pid's.
                            cpu = (
                                {
                                    "user_us": used.user_s / n * 1e6,
                                    "system_us": used.system_s / n * 1e6,
                                    "switches": used.switches / n,
                                }
                                if config.server == "waitress"
                                else {}
                            )
                            print(
                                f"  {config.name} | {name} | c={level} #{rep + 1}: "
                                f"{r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                                f"p99 {r.p99_ms:.2f} ms, errors {r.errors}, non-2xx {r.non_2xx}"
                                + (
                                    f"; per request: CPU user {cpu['user_us']:.0f} + system "
                                    f"{cpu['system_us']:.0f} µs, {cpu['switches']:.1f} "
                                    "context switches"
                                    if cpu
                                    else ""
                                ),
                                flush=True,
                            )
                            results.append(
                                {
                                    "config": config.name,
                                    "target": name,
                                    "rep": rep,
                                    **asdict(r),
                                    **cpu,
                                }
                            )
    if cache_note:
        report.note(f"Cache hits: {cache_note}.")
    report.note(
        f"Load generator: {tool}, {max(1, round(duration))} s per measurement, keep-alive "
        f"connections; each measurement ran {repeats} time(s), interleaved with the other "
        "routes, and the best run is shown (the one least disturbed by other work on the "
        "machine); server and load generator share the machine's cores."
    )
    ratios = []
    for level in levels:
        read = _find(results, DEFAULT.name, JOB, level)
        same = _find(results, DEFAULT.name, HELLO_JSON, level)
        if read and same and same["rps"]:
            ratios.append(
                f"{level} clients: {read['rps']:,.0f} vs {same['rps']:,.0f} req/s "
                f"({read['rps'] / same['rps']:.2f})"
            )
    if ratios:
        report.note(
            "Job reads against a bare Flask JSON answer of the same size: "
            + "; ".join(ratios)
            + "."
        )
    if any(r["target"] == STATIC for r in results):
        ratios = []
        for level in levels:
            hit = _find(results, DEFAULT.name, CACHE, level)
            static = _find(results, DEFAULT.name, STATIC, level)
            if hit and static and static["rps"]:
                ratios.append(
                    f"{level} clients: {hit['rps']:,.0f} vs {static['rps']:,.0f} req/s "
                    f"({hit['rps'] / static['rps']:.2f}), p50 {hit['p50_ms']:.2f} vs "
                    f"{static['p50_ms']:.2f} ms"
                )
        report.note("Cache hit against the same PNG as a static file: " + "; ".join(ratios) + ".")
    _tables(report, results, configs, levels)
    report.data = {"results": results, "levels": levels, "tool": tool}
    _plot(report, results, configs, levels)
    return report.write()


def _find(results: list[dict[str, Any]], config: str, target: str, level: int) -> dict[str, Any]:
    """The best of the repeats (the least disturbed by other work on the machine)."""
    found = [
        r
        for r in results
        if r["config"] == config and r["target"] == target and r["connections"] == level
    ]
    return max(found, key=lambda r: float(r["rps"])) if found else {}


def _tables(
    report: Report, results: list[dict[str, Any]], configs: list[ServerConfig], levels: list[int]
) -> None:
    for config in configs:
        rows = []
        for level in levels:
            for target in (HELLO, HELLO_JSON, HEALTHZ, JOB, CACHE, STATIC):
                r = _find(results, config.name, target, level)
                if not r:
                    continue
                # Each route against its own baseline: the same bytes served bare.
                base = BASELINE.get(target, HELLO)
                ceiling = _find(results, config.name, base, level).get("rps") or float("nan")
                rows.append(
                    [
                        level,
                        target,
                        fmt(r["rps"], 0),
                        fmt(r["p50_ms"], 2),
                        fmt(r["p99_ms"], 2),
                        r["errors"],
                        r["non_2xx"],
                        fmt(100 * r["rps"] / ceiling, 0) + " %",
                        _per_request(r),
                    ]
                )
        report.table(
            f"{config.name}",
            [
                "clients",
                "route",
                "req/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "non-2xx",
                "of its baseline",
                "server CPU per request: user + system µs, context switches",
            ],
            rows,
        )


def _per_request(r: dict[str, Any]) -> str:
    if "user_us" not in r:
        return "-"
    return f"{r['user_us']:.0f} + {r['system_us']:.0f}, {r['switches']:.1f}"


def _plot(
    report: Report, results: list[dict[str, Any]], configs: list[ServerConfig], levels: list[int]
) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    first = configs[0]
    for target in (HELLO, HELLO_JSON, HEALTHZ, JOB, CACHE):
        rps = [_find(results, first.name, target, lv).get("rps") for lv in levels]
        if any(rps):
            left.plot(levels, [r or 0 for r in rps], marker="o", label=target)
    left.set_title(f"{first.name}: throughput")
    for config in configs:
        share = []
        for lv in levels:
            job = _find(results, config.name, JOB, lv).get("rps") or 0.0
            ceiling = _find(results, config.name, HELLO_JSON, lv).get("rps") or 0.0
            share.append(100 * job / ceiling if ceiling else 0.0)
        right.plot(levels, share, marker="o", label=config.name)
    right.set_title(f"{JOB} as % of the same server's JSON of that size")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(lv) for lv in levels])
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    left.set_ylabel("requests / s")
    right.set_ylabel("% of the ceiling")
    save_figure(fig, report.figure())
    if any(r["target"] == STATIC for r in results):
        plot_cache_vs_static(results, levels, report.figure("-cache"))


def plot_cache_vs_static(results: list[dict[str, Any]], levels: list[int], path: Path) -> None:
    """Cache hits against the same PNG served as a static file by the same server: req/s and
    p50 latency by clients (the default server settings, the only ones with both)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for target, label in ((CACHE, "cache hit (POST /v1/generate)"), (STATIC, "static file")):
        rows = [_find(results, DEFAULT.name, target, lv) for lv in levels]
        left.plot(levels, [r.get("rps") or 0 for r in rows], marker="o", label=label)
        right.plot(levels, [r.get("p50_ms") or 0 for r in rows], marker="o", label=label)
    left.set_title("cache hits and the same PNG as a static file: throughput")
    right.set_title("p50 latency")
    left.set_ylabel("requests / s")
    right.set_ylabel("ms")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(lv) for lv in levels])
        ax.set_xlabel("concurrent clients")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
