"""Growth: status read latency (GET /v1/jobs/{id}), the newest-first listing, the gateway's
start time and the store's size (the SQLite file) with 10^3 .. 10^6 jobs in the store.

Jobs are inserted as the rows ``comfygate.jobs.sqlite_store.SQLiteJobStore.insert`` writes
(the same columns and record) for realistic finished txt2img jobs: the bound graph, the
filled-in parameters, one output, timestamps within the retention window; 10,000 rows per
transaction with ``executemany``, so that 10^6 jobs take seconds rather than minutes. How
long each size took is reported.
"""

from __future__ import annotations

import json
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
    """Insert ``count`` jobs; returns the seconds it took. The rows are those
    ``SQLiteJobStore.insert`` writes (its columns, ``Job.to_record()`` as JSON), made from one
    record with the fields that differ replaced and written ``TRANSACTION`` at a time with
    ``executemany``: going through ``insert`` one job at a time (a ``Job`` and its record
    made, a statement each) took 441 s for the step to 10^6."""
    rng = random.Random(len(ids))  # noqa: S311 - test data, not secrets
    now = time.time()
    record = base.to_record()
    started = time.perf_counter()
    with store._db.writing() as conn:  # the bench's one shortcut: the store's own connection
        for first in range(0, count, TRANSACTION):
            rows = []
            for _ in range(min(TRANSACTION, count - first)):
                finished = now - rng.uniform(0, 3 * 86400)  # inside the 7-day retention
                job_id = uuid.uuid4().hex
                data = {
                    **record,
                    "id": job_id,
                    "prompt_id": str(uuid.uuid4()),
                    "created_at": finished - 5,
                    "started_at": finished - 4,
                    "submitted_at": finished - 5,
                    "finished_at": finished,
                    "deadline_at": finished + 3595,
                    "params": {**base.params, "seed": rng.randrange(1 << 48)},
                }
                rows.append((job_id, base.status.value, finished, 1, json.dumps(data)))
                ids.append(job_id)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO jobs (id, status, finished_at, version, data) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    # The rows are the store's: they read back as the jobs they stand for.
    if count:
        back = store.get(ids[-1])
        if back is None or back.public()["params"] != json.loads(rows[-1][4])["params"]:
            raise RuntimeError("an inserted job does not read back through the store")
    return elapsed


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
        "grows): the rows SQLiteJobStore.insert writes, with executemany in transactions of "
        f"{TRANSACTION:,}."
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
