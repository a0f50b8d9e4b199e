"""Concurrency: how many clients waiting on synchronous generations or on SSE event streams one
gateway holds, what it takes (waitress threads, connection limit, poll instead of select), and
the memory (RSS) each waiting client costs. The fake ComfyUI holds every job (``hold``) until
all clients wait, for a fixed time; then it lets them all finish, and every client's ending is
checked.

The clients are one asyncio loop of raw HTTP/1.0 connections (no thread per client), so the
load generator itself stays small.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Fakes,
    Gateway,
    Report,
    fmt,
    parser,
    pyplot,
    save_figure,
    thread_count,
    work_dir,
)
from bench.workloads import SOLID

CONNECT_BATCH = 100  # clients opened at once, so the listen backlog never overflows


@dataclass
class Config:
    name: str
    threads_for: str  # "clients+32": threads = clients + 32
    waitress: dict[str, object] = field(default_factory=dict)

    def threads(self, clients: int) -> int:
        return clients + 32


TUNED = Config(
    "threads = clients + 32, connection_limit = clients + 100, poll()",
    "clients+32",
    {"connection_limit": "CLIENTS+100", "asyncore_use_poll": True, "backlog": 2048},
)
THREADS_ONLY = Config(
    "comfygate serve --threads clients+32 (other waitress defaults)", "clients+32"
)


@dataclass
class Outcome:
    mode: str
    config: str
    clients: int
    threads: int
    waiting_in_gateway: int = 0  # jobs created (sync) or streams opened (sse)
    seconds_to_all_waiting: float = float("nan")
    rss_idle_mib: float = 0.0
    rss_waiting_mib: float = 0.0
    kib_per_client: float = float("nan")
    gateway_threads: int = 0
    open_fds: int = 0
    succeeded: int = 0
    wrong: int = 0
    drain_s: float = float("nan")
    notes: list[str] = field(default_factory=list)


class Counter:
    def __init__(self) -> None:
        self.streams = 0
        self.ok = 0
        self.wrong = 0


async def _request(port: int, raw: bytes, timeout_s: float) -> tuple[int, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.split(b"\r\n\r\n", 1)[-1]


def _post(path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def _sync_client(port: int, counter: Counter, timeout_s: float) -> None:
    try:
        status, body = await _request(
            port, _post("/v1/generate", SOLID.body(SOLID.params())), timeout_s
        )
    except (OSError, TimeoutError):
        counter.wrong += 1
        return
    if status == 200 and body.startswith(b"\x89PNG"):
        counter.ok += 1
    else:
        counter.wrong += 1


async def _sse_client(port: int, counter: Counter, timeout_s: float) -> None:
    try:
        status, body = await _request(port, _post("/v1/jobs", SOLID.body(SOLID.params())), 60)
        if status != 202:
            counter.wrong += 1
            return
        job_id = json.loads(body)["id"]
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    except (OSError, TimeoutError, ValueError, KeyError):
        counter.wrong += 1
        return
    try:
        writer.write(f"GET /v1/jobs/{job_id}/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        counted = False
        final = False
        async with asyncio.timeout(timeout_s):
            while line := await reader.readline():
                if line.startswith(b"event: status") and not counted:
                    counted = True
                    counter.streams += 1
                elif line.startswith(b"event: done"):
                    final = True
                elif final and line.startswith(b"data: "):
                    ok = json.loads(line[6:]).get("status") == "succeeded"
                    counter.ok += ok
                    counter.wrong += not ok
                    return
        counter.wrong += 1
    except (OSError, TimeoutError, ValueError):
        counter.wrong += 1
    finally:
        writer.close()


def _jobs_in_store(data_dir: Path) -> int:
    path = data_dir / "jobs.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


async def _scenario(
    gw: Gateway, fakes: Fakes, mode: str, clients: int, hold_s: float, out: Outcome
) -> None:
    counter = Counter()
    baseline_jobs = _jobs_in_store(gw.data_dir)
    fakes.command("hold")
    timeout_s = hold_s + 300
    client = _sync_client if mode == "sync" else _sse_client
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, clients, CONNECT_BATCH):
        for _ in range(min(CONNECT_BATCH, clients - start)):
            tasks.append(asyncio.create_task(client(gw.port, counter, timeout_s)))
        await asyncio.sleep(0.05)

    def waiting() -> int:
        if mode == "sync":
            return _jobs_in_store(gw.data_dir) - baseline_jobs
        return counter.streams

    # Until every client waits, or the count has not moved for 5 s (a server that holds no
    # more), or 120 s.
    deadline = time.monotonic() + 120.0
    last, moved = -1, time.monotonic()
    while time.monotonic() < deadline and (now := waiting()) < clients:
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > 5.0:
            break
        await asyncio.sleep(0.2)
    out.waiting_in_gateway = waiting()
    if out.waiting_in_gateway >= clients:
        out.seconds_to_all_waiting = time.monotonic() - started
    await asyncio.sleep(min(hold_s, 2.0))
    out.rss_waiting_mib = gw.rss_kib() / 1024
    out.gateway_threads = thread_count(gw.pid)
    out.open_fds = len(os.listdir(f"/proc/{gw.pid}/fd"))
    out.waiting_in_gateway = max(out.waiting_in_gateway, waiting())
    out.kib_per_client = (out.rss_waiting_mib - out.rss_idle_mib) * 1024 / max(1, clients)
    remaining = hold_s - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
    fakes.command("release")
    released = time.monotonic()
    await asyncio.wait(tasks, timeout=timeout_s)
    out.drain_s = time.monotonic() - released
    out.succeeded, out.wrong = counter.ok, counter.wrong
    out.wrong += sum(1 for t in tasks if not t.done())
    for t in tasks:
        t.cancel()


def run_one(
    wd: Path, fakes: Fakes, mode: str, clients: int, config: Config, hold_s: float
) -> Outcome:
    threads = config.threads(clients)
    waitress = {k: (clients + 100 if v == "CLIENTS+100" else v) for k, v in config.waitress.items()}
    out = Outcome(mode, config.name, clients, threads)
    with Gateway(fakes.urls, wd, threads=threads, waitress=waitress or None) as gw:
        gw.start()
        for _ in range(2):  # warm-up: imports, first job, connection pools
            requests.post(f"{gw.url}/v1/generate", json=SOLID.body(SOLID.params()), timeout=30)
        time.sleep(0.5)
        out.rss_idle_mib = gw.rss_kib() / 1024
        asyncio.run(_scenario(gw, fakes, mode, clients, hold_s, out))
        out.notes.append(gw.command.replace(str(clients + 100), "CLIENTS+100"))
    print(f"  {mode} x{clients} [{config.name}]: {asdict(out)}", flush=True)
    return out


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--clients", default="250,1000", help="client counts")
    p.add_argument("--hold", type=float, default=5.0, help="seconds the fake holds every job")
    args = p.parse_args(argv)
    levels = [20] if args.quick else [int(x) for x in args.clients.split(",")]
    hold_s = 1.0 if args.quick else args.hold
    report = Report(
        "concurrency", "Concurrency: waiting clients one gateway holds", args.out, args.quick
    )
    outcomes: list[Outcome] = []
    with work_dir("concurrency") as wd, Fakes(wd) as fakes:
        fakes.start()
        for clients in levels:
            for mode in ("sync", "sse"):
                outcomes.append(run_one(wd, fakes, mode, clients, TUNED, hold_s))
        if not args.quick:
            outcomes.append(run_one(wd, fakes, "sync", max(levels), THREADS_ONLY, hold_s))
    rows = [
        [
            o.mode,
            o.clients,
            o.config,
            o.threads,
            o.waiting_in_gateway,
            fmt(o.seconds_to_all_waiting, 1),
            fmt(o.rss_idle_mib, 0),
            fmt(o.rss_waiting_mib, 0),
            fmt(o.kib_per_client, 0),
            o.open_fds,
            o.succeeded,
            o.wrong,
            fmt(o.drain_s, 1),
        ]
        for o in outcomes
    ]
    report.table(
        f"Clients waiting while the fake ComfyUI holds every job for {hold_s:g} s",
        [
            "mode",
            "clients",
            "server settings",
            "threads",
            "waiting in gateway",
            "s until all waited",
            "RSS idle MiB",
            "RSS all waiting MiB",
            "KiB / waiting client",
            "open fds",
            "succeeded",
            "wrong",
            "s to drain after release",
        ],
        rows,
    )
    commands = sorted({n for o in outcomes for n in o.notes})
    report.note("Gateway commands:\n\n" + "\n".join(f"- `{c}`" for c in commands))
    report.note(
        "RSS idle is the same gateway process after two warm-up jobs, before any client "
        "connected (its worker threads already started); KiB per waiting client is (RSS with "
        "every client waiting - RSS idle) / clients."
    )
    report.data = {"outcomes": [asdict(o) for o in outcomes], "hold_s": hold_s}
    _plot(report, outcomes)
    return report.write()


def _plot(report: Report, outcomes: list[Outcome]) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    tuned = [o for o in outcomes if o.config == TUNED.name]
    for mode in ("sync", "sse"):
        points = [o for o in tuned if o.mode == mode]
        left.plot(
            [o.clients for o in points],
            [o.rss_waiting_mib for o in points],
            marker="o",
            label=f"{mode}: all waiting",
        )
        left.plot(
            [o.clients for o in points],
            [o.rss_idle_mib for o in points],
            marker=".",
            linestyle=":",
            label=f"{mode}: idle, same threads",
        )
    left.set_xlabel("waiting clients")
    left.set_ylabel("gateway RSS (MiB)")
    left.set_title("Memory with every client waiting")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    labels = [
        f"{o.mode} x{o.clients}\n{'tuned' if o.config == TUNED.name else 'threads only'}"
        for o in outcomes
    ]
    right.bar(range(len(outcomes)), [o.waiting_in_gateway for o in outcomes], label="waiting")
    right.plot(
        range(len(outcomes)), [o.clients for o in outcomes], "k_", markersize=30, label="clients"
    )
    right.set_xticks(range(len(outcomes)), labels, fontsize=7)
    right.set_ylabel("clients")
    right.set_title("Clients the gateway held at once")
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
