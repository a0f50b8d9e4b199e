"""Throughput: model-free generations per second at 500 concurrent clients through
``comfygate serve`` (its defaults), against ComfyUI alone fed by one pipelining client.

* **ComfyGate**: ``--clients`` closed-loop clients (each sends ``POST /v1/generate``, reads the
  whole PNG, sends the next), one asyncio loop of raw keep-alive connections, so the load
  generator costs no thread per client and stays far from being the limit.
* **ComfyUI alone**: one client keeps ``--depth`` prompts queued on ComfyUI's ``/prompt``
  (one websocket; at each prompt's ``execution_success`` it submits the next, then reads the
  file its ``executed`` message named from ``/view``, as ``bench/direct_client.py`` does), so
  ComfyUI never idles: the most this ComfyUI does with this graph.

Every job has a fresh colour (ComfyUI's cache never answers) and writes into a folder of its
own (``SaveImage`` lists its folder to number a file; one flat folder would slow the later
jobs). The contenders alternate for ``--rounds``; before each run the backend's
input/output/temp folders are emptied and its history cleared. Each run lasts ``--duration``
seconds; the first ``--warmup`` seconds are not counted (the queue fills), then the clients
stop sending and drain. jobs/s is the completions inside the counted window over its length;
CPU per job is the process's user + system time over the same window, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import websocket

from bench.common import (
    Fakes,
    Gateway,
    OwnedComfyUI,
    Report,
    Summary,
    backend_dirs,
    comfyui_version,
    cpu_seconds,
    fmt,
    load_average,
    parser,
    pyplot,
    save_figure,
    wait_until,
    work_dir,
)
from bench.direct_client import DirectClient
from bench.gateway_client import PNG_MAGIC
from bench.profile_phases import (
    PY_SPY,
    ThreadSnapshot,
    have_py_spy,
    phase_totals,
    stack_summary,
)
from bench.workloads import SOLID

DIRECT = "ComfyUI alone, one pipelining client"
OURS = "ComfyGate (comfygate serve), sync POST /v1/generate"
CONNECT_BATCH = 100  # connections opened at once, so the listen backlog never overflows


@dataclass
class Run:
    """One contender's run: what finished inside the counted window, and what it cost."""

    contender: str
    round_no: int
    clients: int
    window_s: float
    completed: int = 0  # inside the window
    total_completed: int = 0  # the whole run, drain included
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # of the window's completions
    gateway_cpu_s: float = float("nan")
    backend_cpu_s: float = 0.0
    loadgen_cpu_s: float = 0.0
    load_before: str = ""
    load_after: str = ""
    phases_cpu_s: dict[str, float] = field(default_factory=dict)  # --profile: by thread

    @property
    def jobs_per_s(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else float("nan")

    def per_job_ms(self, cpu_s: float) -> float:
        return cpu_s * 1000 / self.completed if self.completed else float("nan")

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:200])


class Window:
    """The counted part of a run: after the warm-up, until the end of sending; samples the
    processes' CPU time at both ends."""

    def __init__(
        self, warmup_s: float, duration_s: float, pids: dict[str, int], by_thread: bool = False
    ) -> None:
        self.by_thread = by_thread  # also the gateway's CPU per phase (its threads)
        self.phases: dict[str, float] = {}
        self.started = time.monotonic()
        self.opens = self.started + warmup_s
        self.closes = self.started + duration_s
        self.pids = pids
        self.cpu_at_open: dict[str, float] = {}
        self.cpu_spent: dict[str, float] = {}
        self.over = threading.Event()  # the run is over (early, on a failure): waits end

    def reached(self, at: float) -> bool:
        """Wait for monotonic time ``at``; False if the run was over first."""
        return not self.over.wait(max(0.0, at - time.monotonic()))

    def counts(self, at: float) -> bool:
        return self.opens <= at <= self.closes

    def sending(self) -> bool:
        return time.monotonic() < self.closes

    def _cpu(self) -> dict[str, float]:
        found = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        found["loadgen"] = time.process_time()
        return found

    def watch(self) -> threading.Thread:
        """A thread that samples the CPU times when the window opens and when it closes."""

        def sample() -> None:
            if not self.reached(self.opens):
                return
            self.cpu_at_open = self._cpu()
            gateway = self.pids.get("gateway")
            threads = None
            if self.by_thread and gateway is not None:
                threads = ThreadSnapshot.take(gateway, self.cpu_at_open["gateway"])
            self.reached(self.closes)  # a run over early is sampled as far as it went
            end = self._cpu()
            self.cpu_spent = {k: end[k] - self.cpu_at_open[k] for k in end}
            if threads is not None:
                self.phases = threads.phases(end["gateway"])

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        return thread


# --- ComfyGate: closed-loop clients on raw keep-alive connections ------------------------------


def _request(body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        "POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: image/png\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 answer: status, body, whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        body = b"".join(parts)
    else:
        body, keep = await reader.read(), False
    return status, body, keep


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int) -> Connection | None:
    try:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    except (OSError, TimeoutError):
        return None  # the client tries again, and counts the error if it fails then


async def _client(
    port: int, window: Window, run: Run, cap: list[int], timeout_s: float, conn: Connection | None
) -> None:
    try:
        while window.sending() and cap[0] > 0:
            cap[0] -= 1
            started = time.monotonic()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
                reader, writer = conn
                writer.write(_request(SOLID.body(SOLID.params())))
                await writer.drain()
                status, body, keep = await asyncio.wait_for(_response(reader), timeout_s)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                run.error(type(exc).__name__)
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            ended = time.monotonic()
            run.total_completed += 1
            if status != 200 or not body.startswith(PNG_MAGIC):
                run.error(f"HTTP {status}: {body[:120]!r}")
            elif window.counts(ended):
                run.completed += 1
                run.latencies_s.append(ended - started)
            if not keep:
                conn[1].close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def _gateway_run(port: int, window: Window, run: Run, max_jobs: int, drain_s: float) -> None:
    cap = [max_jobs]
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, run.clients, CONNECT_BATCH):
        # Each batch connected before the next is opened: the listen backlog never overflows.
        batch = min(CONNECT_BATCH, run.clients - start)
        conns = await asyncio.gather(*(_connect(port) for _ in range(batch)))
        for conn in conns:
            tasks.append(asyncio.create_task(_client(port, window, run, cap, drain_s, conn)))
    _, late = await asyncio.wait(tasks, timeout=window.closes - time.monotonic() + drain_s)
    for task in late:  # bounded: a client still waiting after the drain counts as an error
        task.cancel()
        run.error("no answer before the drain ended")


def run_gateway(
    gateway: Gateway,
    backend_pid: int,
    args: Any,
    round_no: int,
    clients: int,
    profile: Path | None = None,
) -> Run:
    run = Run(OURS, round_no, clients, args.duration - args.warmup)
    run.load_before = load_average()
    pids = {"gateway": gateway.pid, "backend": backend_pid}
    window = Window(args.warmup, args.duration, pids, by_thread=profile is not None)
    sampler = window.watch()
    spy = None
    if profile is not None:
        spy = threading.Thread(target=py_spy, args=(gateway.pid, window, profile), daemon=True)
        spy.start()
    try:
        asyncio.run(_gateway_run(gateway.port, window, run, args.max_jobs, args.drain))
    finally:
        window.over.set()
    sampler.join(130)
    if spy is not None:
        spy.join(130)
    run.phases_cpu_s = window.phases
    _spent(run, window)
    return run


# --- ComfyUI alone: one client keeping ``depth`` prompts queued --------------------------------


def run_direct(url: str, backend_pid: int, args: Any, round_no: int) -> Run:
    run = Run(DIRECT, round_no, 1, args.duration - args.warmup)
    run.load_before = load_average()
    window = Window(args.warmup, args.duration, {"backend": backend_pid})
    sampler = window.watch()
    node = SOLID.output_node
    with DirectClient(url, timeout_s=args.drain) as client:
        queued: dict[str, float] = {}
        outputs: dict[str, dict[str, Any]] = {}  # per prompt, as its executed messages say
        sent = 0

        def submit() -> None:
            nonlocal sent
            graph = SOLID.graph(SOLID.params(), prefix=f"direct/{uuid.uuid4().hex}/out")
            started = time.monotonic()
            queued[client.submit(graph)] = started
            sent += 1

        for _ in range(args.depth):
            submit()
        hard_end = window.closes + args.drain
        client.ws.settimeout(5)
        while queued and time.monotonic() < hard_end:
            try:
                opcode, payload = client.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            message = json.loads(payload)
            data = message.get("data") or {}
            prompt_id = data.get("prompt_id")
            kind = message.get("type")
            if prompt_id not in queued:
                continue
            if kind == "executed":
                outputs.setdefault(prompt_id, {})[str(data.get("node"))] = data.get("output")
                continue
            if kind not in ("execution_success", "execution_error", "execution_interrupted"):
                continue
            started = queued.pop(prompt_id)
            if window.sending() and sent < args.max_jobs:
                submit()  # first, so ComfyUI's queue stays full while this one is read
            try:
                if kind != "execution_success":
                    raise RuntimeError(f"{kind}: {data.get('exception_message')}")
                png = client.fetch(outputs.pop(prompt_id, {}), node)
                if not png.startswith(PNG_MAGIC):
                    raise RuntimeError("not a PNG")
            except (RuntimeError, requests.RequestException, KeyError, TypeError) as exc:
                run.error(str(exc))
                continue
            done = time.monotonic()
            run.total_completed += 1
            if window.counts(done):
                run.completed += 1
                run.latencies_s.append(done - started)
        for _ in queued:
            run.error("no answer before the drain ended")
    window.over.set()
    sampler.join(5)
    _spent(run, window)
    return run


def _spent(run: Run, window: Window) -> None:
    spent = window.cpu_spent
    if "gateway" in spent:
        run.gateway_cpu_s = spent["gateway"]
    run.backend_cpu_s = spent.get("backend", float("nan"))
    run.loadgen_cpu_s = spent.get("loadgen", float("nan"))
    run.load_after = load_average()


# --- the backend and the profile --------------------------------------------------------------


class Backend:
    """The real CPU ComfyUI this benchmark owns (emptied before each run), or one fake."""

    def __init__(self, real: bool, wd: Path) -> None:
        self.real = real
        self.wd = wd
        self.owned: OwnedComfyUI | None = None
        self.fakes: Fakes | None = None
        self.url = ""

    def __enter__(self) -> Backend:
        if self.real:
            self.owned = OwnedComfyUI(self.wd / "comfyui")
            self.url = self.owned.fresh()
        else:
            self.fakes = Fakes(self.wd)
            self.url = self.fakes.start().urls[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.stop()
        if self.fakes is not None:
            self.fakes.stop()

    @property
    def pid(self) -> int:
        if self.owned is not None:
            return self.owned.pid
        assert self.fakes is not None
        assert self.fakes.proc is not None
        return self.fakes.proc.pid

    def reset(self) -> None:
        if self.owned is not None:
            self.owned.reset()


def py_spy(pid: int, window: Window, out: Path) -> None:
    """``py-spy record --gil`` of the live gateway over the counted window, in collapsed-stack
    form (a line per stack and its sample count). Only the thread holding the GIL is sampled:
    with a thousand threads, sampling them all falls behind (py-spy took 75 s for 20 s)."""
    if not have_py_spy():
        print("  (py-spy is not installed in this venv: no stacks)", flush=True)
        return
    if not window.reached(window.opens + 1.0):  # after the threads' names
        return
    seconds = max(1, round(window.closes - time.monotonic()))
    cmd = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50"]
    cmd += ["--gil", "--nonblocking", "--format", "raw", "-o", str(out)]
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(cmd, capture_output=True, timeout=seconds + 120, check=False)


# --- the report -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--no-real", action="store_true", help="a fake ComfyUI instead of the real")
    p.add_argument("--clients", type=int, default=500, help="concurrent gateway clients")
    p.add_argument("--depth", type=int, default=8, help="prompts the direct client keeps queued")
    p.add_argument("--duration", type=float, default=40.0, help="seconds of sending per run")
    p.add_argument("--warmup", type=float, default=10.0, help="first seconds not counted")
    p.add_argument("--drain", type=float, default=120.0, help="seconds to finish, at most")
    p.add_argument("--rounds", type=int, default=2, help="runs of each contender, alternating")
    p.add_argument("--max-jobs", type=int, default=20_000, help="jobs per run, at most")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting (COMFYGATE_NAME), e.g. --set max_in_flight_per_backend=4",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="the gateway's CPU per phase (its threads) and py-spy stacks, in the first round",
    )
    args = p.parse_args(argv)
    real = not (args.quick or args.no_real)
    clients = 20 if args.quick else args.clients
    if args.quick:
        args.duration, args.warmup, args.rounds, args.depth = 3.0, 1.0, 1, 4
    settings = dict(item.split("=", 1) for item in args.set)
    report = Report(
        "throughput",
        f"Throughput: model-free generations at {clients} concurrent clients",
        args.out,
        args.quick,
    )
    runs: list[Run] = []
    with (
        work_dir("throughput") as wd,
        Backend(real, wd) as backend,
        Gateway([backend.url], wd, settings={**backend_dirs([backend.url]), **settings}) as gateway,
    ):
        report.extra_versions["ComfyUI"] = comfyui_version(backend.url) if real else "fake"
        gateway.start()
        _warm(gateway.url, backend.url)
        for round_no in range(1, args.rounds + 1):
            backend.reset()
            runs.append(run_direct(backend.url, backend.pid, args, round_no))
            _print(runs[-1])
            backend.reset()
            runs.append(run_gateway(gateway, backend.pid, args, round_no, clients))
            _print(runs[-1])
            _settle(gateway.url)
        stacks = wd / "gateway-stacks.txt"
        profiled: Run | None = None
        if args.profile:  # a run of its own: py-spy's CPU would slow the measured ones
            backend.reset()
            profiled = run_gateway(gateway, backend.pid, args, 0, clients, stacks)
            _print(profiled)
            _settle(gateway.url)
        command = gateway.command
        _tables(report, runs, args, clients, command)
        profile_rows = _profile(report, profiled, stacks) if profiled else {}
    report.data = {
        "runs": [
            {
                **asdict(r),
                "jobs_per_s": r.jobs_per_s,
                "latency": Summary.of(r.latencies_s).as_dict(),
            }
            for r in runs
        ],
        "clients": clients,
        "depth": args.depth,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "gateway_command": command,
        "ratio": _ratio(runs),
        "profile": profile_rows,
    }
    _plot(report, runs)
    return report.write()


def _warm(gateway_url: str, backend_url: str) -> None:
    """A few jobs each way first: imports, connection pools, ComfyUI's first run."""
    with requests.Session() as session:
        for _ in range(3):
            session.post(
                f"{gateway_url}/v1/generate", json=SOLID.body(SOLID.params()), timeout=60
            ).raise_for_status()
    with DirectClient(backend_url) as client:
        for _ in range(3):
            client.run(SOLID.graph(SOLID.params()), SOLID.output_node)


def _settle(gateway_url: str) -> None:
    """Until the gateway has no job left queued or running (a drained run leaves none)."""

    def idle() -> bool:
        try:
            found = requests.get(f"{gateway_url}/v1/backends", timeout=10).json()
        except (requests.RequestException, ValueError):
            return False
        rows = found.get("backends", [])
        return all(not b.get("jobs_in_flight") for b in rows if isinstance(b, dict))

    wait_until(idle, 60, 0.5)


def _print(run: Run) -> None:
    s = Summary.of(run.latencies_s)
    print(
        f"  round {run.round_no} {run.contender}: {run.completed} in {run.window_s:g} s = "
        f"{run.jobs_per_s:.1f} jobs/s, {run.errors} errors, p50 {s.median * 1000:.0f} ms, "
        f"p99 {s.p99 * 1000:.0f} ms, CPU/job gateway {run.per_job_ms(run.gateway_cpu_s):.1f} ms"
        f" backend {run.per_job_ms(run.backend_cpu_s):.1f} ms; load {run.load_before}",
        flush=True,
    )


def _totals(runs: list[Run], contender: str) -> tuple[int, float]:
    mine = [r for r in runs if r.contender == contender]
    return sum(r.completed for r in mine), sum(r.window_s for r in mine)


def _ratio(runs: list[Run]) -> float:
    ours, ours_s = _totals(runs, OURS)
    direct, direct_s = _totals(runs, DIRECT)
    if not (ours_s and direct and direct_s):
        return float("nan")
    return (ours / ours_s) / (direct / direct_s)


def _tables(report: Report, runs: list[Run], args: Any, clients: int, command: str) -> None:
    rows = []
    for r in runs:
        s = Summary.of(r.latencies_s)
        rows.append(
            [
                r.round_no,
                r.contender,
                r.clients if r.contender == OURS else f"1 ({args.depth} queued)",
                r.completed,
                fmt(r.jobs_per_s, 1),
                r.errors,
                fmt(s.median * 1000, 0),
                fmt(s.p99 * 1000, 0),
                fmt(r.per_job_ms(r.gateway_cpu_s), 1),
                fmt(r.per_job_ms(r.backend_cpu_s), 1),
                fmt(r.per_job_ms(r.loadgen_cpu_s), 2),
                r.load_before,
            ]
        )
    report.table(
        f"Model-free generations (solid 64x64), {args.duration - args.warmup:g} s counted per "
        f"run after {args.warmup:g} s of warm-up",
        [
            "round",
            "contender",
            "clients",
            "jobs in window",
            "jobs/s",
            "errors",
            "p50 ms",
            "p99 ms",
            "gateway CPU ms/job",
            "ComfyUI CPU ms/job",
            "load generator CPU ms/job",
            "load average (1/5/15 min) before",
        ],
        rows,
    )
    summary = []
    for contender in (DIRECT, OURS):
        jobs, seconds = _totals(runs, contender)
        mine = [r for r in runs if r.contender == contender]
        summary.append(
            [
                contender,
                jobs,
                fmt(jobs / seconds if seconds else float("nan"), 1),
                sum(r.errors for r in mine),
                "1.00" if contender == DIRECT else fmt(_ratio(runs), 2),
            ]
        )
    report.table(
        "All rounds together",
        ["contender", "jobs", "jobs/s", "errors", "ratio to ComfyUI alone"],
        summary,
    )
    samples = sorted({e for r in runs for e in r.error_samples})
    if samples:
        report.note("Errors seen (first few):\n\n" + "\n".join(f"- `{e}`" for e in samples))
    report.note(
        f"Gateway command: `{command}`. p50/p99 are one job's time from sending to having its "
        "PNG (closed loop: about clients / throughput for the gateway, depth / throughput for "
        "the direct client). CPU per job is user + system time from /proc over the counted "
        "window, divided by the jobs in it."
    )


def _profile(report: Report, run: Run, stacks: Path) -> dict[str, Any]:
    """The gateway's CPU per job by phase (a run of its own, under py-spy), and what held
    its GIL."""
    if not run.phases_cpu_s:
        return {}
    total = sum(run.phases_cpu_s.values())
    gil = phase_totals(stacks)
    rows = [
        [
            phase,
            fmt(run.per_job_ms(seconds), 2),
            fmt(seconds * 100 / total if total else float("nan"), 0),
            fmt(gil.get(phase, float("nan")), 0),
        ]
        for phase, seconds in sorted(run.phases_cpu_s.items(), key=lambda kv: -kv[1])
    ]
    rows.append(["all", fmt(run.per_job_ms(total), 2), "100", "100" if gil else "-"])
    report.table(
        f"The gateway's CPU per job by phase (a run of its own under py-spy: {run.completed} "
        f"jobs in the window, {fmt(run.jobs_per_s, 1)} jobs/s, load {run.load_before})",
        ["phase (the threads that run it)", "CPU ms/job", "% of the gateway's CPU", "% of GIL"],
        rows,
    )
    top = stack_summary(stacks)
    if top:
        report.table(
            "What held the GIL most, per phase (py-spy record --gil; % of all samples)",
            ["phase", "function (innermost gateway frame > innermost frame)", "% of samples"],
            [[phase, f"`{where}`", fmt(share, 1)] for phase, where, share in top],
        )
    return {
        "run": {**asdict(run), "jobs_per_s": run.jobs_per_s},
        "cpu_s_by_phase": run.phases_cpu_s,
        "gil_percent_by_phase": gil,
        "gil_top": [list(row) for row in top],
    }


def _plot(report: Report, runs: list[Run]) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [
        f"{'direct' if r.contender == DIRECT else 'ComfyGate'}\nround {r.round_no}" for r in runs
    ]
    colours = ["tab:gray" if r.contender == DIRECT else "tab:blue" for r in runs]
    left.bar(range(len(runs)), [r.jobs_per_s for r in runs], color=colours)
    left.set_xticks(range(len(runs)), labels, fontsize=8)
    left.set_ylabel("jobs/s")
    left.set_title(f"Throughput (ComfyGate / ComfyUI alone: {_ratio(runs):.2f}x)")
    left.grid(axis="y", alpha=0.3)
    width = 0.4
    xs = range(len(runs))
    right.bar(
        [x - width / 2 for x in xs],
        [r.per_job_ms(r.backend_cpu_s) for r in runs],
        width,
        label="ComfyUI",
        color="tab:orange",
    )
    right.bar(
        [x + width / 2 for x in xs],
        [r.per_job_ms(r.gateway_cpu_s) for r in runs],
        width,
        label="gateway",
        color="tab:blue",
    )
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set_ylabel("CPU ms per job")
    right.set_title("CPU per job, by process")
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
