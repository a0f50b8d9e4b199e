"""Repetition: many consecutive model-free jobs through the gateway (and the peer), counting
wrong endings (a failure, a wrong status, a missing or broken output) and slow outliers (runs
over 10x the median). Ours and the peer alternate job by job on the same ComfyUI.
"""

from __future__ import annotations

import time
from pathlib import Path

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
from bench.gateway_client import generate
from bench.workloads import SOLID

OURS = "ComfyGate"
PEER = "comfy-api-proxy + comfy-sdk"


def _ours(session: requests.Session, url: str) -> tuple[float, str]:
    """One job; returns (seconds, '' or what was wrong)."""
    result = generate(session, url, SOLID.body(SOLID.params()))
    if not result.ok:
        return result.elapsed_s, result.error or f"HTTP {result.status}"
    job = session.get(f"{url}/v1/jobs/{result.job_id}", timeout=30).json()
    if job.get("status") != "succeeded":
        return result.elapsed_s, f"status {job.get('status')}"
    if len(job.get("outputs") or []) != 1 or job["outputs"][0].get("size") != result.size:
        return result.elapsed_s, "missing output"
    return result.elapsed_s, ""


def _peer(client: PeerClient) -> tuple[float, str]:
    answer = client.run(SOLID.graph(SOLID.params()), SOLID.output_node)
    elapsed = float(answer.get("elapsed_s", 0.0))
    if not answer.get("ok"):
        return elapsed, str(answer.get("error"))
    if answer.get("status") not in ("succeeded", "JobStatus.succeeded"):
        return elapsed, f"status {answer.get('status')}"
    if not answer.get("png") or not answer.get("bytes"):
        return elapsed, "missing output"
    return elapsed, ""


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    add_real_options(p)
    p.add_argument("--n", type=int, default=1000, help="jobs per tool")
    p.add_argument("--budget", type=float, default=600.0, help="seconds at most")
    args = p.parse_args(argv)
    real = not (args.quick or args.no_real)
    n = 20 if args.quick else args.n
    report = Report("repetition", f"Repetition: {n} consecutive jobs", args.out, args.quick)
    times: dict[str, list[float]] = {OURS: []}
    errors: dict[str, list[str]] = {OURS: []}
    cut = False
    with (
        work_dir("repetition") as wd,
        comfy_backend(real, args.comfyui_url, wd) as comfy_url,
        Gateway([comfy_url], wd, settings=backend_dirs([comfy_url])) as gateway,
        peer_session(comfy_url, wd, real and not args.no_peer) as (peer, peer_note),
    ):
        report.extra_versions["ComfyUI"] = comfyui_version(comfy_url) if real else "fake"
        gateway.start()
        session = requests.Session()
        if peer is not None:
            times[PEER], errors[PEER] = [], []
            report.extra_versions.update(peer_versions())
        for _ in range(3):  # warm-up, not counted
            _ours(session, gateway.url)
            if peer is not None:
                _peer(peer)
        deadline = Deadline(args.budget)
        started = time.monotonic()
        for i in range(n):
            if deadline.passed:
                cut = True
                break
            order = [OURS, PEER] if i % 2 == 0 else [PEER, OURS]
            for tool in order:
                if tool == OURS:
                    elapsed, wrong = _ours(session, gateway.url)
                elif peer is not None:
                    elapsed, wrong = _peer(peer)
                else:
                    continue
                times[tool].append(elapsed)
                if wrong:
                    errors[tool].append(f"job {i}: {wrong}")
            if (i + 1) % 100 == 0:
                print(
                    f"  {i + 1}/{n} jobs per tool, {time.monotonic() - started:.0f} s", flush=True
                )
        report.note(f"Gateway command: `{gateway.command}`.")
        if peer_note:
            report.note(f"Peer not measured: {peer_note}.")
    if cut:
        report.note(f"The {args.budget:.0f} s budget ended the run after {len(times[OURS])} jobs.")
    rows = []
    for tool, values in times.items():
        s = Summary.of(values)
        slow = [t for t in values if t > 10 * s.median]
        rows.append(
            [
                tool,
                s.n,
                len(errors[tool]),
                len(slow),
                fmt(s.median * 1000),
                fmt(s.p99 * 1000),
                fmt(s.maximum * 1000),
            ]
        )
    report.table(
        f"{SOLID.name}, consecutive jobs against {'the real' if real else 'a fake'} ComfyUI",
        ["tool", "jobs", "wrong endings", "runs > 10x median", "median ms", "p99 ms", "max ms"],
        rows,
    )
    for tool, messages in errors.items():
        if messages:
            report.note(f"{tool} wrong endings (first 10): " + "; ".join(messages[:10]))
    report.data = {"times_s": times, "errors": errors, "cut_by_budget": cut}
    _plot(report, times)
    return report.write()


def _plot(report: Report, times: dict[str, list[float]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for tool, values in times.items():
        ms = [t * 1000 for t in values]
        ax.scatter(range(len(ms)), ms, s=4, label=tool)
        median = Summary.of(ms).median
        ax.axhline(10 * median, linestyle="--", linewidth=0.8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("job number")
    ax.set_ylabel("end-to-end time (ms, log)")
    ax.set_title("Consecutive model-free jobs (dashed: 10x each tool's median)")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
