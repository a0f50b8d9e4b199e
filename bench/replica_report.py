"""The report of ``bench/replicas.py``: the tables (throughput, CPU per job, Redis commands
per job, the profile) and the plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench import replica_profile as profile
from bench.common import Report, fmt, pyplot, save_figure

GENERATE = "POST /v1/generate (new job)"
JOB = "GET /v1/jobs/{id}"
HIT = "POST /v1/generate (cache hit)"


@dataclass(frozen=True)
class Point:
    replicas: int
    round: int
    route: str
    clients: int
    requests: int
    ok_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


def _spread(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    best = max(values)
    if len(values) == 1:
        return fmt(best, digits)
    return f"{fmt(best, digits)} ({fmt(min(values), digits)}-{fmt(best, digits)})"


def _of(points: list[Point], n: int, route: str, level: int | None = None) -> list[Point]:
    return [
        p
        for p in points
        if p.replicas == n and p.route == route and (level is None or p.clients // n == level // n)
    ]


def write_report(
    report: Report,
    points: list[Point],
    costs: dict[int, list[dict[str, Any]]],
    counts: list[int],
    levels: list[int],
    gen_clients: int,
    tool: str,
    args: Any,
    storage: str,
    breakdown: dict[str, Any],
) -> None:
    headers = ["replicas", f"jobs/s ({gen_clients} clients)", "p50 / p99 ms", "errors"]
    for level in levels:
        headers += [f"{JOB} req/s, {level} clients", f"cache hit req/s, {level} clients"]
    headers.append("cheap-route errors")
    rows = []
    for n in counts:
        gen = _of(points, n, GENERATE)
        best = max(gen, key=lambda p: p.ok_per_s) if gen else None
        row: list[object] = [
            n,
            _spread([p.ok_per_s for p in gen]),
            f"{fmt(best.p50_ms, 0)} / {fmt(best.p99_ms, 0)}" if best else "-",
            sum(p.errors + p.non_2xx for p in gen),
        ]
        for level in levels:
            for route in (JOB, HIT):
                row.append(_spread([p.ok_per_s for p in _of(points, n, route, level)], 0))
        cheap = [p for p in points if p.replicas == n and p.route in (JOB, HIT)]
        row.append(
            f"{sum(p.errors + p.non_2xx for p in cheap):,} of {sum(p.requests for p in cheap):,}"
        )
        rows.append(row)
    report.table(
        "Throughput with 1, 2 and 3 replicas (best of the rounds, and the range)",
        headers,
        rows,
    )
    report.note(
        f"Fake ComfyUIs: {2 if args.quick else args.backends} in one process, model-free, no "
        f"service time; `MAX_IN_FLIGHT_PER_BACKEND=16`; waitress threads {args.threads} per "
        f"replica; storage {storage}. Load generator: {tool}, clients spread round-robin over "
        "the replicas (client i on replica i mod n; no load balancer), keep-alive; a count of "
        "clients not divisible by the replicas is rounded down (wrk: the same connections per "
        "thread). Errors are socket errors, timeouts and non-2xx answers (all counted as "
        "failures, none as throughput); every generation "
        "is a new job (a fresh colour), every cache hit the same determined request. "
        f"Rounds: {1 if args.quick else args.rounds}, the order of the counts rotating."
    )
    _cost_table(report, costs, counts)
    _commands_table(report, costs, counts)
    if breakdown:
        profile.report(report, breakdown)
    report.data = {
        "points": [asdict(p) for p in points],
        "costs": {str(k): v for k, v in costs.items()},
        "breakdown": breakdown,
        "tool": tool,
        "levels": levels,
        "counts": counts,
        "gen_clients": gen_clients,
    }
    _plot(report, points, counts, levels)


def _cost_table(report: Report, costs: dict[int, list[dict[str, Any]]], counts: list[int]) -> None:
    """CPU per job of each part, from the best generation run of each count."""
    parts = ["replicas", "redis-server", "fake ComfyUIs", "load generator", "machine (all)"]
    if any("s3rver" in c["cpu_s"] for runs in costs.values() for c in runs):
        parts.insert(4, "s3rver")
    rows = []
    for n in counts:
        if not costs[n]:
            continue
        c = max(costs[n], key=lambda c: c["jobs_run_on_comfyui"])
        cpu = c["cpu_s"]
        jobs = max(1, c["answered_200"])
        wall = c["wall_s"]
        values = {
            "replicas": sum(v for k, v in cpu.items() if k.startswith("replica ")),
            "redis-server": cpu["redis-server"],
            "fake ComfyUIs": cpu["fake ComfyUIs"],
            "load generator": cpu["load generator"],
            "s3rver": cpu.get("s3rver", 0.0),
            "machine (all)": cpu["machine (all processes)"],
        }
        cores = cpu["machine capacity"] / wall if wall else 0
        row: list[object] = [n, c["answered_200"], c["jobs_run_on_comfyui"]]
        row += [f"{fmt(1000 * values[k] / jobs, 1)} ({fmt(values[k] / wall, 2)})" for k in parts]
        row.append(fmt(cores, 0))
        rows.append(row)
    report.table(
        "Where the CPU went during the generations: CPU ms per job (cores busy)",
        ["replicas", "answered 200", "run on ComfyUI", *parts, "cores"],
        rows,
    )
    report.note(
        "CPU from /proc (user + system) over the generation run; 'machine (all)' counts every "
        "process on the machine, other sessions' work included, against its cores. 'Run on "
        "ComfyUI' is after the replicas finished the jobs of requests the load generator cut "
        "off at its end; each job ran once."
    )


def _commands_table(
    report: Report, costs: dict[int, list[dict[str, Any]]], counts: list[int]
) -> None:
    """Redis commands per generation, from the best run of each count."""
    per_count: dict[int, tuple[int, dict[str, dict[str, float]]]] = {}
    for n in counts:
        if costs[n]:
            c = max(costs[n], key=lambda c: c["jobs_run_on_comfyui"])
            per_count[n] = (max(1, c["jobs_run_on_comfyui"]), c["redis_commandstats"])
    if not per_count:
        return
    names = sorted(
        {name for _, stats in per_count.values() for name in stats},
        key=lambda name: -max(s.get(name, {}).get("usec", 0) / j for j, s in per_count.values()),
    )
    rows = []
    for name in names:
        row: list[object] = [name]
        for n in counts:
            jobs, stats = per_count.get(n, (1, {}))
            s = stats.get(name, {"calls": 0, "usec": 0})
            row.append(f"{fmt(s['calls'] / jobs, 1)} / {fmt(s['usec'] / jobs, 0)}")
        rows.append(row)
    total: list[object] = ["**all**"]
    for n in counts:
        jobs, stats = per_count.get(n, (1, {}))
        calls = sum(s["calls"] for s in stats.values())
        usec = sum(s["usec"] for s in stats.values())
        total.append(f"{fmt(calls / jobs, 1)} / {fmt(usec / jobs, 0)}")
    rows.append(total)
    report.table(
        "Redis commands per generation (INFO commandstats: calls / µs in Redis per job)",
        ["command", *[f"{n} replica(s)" for n in counts]],
        rows,
    )


def _plot(report: Report, points: list[Point], counts: list[int], levels: list[int]) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    best = [max((p.ok_per_s for p in _of(points, n, GENERATE)), default=0.0) for n in counts]
    low = [min((p.ok_per_s for p in _of(points, n, GENERATE)), default=0.0) for n in counts]
    left.plot(counts, best, marker="o", label="measured (best round)")
    left.fill_between(counts, low, best, alpha=0.2, label="range over the rounds")
    if best:
        left.plot(counts, [best[0] * n for n in counts], ":", color="black", label="linear from 1")
    left.set_title("model-free generations (new jobs)")
    left.set_ylabel("jobs / s")
    for level in levels:
        for route, style in ((JOB, "-"), (HIT, "--")):
            values = [
                max((p.ok_per_s for p in _of(points, n, route, level)), default=0.0) for n in counts
            ]
            right.plot(counts, values, style, marker="o", label=f"{route}, {level} clients")
    right.set_title("cheap routes")
    right.set_ylabel("requests / s")
    for ax in (left, right):
        ax.set_xticks(counts)
        ax.set_xlabel("replicas (one Redis, shared)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, report.figure())
