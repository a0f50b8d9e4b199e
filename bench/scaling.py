"""Scaling: jobs per second against the number of (fake) ComfyUI backends, each with a fixed
service time and no output cache, so every job really occupies its backend; scaling efficiency
is throughput(n) / (n * throughput(1)). Then routing by load (``least_loaded``) against
``round_robin`` on backends of unequal speed (one 4x slower).

The load is closed-loop: a fixed number of clients each send synchronous generations back to
back until a fixed number of jobs is done (bounded in count and in time).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from bench.common import (
    Deadline,
    Fakes,
    Gateway,
    Report,
    Summary,
    fmt,
    parser,
    pyplot,
    save_figure,
    work_dir,
)
from bench.gateway_client import generate
from bench.workloads import SOLID


@dataclass(frozen=True)
class Run:
    label: str
    backends: int
    clients: int
    jobs: int
    failed: int
    wall_s: float
    jobs_per_s: float
    p50_ms: float
    p99_ms: float
    per_backend: list[int]


def closed_loop(
    url: str, clients: int, jobs: int, budget_s: float
) -> tuple[list[float], int, float]:
    """``clients`` threads send sync generations until ``jobs`` are done; latencies, failures,
    wall time."""
    lock = threading.Lock()
    left = [jobs]
    latencies: list[float] = []
    failed = [0]
    deadline = Deadline(budget_s)

    def client() -> None:
        session = requests.Session()
        while not deadline.passed:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            result = generate(session, url, SOLID.body(SOLID.params()), timeout_s=120)
            with lock:
                if result.ok:
                    latencies.append(result.elapsed_s)
                else:
                    failed[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget_s + 130)
    return latencies, failed[0], time.monotonic() - started


def measure(
    wd: Path,
    fakes: Fakes,
    label: str,
    n: int,
    clients: int,
    jobs: int,
    settings: dict[str, object],
    budget_s: float,
) -> Run:
    urls = fakes.urls[:n]
    with Gateway(urls, wd, settings=settings) as gw:
        gw.start()
        generate(requests.Session(), gw.url, SOLID.body(SOLID.params()))  # warm-up
        before = fakes.command("stats")["ran"][:n]
        latencies, failed, wall = closed_loop(gw.url, clients, jobs, budget_s)
        after = fakes.command("stats")["ran"][:n]
    s = Summary.of(latencies)
    run = Run(
        label,
        n,
        clients,
        len(latencies),
        failed,
        wall,
        len(latencies) / wall if wall else 0.0,
        s.median * 1000,
        s.p99 * 1000,
        [a - b for a, b in zip(after, before, strict=True)],
    )
    print(f"  {label}: {asdict(run)}", flush=True)
    return run


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--service-time", type=float, default=0.2, help="seconds per job")
    p.add_argument("--backends", default="1,2,4,8")
    p.add_argument("--jobs-per-backend", type=int, default=25)
    p.add_argument("--budget", type=float, default=120.0, help="seconds per run at most")
    args = p.parse_args(argv)
    counts = [1, 2] if args.quick else [int(x) for x in args.backends.split(",")]
    service = 0.05 if args.quick else args.service_time
    per_backend = 4 if args.quick else args.jobs_per_backend
    report = Report("scaling", "Scaling over backends, and routing", args.out, args.quick)
    scaling: list[Run] = []
    routing: list[Run] = []
    with work_dir("scaling") as wd:
        with Fakes(wd, max(counts), service_time_s=service, caching=False) as fakes:
            fakes.start()
            for n in counts:
                scaling.append(
                    measure(wd, fakes, f"{n} backends", n, 3 * n, per_backend * n, {}, args.budget)
                )
        routing_backends = 2 if args.quick else 4
        with Fakes(
            wd, routing_backends, service_time_s=service, caching=False, slow=[4.0]
        ) as fakes:
            fakes.start()
            clients = 4 * routing_backends
            jobs = per_backend * 2 * routing_backends
            caps = [2] if args.quick else [2, 8]
            for cap in caps:
                for routing_mode in ("least_loaded", "round_robin"):
                    settings: dict[str, object] = {
                        "routing": routing_mode,
                        "max_in_flight_per_backend": cap,
                    }
                    label = f"{routing_mode}, max_in_flight_per_backend {cap}"
                    routing.append(
                        measure(
                            wd, fakes, label, routing_backends, clients, jobs, settings, args.budget
                        )
                    )
    base = scaling[0].jobs_per_s if scaling else 0.0
    ideal_per_backend = 1.0 / service
    report.table(
        f"Throughput against backends (fake ComfyUI, {service:g} s per job, cache off, "
        "3 clients per backend, default max_in_flight_per_backend 2)",
        [
            "backends",
            "clients",
            "jobs",
            "failed",
            "jobs/s",
            "ideal jobs/s",
            "efficiency",
            "p50 ms",
            "p99 ms",
            "jobs per backend",
        ],
        [
            [
                r.backends,
                r.clients,
                r.jobs,
                r.failed,
                fmt(r.jobs_per_s, 2),
                fmt(ideal_per_backend * r.backends, 1),
                fmt(r.jobs_per_s / (r.backends * base), 2) if base else "-",
                fmt(r.p50_ms, 0),
                fmt(r.p99_ms, 0),
                " / ".join(map(str, r.per_backend)),
            ]
            for r in scaling
        ],
    )
    report.note(
        "Efficiency = throughput(n) / (n x throughput(1)); ideal jobs/s = n / service time."
    )
    slow_ideal = (routing_backends - 1) * ideal_per_backend + ideal_per_backend / 4
    report.table(
        f"Routing on {routing_backends} backends, backend 1 four times slower "
        f"({service * 4:g} s per job; ideal {slow_ideal:.2f} jobs/s), "
        f"{4 * routing_backends} clients",
        [
            "routing",
            "jobs",
            "failed",
            "jobs/s",
            "p50 ms",
            "p99 ms",
            "jobs per backend (slow first)",
            "share on the slow one",
        ],
        [
            [
                r.label,
                r.jobs,
                r.failed,
                fmt(r.jobs_per_s, 2),
                fmt(r.p50_ms, 0),
                fmt(r.p99_ms, 0),
                " / ".join(map(str, r.per_backend)),
                fmt(100 * r.per_backend[0] / max(1, sum(r.per_backend)), 0) + " %",
            ]
            for r in routing
        ],
    )
    report.data = {
        "service_time_s": service,
        "scaling": [asdict(r) for r in scaling],
        "routing": [asdict(r) for r in routing],
    }
    _plot(report, scaling, routing, ideal_per_backend)
    return report.write()


def _plot(report: Report, scaling: list[Run], routing: list[Run], ideal: float) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ns = [r.backends for r in scaling]
    left.plot(ns, [r.jobs_per_s for r in scaling], marker="o", label="measured")
    left.plot(ns, [ideal * n for n in ns], linestyle="--", color="grey", label="ideal")
    if scaling:
        left.plot(
            ns,
            [scaling[0].jobs_per_s * n for n in ns],
            linestyle=":",
            color="black",
            label="linear from 1 backend",
        )
    left.set_xlabel("backends")
    left.set_ylabel("jobs / s")
    left.set_xticks(ns)
    left.set_title("Throughput against backends")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    x = range(len(routing))
    right.bar([i - 0.2 for i in x], [r.jobs_per_s for r in routing], width=0.4, label="jobs/s")
    twin = right.twinx()
    twin.bar(
        [i + 0.2 for i in x],
        [r.p99_ms / 1000 for r in routing],
        width=0.4,
        color="tab:orange",
        label="p99 s",
    )
    right.set_xticks(
        list(x),
        [
            r.label.replace("max_in_flight_per_backend", "in-flight cap").replace(", ", "\n")
            for r in routing
        ],
        fontsize=7,
    )
    right.set_ylabel("jobs / s")
    twin.set_ylabel("p99 latency (s)")
    right.set_title("Routing with one 4x slower backend")
    right.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
