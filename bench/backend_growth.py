"""Backend growth: does a backend get slower the more jobs the gateway has run on it?

ComfyUI's SaveImage lists the folder of its ``filename_prefix`` to number each new file, so
files left in one flat output folder slow every later job. For each way of naming a job's
outputs, on a ComfyUI started fresh with empty input/output/temp folders:

1. the direct client's model-free round trip (``bench.direct_client``, SaveImage into the
   output folder itself, as any client would), ``--rounds`` times;
2. ``--jobs`` model-free jobs (solid 64x64, a fresh colour each):
   * before: the graph the gateway sent until this change (``filename_prefix``
     ``comfygate_<job id>``, every file in the output folder itself), sent straight to
     ComfyUI (pipelined, ``--depth`` in flight): the backend sees exactly what the old
     gateway sent it;
   * after: through the gateway (``comfygate serve --backend URL``, a remote backend: nothing
     swept), ``--clients`` synchronous clients, each job in ``comfygate/<job id>/``;
3. the direct client's round trip again.

The direct client's own files are removed between 1 and 2, so both measurements start from
what the jobs left. ComfyUI is restarted between the two modes (its history too is fresh).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Fakes,
    Gateway,
    OwnedComfyUI,
    Report,
    Summary,
    comfyui_version,
    fmt,
    parser,
    pyplot,
    save_figure,
    work_dir,
)
from bench.direct_client import DirectClient
from bench.gateway_client import PNG_MAGIC, generate
from bench.workloads import SOLID

BEFORE = "before: flat comfygate_<job id>"
AFTER = "after: comfygate/<job id>/out (via the gateway)"
DIRECT_PREFIX = "bench_direct"


class RealBackend(OwnedComfyUI):
    """The local CPU ComfyUI on a base dir this benchmark owns, so it can empty it."""

    def remove_direct_files(self) -> None:
        for path in (self.base_dir / "output").glob(f"{DIRECT_PREFIX}_*"):
            path.unlink()

    def census(self) -> tuple[int, int]:
        """(entries in the output folder itself, files under it in all)."""
        output = self.base_dir / "output"
        top = sum(1 for _ in output.iterdir()) if output.is_dir() else 0
        return top, sum(1 for p in output.rglob("*") if p.is_file())


class FakeBackend:
    """Quick mode: a fake ComfyUI (its folders in memory), a new one for each mode."""

    def __init__(self, wd: Path) -> None:
        self.wd = wd
        self.fakes: Fakes | None = None
        self.url = ""

    def fresh(self) -> str:
        self.stop()
        self.fakes = Fakes(self.wd)
        self.url = self.fakes.start().urls[0]
        return self.url

    def remove_direct_files(self) -> None:
        pass

    def census(self) -> tuple[int, int]:
        return -1, -1  # not visible from outside the fake

    def stop(self) -> None:
        if self.fakes is not None:
            self.fakes.stop()
            self.fakes = None


def round_trips(url: str, rounds: int, warmup: int) -> list[float]:
    """The direct client's model-free round trip, sequentially, ``rounds`` times."""
    times: list[float] = []
    with DirectClient(url) as client:
        for i in range(warmup + rounds):
            graph = SOLID.graph(SOLID.params(), prefix=DIRECT_PREFIX)
            started = time.perf_counter()
            data = client.run(graph, SOLID.output_node)
            elapsed = time.perf_counter() - started
            if not data.startswith(PNG_MAGIC):
                raise RuntimeError("direct: not a PNG")
            if i >= warmup:
                times.append(elapsed)
    return times


def fill_flat(url: str, jobs: int, depth: int) -> list[float]:
    """``jobs`` graphs as the old gateway bound them, pipelined; seconds per job in batches."""
    per_job: list[float] = []
    with DirectClient(url) as client:
        done = 0
        while done < jobs:
            batch = min(depth, jobs - done)
            started = time.perf_counter()
            ids = [
                client.submit(SOLID.graph(SOLID.params(), prefix=f"comfygate_{uuid.uuid4().hex}"))
                for _ in range(batch)
            ]
            for prompt_id in ids:
                client.wait(prompt_id)
            per_job += [(time.perf_counter() - started) / batch] * batch
            done += batch
            _progress(done, jobs)
    return per_job


def fill_gateway(url: str, jobs: int, clients: int) -> tuple[list[float], int]:
    """``jobs`` POST /v1/generate from ``clients`` threads; wall seconds per job (in order
    of completion, over ``clients`` at a time) and the failures."""
    lock = threading.Lock()
    finished: list[float] = []
    failures = 0
    remaining = iter(range(jobs))
    started = time.perf_counter()

    def worker() -> None:
        nonlocal failures
        session = requests.Session()
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            result = generate(session, url, SOLID.body(SOLID.params()))
            with lock:
                finished.append(time.perf_counter())
                failures += not result.ok
                if len(finished) % 500 == 0:
                    _progress(len(finished), jobs)

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(worker)
    times = [b - a for a, b in zip([started, *finished], finished, strict=False)]
    return times, failures


def tenths(values: list[float]) -> list[float]:
    """The median of each tenth of ``values``, in order: the fill's pace as it went."""
    size = max(1, len(values) // 10)
    return [Summary.of(values[i : i + size]).median for i in range(0, len(values), size)][:10]


def _progress(done: int, total: int) -> None:
    if done % 500 == 0 or done == total:
        print(f"  {done:,}/{total:,} jobs", flush=True)


@contextmanager
def backend_for(real: bool, wd: Path) -> Iterator[RealBackend | FakeBackend]:
    backend: RealBackend | FakeBackend = RealBackend(wd / "comfyui") if real else FakeBackend(wd)
    try:
        yield backend
    finally:
        backend.stop()


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    p.add_argument("--no-real", action="store_true", help="a fake ComfyUI instead of the real")
    p.add_argument("--jobs", type=int, default=10_000, help="jobs run between the measurements")
    p.add_argument("--rounds", type=int, default=200, help="direct round trips per measurement")
    p.add_argument("--clients", type=int, default=4, help="gateway clients while filling")
    p.add_argument("--depth", type=int, default=16, help="prompts in flight, old-prefix fill")
    args = p.parse_args(argv)
    real = not (args.quick or args.no_real)
    jobs = 40 if args.quick else args.jobs
    rounds = 10 if args.quick else args.rounds
    warmup = 2 if args.quick else 20
    report = Report(
        "backend_growth",
        f"Backend growth: the direct round trip before and after {jobs:,} jobs",
        args.out,
        args.quick,
    )
    results: dict[str, Any] = {}
    with work_dir("backend_growth") as wd, backend_for(real, wd) as backend:
        for mode in (BEFORE, AFTER):
            print(f"\n{mode}", flush=True)
            url = backend.fresh()
            report.extra_versions["ComfyUI"] = comfyui_version(url) if real else "fake"
            fresh = round_trips(url, rounds, warmup)
            backend.remove_direct_files()
            failures = 0
            command = ""
            if mode == BEFORE:
                started = time.perf_counter()
                fill = fill_flat(url, jobs, args.depth)
                fill_s = time.perf_counter() - started
            else:
                with Gateway([url], wd) as gateway:
                    gateway.start()
                    command = gateway.command
                    started = time.perf_counter()
                    fill, failures = fill_gateway(gateway.url, jobs, args.clients)
                    fill_s = time.perf_counter() - started
            top, files = backend.census()
            after = round_trips(url, rounds, warmup)
            results[mode] = {
                "fresh_s": fresh,
                "after_s": after,
                "fill_s": fill_s,
                "fill_failures": failures,
                "fill_s_per_job_by_tenth": tenths(fill),
                "output_top_entries": top,
                "output_files": files,
                "gateway_command": command,
            }
    rows = []
    for mode, r in results.items():
        s0, s1 = Summary.of(r["fresh_s"]), Summary.of(r["after_s"])
        first, last = r["fill_s_per_job_by_tenth"][0], r["fill_s_per_job_by_tenth"][-1]
        rows.append(
            [
                mode,
                fmt(s0.median * 1000, 2),
                fmt(s0.p99 * 1000, 2),
                fmt(s1.median * 1000, 2),
                fmt(s1.p99 * 1000, 2),
                f"{(s1.median / s0.median - 1) * 100:+.0f} %",
                f"{jobs:,} in {fmt(r['fill_s'], 0)} s ({r['fill_failures']} failed)",
                f"{fmt(first * 1000, 1)} -> {fmt(last * 1000, 1)}",
                "-" if r["output_top_entries"] < 0 else f"{r['output_top_entries']:,}",
                "-" if r["output_files"] < 0 else f"{r['output_files']:,}",
            ]
        )
    report.table(
        f"Direct client's model-free round trip (ms, {rounds} sequential runs after {warmup} "
        "warm-up) on a fresh ComfyUI, then after the jobs",
        [
            "job outputs",
            "fresh median",
            "fresh p99",
            "after median",
            "after p99",
            "change (median)",
            "jobs run",
            "ms per job, first -> last tenth",
            "entries in output/",
            "files under output/",
        ],
        rows,
    )
    report.note(
        "The direct client writes into the output folder itself (prefix "
        f"`{DIRECT_PREFIX}`), so its SaveImage lists that folder as any client's would. "
        "'ms per job' is the fill's own pace (before: straight to ComfyUI, "
        f"{args.depth} in flight; after: through the gateway, {args.clients} clients)."
    )
    command = results[AFTER]["gateway_command"]
    if command:
        report.note(f"Gateway command: `{command}`.")
    report.data = results
    _plot(report, results)
    return report.write()


def _plot(report: Report, results: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    data, labels = [], []
    for mode, r in results.items():
        short = mode.split(":")[0]
        data += [[t * 1000 for t in r["fresh_s"]], [t * 1000 for t in r["after_s"]]]
        labels += [f"{short}\nfresh", f"{short}\nafter the jobs"]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylabel("direct client's model-free round trip (ms)")
    ax.set_title("A backend after the gateway's jobs: flat output folder vs one folder per job")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
