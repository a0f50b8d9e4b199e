"""Concurrency: how many clients waiting on synchronous generations or on SSE event streams one
``comfygate serve`` holds with its defaults, the memory (RSS) each waiting client costs, and
what a generation costs while they wait.

Two fake ComfyUIs, each in a process of its own: A offers a checkpoint B does not
(``held.safetensors``) and holds every job until released; B runs jobs at once. The waiting
clients all ask for a txt2img on that checkpoint, so their jobs can only run on A: two jobs
(A's two in-flight places, ``MAX_IN_FLIGHT_PER_BACKEND``), half the clients on each. A sync
client sends the same body as the other half (identical requests coalesce into one job, and
each waits for its answer on its own connection and thread); an SSE client follows one of the
two jobs. While every client waits, ``--pairs`` model-free generations through the gateway
alternate with the same generation by the optimal direct client on B
(``bench/direct_client.py``): the added time at that load, against the same pairs measured
before the clients came. Then A lets the jobs run and every client's ending is checked.

The clients are one asyncio loop of raw HTTP/1.0 connections (no thread per client), so the
load generator itself stays small.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Fakes,
    Gateway,
    Report,
    Summary,
    fmt,
    load_average,
    parser,
    pyplot,
    save_figure,
    thread_count,
    wait_until,
    work_dir,
)
from bench.direct_client import DirectClient
from bench.gateway_client import PNG_MAGIC, generate
from bench.workloads import SOLID

CONNECT_BATCH = 100  # clients opened at once, so the listen backlog never overflows
HELD_CHECKPOINT = "held.safetensors"
HELD_JOBS = 2  # A's in-flight places with the default MAX_IN_FLIGHT_PER_BACKEND


def held_body(index: int) -> dict[str, Any]:
    """A job only fake A can run (its checkpoint); the same body for every other client."""
    return {
        "template": "txt2img",
        "prompt": "a held job",
        "width": 64,
        "height": 64,
        "steps": 1,
        "seed": 1_000 + index % HELD_JOBS,
        "checkpoint": HELD_CHECKPOINT,
    }


@dataclass
class Outcome:
    mode: str
    clients: int
    threads: int = 0
    held_connections: int = 0  # established client connections to the gateway
    seconds_to_all_waiting: float = float("nan")
    rss_idle_mib: float = 0.0
    rss_waiting_mib: float = 0.0
    kib_per_client: float = float("nan")
    open_fds: int = 0
    succeeded: int = 0
    wrong: int = 0
    drain_s: float = float("nan")
    idle_added_ms: list[float] = field(default_factory=list)  # gateway - direct, per pair
    loaded_added_ms: list[float] = field(default_factory=list)
    probe_errors: int = 0
    load_average: str = ""
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


async def _sync_client(port: int, index: int, counter: Counter, timeout_s: float) -> None:
    try:
        status, body = await _request(port, _post("/v1/generate", held_body(index)), timeout_s)
    except (OSError, TimeoutError):
        counter.wrong += 1
        return
    if status == 200 and body.startswith(b"\x89PNG"):
        counter.ok += 1
    else:
        counter.wrong += 1


async def _sse_client(port: int, job_id: str, counter: Counter, timeout_s: float) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    except (OSError, TimeoutError):
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


def established(port: int) -> int:
    """Established TCP connections to 127.0.0.1:``port`` (the clients the gateway holds)."""
    local = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        count += fields[1] == local and fields[3] == "01"
    return count


class Probes:
    """Model-free generations through the gateway and by the direct client on fake B,
    alternating (the order swaps every pair); the gateway's time minus the direct one's."""

    def __init__(self, gateway_url: str, direct_url: str) -> None:
        self.gateway_url = gateway_url
        self.session = requests.Session()
        self.direct = DirectClient(direct_url, timeout_s=60)

    def close(self) -> None:
        self.session.close()
        self.direct.close()

    def _gateway(self) -> float:
        result = generate(self.session, self.gateway_url, SOLID.body(SOLID.params()), 60)
        if not result.ok:
            raise RuntimeError(result.error)
        return result.elapsed_s

    def _direct(self) -> float:
        graph = SOLID.graph(SOLID.params())
        started = time.perf_counter()
        if not self.direct.run(graph, SOLID.output_node).startswith(PNG_MAGIC):
            raise RuntimeError("direct: not a PNG")
        return time.perf_counter() - started

    def pairs(self, n: int, out: Outcome) -> list[float]:
        added: list[float] = []
        for i in range(n):
            try:
                if i % 2:
                    ours, direct = self._gateway(), self._direct()
                else:
                    direct, ours = self._direct(), self._gateway()
            except (RuntimeError, TimeoutError, requests.RequestException) as exc:
                out.probe_errors += 1
                print(f"  probe failed: {exc}", flush=True)
                continue
            added.append((ours - direct) * 1000)
        return added


async def _settled_rss_kib(gw: Gateway) -> int:
    """The gateway's RSS once it no longer grows (two readings 0.2 s apart within 1 %: the
    last clients' buffers are allocated), or as it is after 10 s."""
    deadline = time.monotonic() + 10.0
    last = gw.rss_kib()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = gw.rss_kib()
        if abs(now - last) <= last / 100:
            return now
        last = now
    return last


async def _scenario(
    gw: Gateway, held: Fakes, probes: Probes, mode: str, clients: int, args: Any, out: Outcome
) -> None:
    counter = Counter()
    timeout_s = 600.0
    held.command("hold")
    job_ids: list[str] = []
    if mode == "sse":
        for index in range(HELD_JOBS):
            resp = requests.post(f"{gw.url}/v1/jobs", json=held_body(index), timeout=30)
            resp.raise_for_status()
            job_ids.append(resp.json()["id"])
    before = established(gw.port)
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, clients, CONNECT_BATCH):
        for index in range(start, min(start + CONNECT_BATCH, clients)):
            client = (
                _sync_client(gw.port, index, counter, timeout_s)
                if mode == "sync"
                else _sse_client(gw.port, job_ids[index % HELD_JOBS], counter, timeout_s)
            )
            tasks.append(asyncio.create_task(client))
        await asyncio.sleep(0.05)

    def waiting() -> int:
        held_now = established(gw.port) - before  # not the probes' keep-alive connection
        return min(held_now, counter.streams) if mode == "sse" else held_now

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
    out.held_connections = waiting()
    if out.held_connections >= clients:
        out.seconds_to_all_waiting = time.monotonic() - started
    out.rss_waiting_mib = await _settled_rss_kib(gw) / 1024
    out.threads = thread_count(gw.pid)
    out.open_fds = len(os.listdir(f"/proc/{gw.pid}/fd"))
    out.kib_per_client = (out.rss_waiting_mib - out.rss_idle_mib) * 1024 / max(1, clients)
    out.load_average = load_average()
    # The generations while they all wait (in a thread: this loop keeps their connections).
    out.loaded_added_ms = await asyncio.to_thread(probes.pairs, args.pairs, out)
    out.held_connections = min(out.held_connections, waiting())  # still all there after
    held.command("release")
    released = time.monotonic()
    await asyncio.wait(tasks, timeout=timeout_s)
    out.drain_s = time.monotonic() - released
    out.succeeded, out.wrong = counter.ok, counter.wrong
    out.wrong += sum(1 for t in tasks if not t.done())
    for t in tasks:
        t.cancel()


def run_one(wd: Path, held: Fakes, free: Fakes, mode: str, clients: int, args: Any) -> Outcome:
    out = Outcome(mode, clients)
    with Gateway([held.urls[0], free.urls[0]], wd) as gw:
        gw.start()
        probes = Probes(gw.url, free.urls[0])
        try:
            probes.pairs(3, out)  # warm-up: imports, first jobs, connection pools
            out.probe_errors = 0
            out.idle_added_ms = probes.pairs(args.pairs, out)
            wait_until(lambda: gw.rss_kib() > 0, 1)
            out.rss_idle_mib = gw.rss_kib() / 1024
            asyncio.run(_scenario(gw, held, probes, mode, clients, args, out))
        finally:
            probes.close()
        out.notes.append(gw.command)
    shown = {k: v for k, v in asdict(out).items() if not k.endswith("_added_ms")}
    print(f"  {mode} x{clients}: {shown}", flush=True)
    for name in ("idle", "loaded"):
        s = Summary.of(getattr(out, f"{name}_added_ms"))
        print(f"    added ms {name}: median {s.median:.2f}, p99 {s.p99:.2f} (n={s.n})", flush=True)
    return out


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--clients", default="250,1000", help="client counts")
    p.add_argument("--pairs", type=int, default=50, help="gateway/direct pairs, idle and loaded")
    args = p.parse_args(argv)
    levels = [20] if args.quick else [int(x) for x in args.clients.split(",")]
    if args.quick:
        args.pairs = 5
    report = Report(
        "concurrency", "Concurrency: waiting clients one gateway holds", args.out, args.quick
    )
    outcomes: list[Outcome] = []
    with (
        work_dir("concurrency") as wd,
        Fakes(wd, checkpoints=[HELD_CHECKPOINT]) as held,
        Fakes(wd) as free,
    ):
        held.start()
        free.start()
        for clients in levels:
            for mode in ("sync", "sse"):
                outcomes.append(run_one(wd, held, free, mode, clients, args))
    rows = []
    for o in outcomes:
        idle, loaded = Summary.of(o.idle_added_ms), Summary.of(o.loaded_added_ms)
        rows.append(
            [
                o.mode,
                o.clients,
                o.threads,
                o.held_connections,
                fmt(o.seconds_to_all_waiting, 1),
                fmt(o.rss_idle_mib, 0),
                fmt(o.rss_waiting_mib, 0),
                fmt(o.kib_per_client, 0),
                o.open_fds,
                o.succeeded,
                o.wrong,
                f"{fmt(idle.median, 2)} / {fmt(idle.p99, 2)}",
                f"{fmt(loaded.median, 2)} / {fmt(loaded.p99, 2)}",
                o.probe_errors,
                o.load_average,
            ]
        )
    report.table(
        "Clients waiting on jobs the fake ComfyUI A holds, one `comfygate serve` with its "
        "defaults; a model-free generation's added time over the direct client (fake B)",
        [
            "mode",
            "clients",
            "gateway threads",
            "clients held",
            "s until all waited",
            "RSS idle MiB",
            "RSS all waiting MiB",
            "KiB / waiting client",
            "open fds",
            "succeeded",
            "wrong",
            f"added ms, idle: median / p99 ({args.pairs} pairs)",
            f"added ms, all waiting: median / p99 ({args.pairs} pairs)",
            "probe errors",
            "load average (1/5/15 min)",
        ],
        rows,
    )
    commands = sorted({n for o in outcomes for n in o.notes})
    report.note("Gateway commands:\n\n" + "\n".join(f"- `{c}`" for c in commands))
    report.note(
        "Clients held: established connections to the gateway while they wait (SSE: streams "
        "that have their first event). RSS idle is the same gateway after the idle pairs, "
        "before any client connected; KiB per waiting client is (RSS with every client "
        "waiting - RSS idle) / clients. Added ms: a model-free generation through the gateway "
        "minus the same generation by the optimal direct client, per pair."
    )
    report.data = {"outcomes": [asdict(o) for o in outcomes], "pairs": args.pairs}
    _plot(report, outcomes)
    return report.write()


def _plot(report: Report, outcomes: list[Outcome]) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in ("sync", "sse"):
        points = [o for o in outcomes if o.mode == mode]
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
            label=f"{mode}: idle",
        )
    left.set_xlabel("waiting clients")
    left.set_ylabel("gateway RSS (MiB)")
    left.set_title("Memory with every client waiting")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    data, labels = [], []
    for o in outcomes:
        data += [o.idle_added_ms or [float("nan")], o.loaded_added_ms or [float("nan")]]
        labels += [f"{o.mode} x{o.clients}\nidle", f"{o.mode} x{o.clients}\nall waiting"]
    right.boxplot(data, showfliers=False)
    right.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    right.set_ylabel("added ms over the direct client")
    right.set_title("A model-free generation while the clients wait")
    right.grid(axis="y", alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
