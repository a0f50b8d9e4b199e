"""Completion latency: from ComfyUI finishing a job to the client holding the answer.

"Finishing" is ComfyUI's own ``execution_success`` timestamp in ``/history`` (same machine,
same clock as the client's ``time.time()`` when the image bytes are in hand). Compared: the
gateway (websocket events, one /history read, the file streamed into storage, the waiting
request woken), a simple polling client (``bench/polling_client.py``: /history every 1 s),
the optimal direct client, and the peer (comfy-sdk polls with a backoff from 0.5 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench import polling_client
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
from bench.gateway_client import generate
from bench.workloads import SOLID
from comfygate.comfy.folders import job_output_prefix

OURS = "ComfyGate"
POLLING = "polling client (1 s)"
DIRECT = "direct client (websocket)"
PEER = "comfy-api-proxy + comfy-sdk"

# One run: returns (ComfyUI prompt id or our job id for lookup, answered_at).
Runner = Callable[[], tuple[str, float]]


def finished_at(comfy_url: str, prompt_id: str) -> float | None:
    """ComfyUI's execution_success time for a prompt (seconds since the epoch)."""
    data = requests.get(f"{comfy_url}/history/{prompt_id}", timeout=30).json()
    return _success_time(data.get(prompt_id))


def finished_at_by_job(comfy_url: str, job_id: str) -> float | None:
    """The same for the gateway's job, found by its output folder (one per job)."""
    folder = job_output_prefix(job_id).rsplit("/", 1)[0]
    data = requests.get(f"{comfy_url}/history", params={"max_items": 50}, timeout=30).json()
    for entry in data.values():
        for node in (entry.get("outputs") or {}).values():
            for image in node.get("images") or []:
                if str(image.get("subfolder", "")) == folder:
                    return _success_time(entry)
    return None


def _success_time(entry: Any) -> float | None:
    if not isinstance(entry, dict):
        return None
    for name, data in (entry.get("status") or {}).get("messages") or []:
        if name == "execution_success" and isinstance(data, dict) and "timestamp" in data:
            return float(data["timestamp"]) / 1000.0
    return None


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__ or "")
    add_real_options(p)
    p.add_argument("--n", type=int, default=20, help="jobs per tool")
    p.add_argument("--budget", type=float, default=300.0, help="seconds at most")
    args = p.parse_args(argv)
    real = not (args.quick or args.no_real)
    n = 3 if args.quick else args.n
    report = Report(
        "completion",
        "Completion latency: ComfyUI done -> client has the answer",
        args.out,
        args.quick,
    )
    latencies: dict[str, list[float]] = {}
    with (
        work_dir("completion") as wd,
        comfy_backend(real, args.comfyui_url, wd) as comfy_url,
        Gateway([comfy_url], wd, settings=backend_dirs([comfy_url])) as gateway,
        DirectClient(comfy_url) as direct,
        peer_session(comfy_url, wd, real and not args.no_peer) as (peer, peer_note),
    ):
        report.extra_versions["ComfyUI"] = comfyui_version(comfy_url) if real else "fake"
        gateway.start()
        session = requests.Session()
        poll_session = requests.Session()

        def ours() -> tuple[str, float]:
            result = generate(session, gateway.url, SOLID.body(SOLID.params()))
            if not result.ok:
                raise RuntimeError(result.error)
            return result.job_id, result.answered_at

        def polling() -> tuple[str, float]:
            graph = SOLID.graph(SOLID.params())
            result = polling_client.run(comfy_url, graph, SOLID.output_node, session=poll_session)
            return result.prompt_id, result.answered_at

        def direct_run() -> tuple[str, float]:
            prompt_id = direct.submit(SOLID.graph(SOLID.params()))
            direct.fetch(direct.wait(prompt_id), SOLID.output_node)
            return prompt_id, time.time()

        runners: dict[str, Runner] = {OURS: ours, POLLING: polling, DIRECT: direct_run}
        if peer is not None:
            runners[PEER] = _peer_runner(peer)
            report.extra_versions.update(peer_versions())
        for name, run in runners.items():  # warm-up, not counted (a peer's failure too)
            try:
                run()
            except Exception as exc:
                print(f"  {name} (warm-up): {exc}", flush=True)
        latencies = {name: [] for name in runners}
        failures = dict.fromkeys(runners, 0)
        names = list(runners)
        deadline = Deadline(args.budget)
        for i in range(n):
            if deadline.passed:
                report.note("The time budget ended the run early.")
                break
            for name in names[i % len(names) :] + names[: i % len(names)]:
                try:
                    key, answered = runners[name]()
                    done = (
                        finished_at_by_job(comfy_url, key)
                        if name == OURS
                        else finished_at(comfy_url, key)
                    )
                    if done is None:
                        raise RuntimeError("no execution_success in /history")
                    latencies[name].append(answered - done)
                except Exception as exc:
                    failures[name] += 1
                    print(f"  {name}: {exc}", flush=True)
        report.note(f"Gateway command: `{gateway.command}`.")
        if peer_note:
            report.note(f"Peer not measured: {peer_note}.")
    rows = []
    for name, values in latencies.items():
        s = Summary.of(values)
        rows.append(
            [name, s.n, failures[name], fmt(s.median * 1000), fmt(s.p99 * 1000), fmt(s.mean * 1000)]
        )
    report.table(
        f"{SOLID.name}: ComfyUI's execution_success -> image bytes in the client (ms)",
        ["client", "jobs", "failed", "median", "p99", "mean"],
        rows,
    )
    report.data = {"latency_s": latencies}
    _plot(report, latencies)
    return report.write()


def _peer_runner(peer: PeerClient) -> Runner:
    def run() -> tuple[str, float]:
        answer = peer.run(SOLID.graph(SOLID.params()), SOLID.output_node)
        if not answer.get("ok"):
            raise RuntimeError(str(answer.get("error")))
        return str(answer["job_id"]), float(answer["answered_at"])

    return run


def _plot(report: Report, latencies: dict[str, list[float]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = list(latencies)
    medians = [Summary.of(latencies[k]).median * 1000 for k in labels]
    p99s = [Summary.of(latencies[k]).p99 * 1000 for k in labels]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], medians, width=0.4, label="median")
    ax.bar([i + 0.2 for i in x], p99s, width=0.4, label="p99")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("ComfyUI done -> client has the image (ms)")
    ax.set_title("Completion latency (lower is better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, report.figure())


if __name__ == "__main__":
    main()
