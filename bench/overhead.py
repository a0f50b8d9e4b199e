"""Overhead: one synchronous generation end to end through the gateway, against an optimal
direct ComfyUI client (websocket, one /history read, /view) and against the peer users would
pick (Comfy-Org's comfy-api-proxy driven by comfy-sdk), on the same ComfyUI.

Runs interleave (the order of the tools rotates every round) so machine noise falls on all
alike. The difference to the direct client is taken per round, then its median and p99.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Deadline,
    Gateway,
    PeerClient,
    Report,
    Summary,
    add_real_options,
    backend_dirs,
    comfy_backend,
    comfyui_version,
    fmt,
    parser,
    peer_session,
    peer_versions,
    pyplot,
    save_figure,
    work_dir,
)
from bench.direct_client import DirectClient
from bench.gateway_client import PNG_MAGIC, generate
from bench.workloads import SOLID, Workload, sd15

DIRECT = "direct client (optimal)"
# A second direct client in the same rounds: what it "adds" over the first is the benchmark's
# own noise (ComfyUI's job-to-job spread, the machine), the floor under any tool's figures.
DIRECT_AGAIN = "direct client again (the noise floor)"
OURS = "ComfyGate (comfygate serve)"
OURS_VIEW = "ComfyGate, outputs through /view (no BACKEND_DIRS)"
PEER = "comfy-api-proxy + comfy-sdk"

Runner = Callable[[Workload], float]  # one run; returns seconds; raises on a wrong answer


def _direct(client: DirectClient) -> Runner:
    def run(workload: Workload) -> float:
        import time

        graph = workload.graph(workload.params())
        started = time.perf_counter()
        data = client.run(graph, workload.output_node)
        elapsed = time.perf_counter() - started
        if not data.startswith(PNG_MAGIC):
            raise RuntimeError("direct: not a PNG")
        return elapsed

    return run


def _ours(session: requests.Session, url: str) -> Runner:
    def run(workload: Workload) -> float:
        result = generate(session, url, workload.body(workload.params()))
        if not result.ok:
            raise RuntimeError(f"gateway: {result.error}")
        return result.elapsed_s

    return run


def _peer(client: PeerClient) -> Runner:
    def run(workload: Workload) -> float:
        answer = client.run(workload.graph(workload.params()), workload.output_node)
        if not (answer.get("ok") and answer.get("png")):
            raise RuntimeError(f"peer: {answer.get('error') or answer}")
        return float(answer["elapsed_s"])

    return run


def measure(
    runners: dict[str, Runner], workload: Workload, n: int, warmup: int, budget_s: float
) -> tuple[dict[str, list[float]], dict[str, int], bool]:
    """``n`` interleaved rounds; returns times per tool, failures per tool, and whether the
    time budget cut the rounds short."""
    names = list(runners)
    for _, name in itertools.product(range(warmup), names):
        try:
            runners[name](workload)
        except Exception as exc:  # the peer's own race can end a warm-up run: not counted
            print(f"  warm-up, {name}: {exc}")
    times: dict[str, list[float]] = {name: [] for name in names}
    failures = dict.fromkeys(names, 0)
    deadline = Deadline(budget_s)
    for round_no in range(n):
        if deadline.passed:
            return times, failures, True
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            try:
                times[name].append(runners[name](workload))
            except Exception as exc:
                failures[name] += 1
                times[name].append(float("nan"))
                print(f"  {name}: {exc}")
        print(
            f"  {workload.template} round {round_no + 1}/{n}: "
            + ", ".join(f"{k.split()[0]} {times[k][-1] * 1000:.0f} ms" for k in order),
            flush=True,
        )
    return times, failures, False


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    add_real_options(p)
    p.add_argument("--n", type=int, default=20, help="rounds of the model-free workload")
    p.add_argument("--n-sd", type=int, default=5, help="rounds of the SD 1.5 workload")
    p.add_argument("--steps", type=int, default=2, help="SD 1.5 sampling steps")
    p.add_argument("--budget", type=float, default=420.0, help="seconds per workload at most")
    p.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of ComfyGate (with its own .venv, e.g. a git worktree of an "
        "older commit) measured in the same interleaved rounds: before/after in one run",
    )
    p.add_argument(
        "--noise-floor",
        action="store_true",
        help="a second direct client in the rounds: what it adds over the first is the noise",
    )
    args = p.parse_args(argv)
    real = not (args.quick or args.no_real)
    n_solid = 3 if args.quick else args.n
    report = Report("overhead", "Overhead of one synchronous generation", args.out, args.quick)
    rows: list[list[object]] = []
    results: dict[str, Any] = {}
    want_peer = not (args.no_peer or not real)
    with (
        contextlib.ExitStack() as stack,
        work_dir("overhead") as wd,
        comfy_backend(real, args.comfyui_url, wd) as comfy_url,
        Gateway([comfy_url], wd, settings=backend_dirs([comfy_url])) as gateway,
        DirectClient(comfy_url) as direct,
        peer_session(comfy_url, wd, want_peer) as (peer, peer_note),
    ):
        report.extra_versions["ComfyUI"] = comfyui_version(comfy_url) if real else "fake"
        workloads: list[tuple[Workload, int]] = [(SOLID, n_solid)]
        if real:
            workloads.append((sd15(args.steps), args.n_sd))
        gateway.start()
        session = requests.Session()
        runners: dict[str, Runner] = {DIRECT: _direct(direct), OURS: _ours(session, gateway.url)}
        if args.noise_floor:
            runners[DIRECT_AGAIN] = _direct(stack.enter_context(DirectClient(comfy_url)))
        if backend_dirs([comfy_url]):  # a ComfyUI started here: also the gateway of a remote one
            via_view = stack.enter_context(Gateway([comfy_url], wd))
            via_view.start()
            runners[OURS_VIEW] = _ours(session, via_view.url)
        if args.baseline is not None:
            # The same settings as ours (a checkout from before BACKEND_DIRS ignores it, and
            # reads its outputs through /view as it always did).
            base = stack.enter_context(
                Gateway(
                    [comfy_url],
                    wd,
                    settings=backend_dirs([comfy_url]),
                    executable=str(args.baseline / ".venv" / "bin" / "comfygate"),
                )
            )
            base.start()
            runners[f"{OURS}, baseline {_describe(args.baseline)}"] = _ours(session, base.url)
        if peer is not None:
            runners[PEER] = _peer(peer)
            report.extra_versions.update(peer_versions())
        for workload, n in workloads:
            if n <= 0:
                continue
            times, failures, cut = measure(runners, workload, n, warmup=1, budget_s=args.budget)
            results[workload.name] = {"times_s": times, "failures": failures, "cut_by_budget": cut}
            rows += _rows(workload, times, failures)
            if cut:
                report.note(f"{workload.name}: time budget reached, fewer rounds.")
        report.note(f"Gateway command: `{gateway.command}`.")
        if peer_note:
            report.note(f"Peer not measured: {peer_note}.")
    report.table(
        "End-to-end time of one generation (ms); overhead = this tool minus the direct client "
        "in the same round",
        [
            "workload",
            "tool",
            "runs",
            "failed",
            "median",
            "p99",
            "overhead median",
            "overhead p99",
            "ratio (median / direct median)",
        ],
        rows,
    )
    report.data = results
    _plot(report, results)
    return report.write()


def _describe(checkout: Path) -> str:
    """The commit a baseline checkout is at."""
    found = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or checkout.name


def _rows(
    workload: Workload, times: dict[str, list[float]], failures: dict[str, int]
) -> list[list[object]]:
    rows: list[list[object]] = []
    base = times[DIRECT]
    base_median = Summary.of([t for t in base if t == t]).median
    for name, values in times.items():
        good = [t for t in values if t == t]
        s = Summary.of(good)
        diffs = [a - b for a, b in zip(values, base, strict=True) if a == a and b == b]
        d = Summary.of(diffs)
        is_base = name == DIRECT
        rows.append(
            [
                workload.name,
                name,
                s.n,
                failures[name],
                fmt(s.median * 1000),
                fmt(s.p99 * 1000),
                "-" if is_base else fmt(d.median * 1000),
                "-" if is_base else fmt(d.p99 * 1000),
                "1.00" if is_base else fmt(s.median / base_median, 2),
            ]
        )
    return rows


def _plot(report: Report, results: dict[str, Any]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        times: dict[str, list[float]] = result["times_s"]
        labels = list(times)
        data = [[t * 1000 for t in times[k] if t == t] for k in labels]
        ax.boxplot(data, showfliers=True)
        ticks = [
            k.split(" (")[0] + (f"\n{k.rsplit(', ', 1)[1]}" if ", baseline" in k else "")
            for k in labels
        ]
        ax.set_xticks(range(1, len(labels) + 1), ticks, fontsize=8)
        ax.set_ylabel("end-to-end time per job (ms)")
        ax.set_title(name)
        if (
            max((max(d) for d in data if d), default=1)
            / max(min((min(d) for d in data if d), default=1), 1e-3)
            > 20
        ):
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
