"""Replicas: model-free generations per second and cheap-route requests per second with 1, 2
and 3 ``comfygate serve`` replicas sharing one real Redis (jobs, queue, leases, events, cache
index), in front of the same fake ComfyUIs (model-free, no service time, so ComfyUI is not the
limit), and where the CPU goes.

Each replica has its own ``DATA_DIR``; its ``outputs/`` and ``inputs/`` are one folder shared
by all (local storage on one host: a symlink each), or, with ``--s3``, an S3 bucket on s3rver.
The clients are spread round-robin over the replicas by the load generator itself (wrk: one
thread per replica; no load balancer in between). Every count of replicas starts afresh (an
empty Redis, new replicas); the rounds rotate the order of the counts, so a disturbance from
other work on the machine falls on all alike, and the spread over the rounds is reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import loadgen
from bench import replica_profile as profile
from bench.common import (
    Fakes,
    Gateway,
    RedisServer,
    Report,
    cpu_seconds,
    parser,
    wait_until,
    work_dir,
)
from bench.replica_report import GENERATE, HIT, JOB, Point, write_report

SOLID = {"template": "solid", "width": 64, "height": 64}
# A fresh colour per request ({n}: the load generator's own counter): every one a new job.
FRESH_BODY = json.dumps({**SOLID, "color": "N"}).replace('"N"', "{n}").encode()
# The same colour every time: a determined request (no seed), so its second run is a hit.
HIT_BODY = {**SOLID, "color": 4_242_424}
# --------------------------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every process on it."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]
    return (sum(values) - idle) / tick, sum(values) / tick


def children_cpu() -> float:
    """CPU time of this process and its finished children (the load generator)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Cluster:
    wd: Path
    redis: RedisServer
    fakes: Fakes
    s3_env: dict[str, str]
    threads: int
    replicas: list[Gateway]
    s3_pid: int | None = None

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.replicas]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each part under test, the load generator and the machine."""
        found = {f"replica {i + 1}": cpu_seconds(g.pid) for i, g in enumerate(self.replicas)}
        found["redis-server"] = cpu_seconds(self.redis.pid)
        assert self.fakes.proc is not None
        found["fake ComfyUIs"] = cpu_seconds(self.fakes.proc.pid)
        if self.s3_pid is not None:
            found["s3rver"] = cpu_seconds(self.s3_pid)
        found["load generator"] = children_cpu()
        found["machine (all processes)"], found["machine capacity"] = machine_busy()
        return found

    def ran(self) -> int:
        return int(sum(self.fakes.command("stats")["ran"]))

    def drain(self, timeout_s: float = 60.0) -> int:
        """Until the fakes have run every job the replicas still had (cut-off requests' jobs
        go on); the prompts run so far."""
        last = [-1]

        def settled() -> bool:
            stats = self.fakes.command("stats")
            ran = int(sum(stats["ran"]))
            done = ran == last[0] and not any(stats["queued"])
            last[0] = ran
            return done

        wait_until(settled, timeout_s, 0.5)
        return last[0]


@contextlib.contextmanager
def replicas(cluster: Cluster, count: int) -> Iterator[list[Gateway]]:
    """``count`` fresh replicas on an empty Redis, each with its own DATA_DIR, stopped after."""
    cluster.redis.client().flushall()
    shared = Path(cluster.wd) / f"shared-{time.monotonic_ns()}"
    settings: dict[str, object] = {
        "redis_url": cluster.redis.url,
        # the fakes answer at once: more jobs in flight per backend, so the gateway is the limit
        "max_in_flight_per_backend": 16,
        "log_level": "warning",
    }
    with contextlib.ExitStack() as stack:
        made: list[Gateway] = []
        for _ in range(count):
            gw = stack.enter_context(
                Gateway(cluster.fakes.urls, cluster.wd, threads=cluster.threads, settings=settings)
            )
            gw.env.update(cluster.s3_env)
            if not cluster.s3_env:
                for area in ("outputs", "inputs"):
                    (shared / area).mkdir(parents=True, exist_ok=True)
                    (gw.data_dir / area).symlink_to(shared / area)
            made.append(gw)
        for gw in made:
            gw.start()
        cluster.replicas = made
        try:
            for gw in made:  # warm-up: each replica runs one job and answers one read
                session = requests.Session()
                resp = session.post(f"{gw.url}/v1/generate", json={**SOLID, "color": 1})
                resp.raise_for_status()
            yield made
        finally:
            cluster.replicas = []
    shutil.rmtree(shared, ignore_errors=True)


def finished_job(url: str) -> str:
    # The synchronous route waits for the job itself: no polling.
    resp = requests.post(
        f"{url}/v1/generate",
        json={**SOLID, "color": 7},
        headers={"Accept": "application/json"},
        timeout=60,
    )
    resp.raise_for_status()
    if resp.json()["status"] != "succeeded":
        raise RuntimeError("the job for GET /v1/jobs/{id} did not succeed")
    return str(resp.json()["id"])


def cache_ready(urls: Sequence[str]) -> None:
    """Runs HIT_BODY once, then checks that every replica answers it from the cache."""
    headers = {"Accept": "application/json"}
    requests.post(f"{urls[0]}/v1/generate", json=HIT_BODY, headers=headers, timeout=60)
    for url in urls:
        answer = requests.post(f"{url}/v1/generate", json=HIT_BODY, headers=headers, timeout=60)
        if answer.json().get("cached") is not True:
            raise RuntimeError(f"no cache hit on {url}: {answer.text[:300]}")


# --------------------------------------------------------------------------------------------
# one count of replicas
# --------------------------------------------------------------------------------------------


def _point(n: int, rnd: int, route: str, r: loadgen.LoadResult) -> Point:
    ok = max(0, r.requests - r.non_2xx)
    p = Point(
        n,
        rnd,
        route,
        r.connections,
        r.requests,
        ok / r.duration_s if r.duration_s else 0.0,
        r.p50_ms,
        r.p99_ms,
        r.errors,
        r.non_2xx,
    )
    print(
        f"  {n} replica(s) #{rnd + 1} | {route} | c={r.connections}: {p.ok_per_s:,.1f}/s, "
        f"p50 {p.p50_ms:.1f} ms, p99 {p.p99_ms:.1f} ms, errors {p.errors}, "
        f"non-2xx {p.non_2xx}",
        flush=True,
    )
    return p


def measure_count(
    cluster: Cluster,
    n: int,
    rnd: int,
    gen_clients: int,
    gen_duration: float,
    levels: Sequence[int],
    duration: float,
    force_python: bool,
) -> tuple[list[Point], dict[str, Any]]:
    points: list[Point] = []
    with replicas(cluster, n) as gws:
        urls = [g.url for g in gws]
        redis = cluster.redis.client()
        # (a) generations: a new job each, the clients spread over the replicas
        ran_before = cluster.drain()
        redis.config_resetstat()
        logged = [g.log_size() for g in gws]
        before = cluster.cpu()
        r = loadgen.run_spread(
            [u + "/v1/generate" for u in urls],
            gen_clients,
            gen_duration,
            body=FRESH_BODY,
            force_python=force_python,
        )
        after = cluster.cpu()
        points.append(_point(n, rnd, GENERATE, r))
        # wrk counts failed answers only: what the replicas logged meanwhile (they log at
        # warning level, so each line is a warning or an error).
        if r.non_2xx or r.errors:
            for i, (g, since) in enumerate(zip(gws, logged, strict=True)):
                for line in g.logged_since(since)[:10]:
                    print(f"    replica {i + 1} logged: {line}", flush=True)
        ran = cluster.drain() - ran_before
        commands = redis.info("commandstats")
        cost = {
            "jobs_run_on_comfyui": ran,
            "answered_200": r.requests - r.non_2xx,
            "cpu_s": {k: after[k] - before[k] for k in after},
            "wall_s": r.duration_s,
            "redis_commandstats": _commandstats(commands),
        }
        # (b) cheap routes: a finished job's status, and a cache hit, on every replica
        job_url = f"/v1/jobs/{finished_job(urls[0])}"
        cache_ready(urls)
        routes: list[tuple[str, str, bytes | None]] = [
            (JOB, job_url, None),
            (HIT, "/v1/generate", json.dumps(HIT_BODY).encode()),
        ]
        for i, level in enumerate(levels):
            for name, path, body in routes[i % 2 :] + routes[: i % 2]:
                r = loadgen.run_spread(
                    [u + path for u in urls], level, duration, body=body, force_python=force_python
                )
                points.append(_point(n, rnd, name, r))
    return points, cost


def _commandstats(info: dict[str, Any]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for key, value in info.items():
        name = key.removeprefix("cmdstat_")
        if isinstance(value, dict):
            found[name] = {"calls": float(value["calls"]), "usec": float(value["usec"])}
    return found


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--replicas", default="1,2,3", help="counts of replicas")
    p.add_argument("--backends", type=int, default=4, help="fake ComfyUIs (model-free)")
    p.add_argument("--gen-clients", type=int, default=96, help="clients of POST /v1/generate")
    p.add_argument("--gen-duration", type=float, default=8.0, help="seconds of generations")
    p.add_argument("--levels", default="16,256", help="clients of the cheap routes")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per cheap-route run")
    p.add_argument("--rounds", type=int, default=2, help="rounds over the counts (spread)")
    p.add_argument("--threads", type=int, default=256, help="waitress threads per replica")
    p.add_argument("--s3", action="store_true", help="outputs in S3 (s3rver) instead of a folder")
    p.add_argument("--no-profile", action="store_true", help="no py-spy / SLOWLOG breakdown")
    p.add_argument("--python-loadgen", action="store_true", help="do not use wrk")
    args = p.parse_args(argv)
    counts = [1, 2] if args.quick else [int(x) for x in args.replicas.split(",")]
    levels = [4] if args.quick else [int(x) for x in args.levels.split(",")]
    gen_clients = 4 if args.quick else args.gen_clients
    gen_duration = 1.0 if args.quick else args.gen_duration
    duration = 1.0 if args.quick else args.duration
    rounds = 1 if args.quick else args.rounds
    backends = 2 if args.quick else args.backends
    force_python = args.python_loadgen or not loadgen.have_wrk()
    tool = "python" if force_python else "wrk"
    report = Report("replicas", "Replicas on one Redis: 1, 2 and 3", args.out, args.quick)
    points: list[Point] = []
    costs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    breakdown: dict[str, Any] = {}
    with work_dir("replicas") as wd, contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer(wd)).start()
        fakes = stack.enter_context(Fakes(wd, backends)).start()
        s3_env: dict[str, str] = {}
        s3_pid: int | None = None
        if args.s3:
            s3_env, s3_pid = stack.enter_context(profile.s3_server(wd))
        cluster = Cluster(wd, redis_server, fakes, s3_env, args.threads, [], s3_pid)
        for rnd in range(rounds):
            order = counts[rnd % len(counts) :] + counts[: rnd % len(counts)]
            for n in order:
                found, cost = measure_count(
                    cluster, n, rnd, gen_clients, gen_duration, levels, duration, force_python
                )
                points += found
                costs[n].append(cost)
        if not (args.quick or args.no_profile):
            breakdown = profile.breakdown(
                cluster, max(counts), gen_clients, levels[-1], FRESH_BODY, HIT_BODY, force_python
            )
        redis_version = str(redis_server.client().info("server")["redis_version"])
    report.extra_versions["redis-server"] = redis_version
    storage = "S3 (s3rver)" if args.s3 else "local: one folder shared by the replicas"
    write_report(report, points, costs, counts, levels, gen_clients, tool, args, storage, breakdown)
    return report.write()


if __name__ == "__main__":
    main()
