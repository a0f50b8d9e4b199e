"""Growth: status read latency (GET /v1/jobs/{id}), the newest-first listing, the gateway's
start time and the store's size (the SQLite file) with 10^3 .. 10^6 jobs in the store.

Jobs are inserted straight through ``comfygate.jobs.store.SQLiteJobStore.insert`` (the same
rows the gateway writes) as realistic finished txt2img jobs: the bound graph, the filled-in
parameters, one output, timestamps within the retention window. Inserts are grouped in
transactions of 10,000 to save time; how long each size took is reported.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from pathlib import Path

import requests

from bench.common import (
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
from bench.workloads import sd15
from comfygate.jobs.model import Job, JobStatus, Output
from comfygate.jobs.sqlite_store import SQLiteJobStore

TRANSACTION = 10_000


def template_job() -> Job:
    workload = sd15(20)
    params = workload.params()
    graph = workload.graph(params)
    now = time.time()
    values = {
        **params,
        "negative_prompt": "",
        "cfg": 7.0,
        "sampler": "euler",
        "scheduler": "normal",
        "batch_size": 1,
    }
    return Job(
        template="txt2img",
        params=values,
        graph=graph,
        status=JobStatus.SUCCEEDED,
        progress={"value": 20, "max": 20, "node": "3"},
        outputs=[Output("9-0.png", "image/png", 10301, "9", "images")],
        attempts=1,
        created_at=now,
        started_at=now,
        finished_at=now,
        deadline_at=now + 3600,
        backend="local",
        prompt_id=str(uuid.uuid4()),
        submitted_at=now,
    )


def fill(store: SQLiteJobStore, count: int, base: Job, ids: list[str]) -> float:
    """Insert ``count`` jobs; returns the seconds it took."""
    rng = random.Random(len(ids))  # noqa: S311 - test data, not secrets
    now = time.time()
    started = time.perf_counter()
    conn = store._db._conn  # a transaction per TRANSACTION inserts (the bench's one shortcut)
    for i in range(count):
        if i % TRANSACTION == 0:
            if i:
                conn.execute("COMMIT")
            conn.execute("BEGIN")
        finished = now - rng.uniform(0, 3 * 86400)  # inside the 7-day retention
        job = dataclasses.replace(
            base,
            id=uuid.uuid4().hex,
            prompt_id=str(uuid.uuid4()),
            created_at=finished - 5,
            started_at=finished - 4,
            submitted_at=finished - 5,
            finished_at=finished,
            params={**base.params, "seed": rng.randrange(1 << 48)},
        )
        store.insert(job)
        ids.append(job.id)
    conn.execute("COMMIT")
    return time.perf_counter() - started


def read_latencies(url: str, ids: list[str], reads: int) -> tuple[list[float], list[float]]:
    """Sequential GET /v1/jobs/{random id} and GET /v1/jobs?limit=50 on one keep-alive client."""
    session = requests.Session()
    rng = random.Random(7)  # noqa: S311 - a reproducible sample
    single: list[float] = []
    for _ in range(reads):
        job_id = rng.choice(ids)
        started = time.perf_counter()
        resp = session.get(f"{url}/v1/jobs/{job_id}", timeout=30)
        resp.content  # noqa: B018 - read the body
        single.append(time.perf_counter() - started)
        if resp.status_code != 200:
            raise RuntimeError(f"GET /v1/jobs/{job_id}: HTTP {resp.status_code}")
    listing: list[float] = []
    for _ in range(max(5, reads // 10)):
        started = time.perf_counter()
        resp = session.get(f"{url}/v1/jobs", params={"limit": 50}, timeout=60)
        resp.content  # noqa: B018
        listing.append(time.perf_counter() - started)
    return single, listing


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--sizes", default="1000,10000,100000,1000000")
    p.add_argument("--reads", type=int, default=500, help="status reads per size")
    args = p.parse_args(argv)
    sizes = [100, 1000] if args.quick else [int(x) for x in args.sizes.split(",")]
    reads = 50 if args.quick else args.reads
    report = Report(
        "growth", "Growth: status reads and store size against jobs stored", args.out, args.quick
    )
    rows: list[list[object]] = []
    data: list[dict[str, float]] = []
    with work_dir("growth") as wd, Fakes(wd) as fakes:
        fakes.start()
        data_dir = wd / "data"
        data_dir.mkdir()
        base = template_job()
        ids: list[str] = []
        for size in sizes:
            store = SQLiteJobStore(data_dir / "jobs.sqlite3")
            added = size - len(ids)
            insert_s = fill(store, added, base, ids)
            store._db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.close()
            db_bytes = sum(f.stat().st_size for f in data_dir.glob("jobs.sqlite3*"))
            started = time.perf_counter()
            with Gateway(fakes.urls, wd, data_dir=data_dir) as gw:
                gw.start()
                start_s = time.perf_counter() - started
                single, listing = read_latencies(gw.url, ids, reads)
            s, lst = Summary.of(single), Summary.of(listing)
            row = {
                "jobs": size,
                "insert_s": insert_s,
                "inserts_per_s": added / insert_s if insert_s else 0.0,
                "db_mib": db_bytes / 2**20,
                "bytes_per_job": db_bytes / size,
                "gateway_start_s": start_s,
                "get_p50_ms": s.median * 1000,
                "get_p99_ms": s.p99 * 1000,
                "list_p50_ms": lst.median * 1000,
                "list_p99_ms": lst.p99 * 1000,
            }
            data.append(row)
            print(f"  {row}", flush=True)
            rows.append(
                [
                    f"{size:,}",
                    fmt(insert_s, 1),
                    fmt(row["db_mib"], 1),
                    fmt(row["bytes_per_job"], 0),
                    fmt(start_s, 2),
                    fmt(row["get_p50_ms"], 2),
                    fmt(row["get_p99_ms"], 2),
                    fmt(row["list_p50_ms"], 1),
                    fmt(row["list_p99_ms"], 1),
                ]
            )
    report.table(
        f"Store growth ({reads} random status reads and {max(5, reads // 10)} listings per size, "
        "one keep-alive client)",
        [
            "jobs stored",
            "insert time for this step (s)",
            "SQLite file (MiB)",
            "bytes / job",
            "gateway start (s)",
            "GET /v1/jobs/{id} p50 ms",
            "p99 ms",
            "GET /v1/jobs?limit=50 p50 ms",
            "p99 ms",
        ],
        rows,
    )
    report.note(
        "Insert time is for the jobs added at that step (sizes are cumulative: the same store "
        f"grows), through SQLiteJobStore.insert in transactions of {TRANSACTION:,}."
    )
    report.data = {"rows": data}
    _plot(report, data)
    return report.write()


def _plot(report: Report, data: list[dict[str, float]]) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    jobs = [d["jobs"] for d in data]
    left.plot(jobs, [d["get_p50_ms"] for d in data], marker="o", label="GET /v1/jobs/{id} p50")
    left.plot(jobs, [d["get_p99_ms"] for d in data], marker="o", label="GET /v1/jobs/{id} p99")
    left.plot(jobs, [d["list_p50_ms"] for d in data], marker="s", label="GET /v1/jobs p50")
    left.set_xscale("log")
    left.set_xlabel("jobs in the store")
    left.set_ylabel("latency (ms)")
    left.set_title("Read latency against store size")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.plot(jobs, [d["db_mib"] for d in data], marker="o")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("jobs in the store")
    right.set_ylabel("SQLite file (MiB)")
    right.set_title("Store size")
    right.grid(alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
