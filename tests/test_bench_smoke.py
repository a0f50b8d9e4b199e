"""The benchmark suite must not rot: each benchmark runs in --quick mode (tiny sizes, fake
ComfyUI only, no real ComfyUI, no peer) and must write its Markdown table, its PNG plot and
its JSON figures. Nothing here asserts a time: the figures are for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = [
    "overhead",
    "phases",
    "completion",
    "repetition",
    "load",
    "concurrency",
    "scaling",
    "growth",
    "backend_growth",
    "replicas",
    "throughput",
]
REAL_PARTS = {"overhead", "phases", "completion", "repetition"}  # have --no-real / --no-peer

pytest.importorskip("matplotlib", reason="the bench extra (matplotlib) is not installed")


def run_quick(name: str, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out)]
    if name in REAL_PARTS:
        cmd += ["--no-real", "--no-peer"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_quick_mode_writes_its_table_and_plot(name: str, tmp_path: Path) -> None:
    proc = run_quick(name, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / f"{name}.md").read_text()
    assert "|---|" in report  # a Markdown table
    assert "- machine:" in report
    assert "- command:" in report
    assert f"]({name}.png)" in report  # the plot, linked
    if name == "load":  # and the cache hits against the static file, with both series
        assert "](load-cache.png)" in report
        # Job reads against the same job object answered by a bare Flask app.
        assert "Job reads against a bare Flask JSON answer of the same size" in report
        assert (tmp_path / "load-cache.png").read_bytes().startswith(b"\x89PNG")
    png = tmp_path / f"{name}.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert record["quick"] is True
    assert record["data"]
    if name == "throughput":  # both contenders finished jobs, none failed, a ratio came out
        runs = record["data"]["runs"]
        assert {r["contender"] for r in runs} == {
            "ComfyUI alone, one pipelining client",
            "ComfyGate (comfygate serve), sync POST /v1/generate",
        }
        assert all(r["completed"] > 0 and r["errors"] == 0 for r in runs)
        assert record["data"]["ratio"] > 0
    if name == "concurrency":  # every client was held, ended right, and the pairs were timed
        for outcome in record["data"]["outcomes"]:
            assert outcome["held_connections"] == outcome["clients"]
            assert outcome["succeeded"] == outcome["clients"]
            assert outcome["wrong"] == 0
            assert len(outcome["loaded_added_ms"]) == record["data"]["pairs"]


@pytest.mark.slow
def test_overhead_measures_its_noise_floor_on_request(tmp_path: Path) -> None:
    """``--noise-floor``: a second direct client in the same rounds, with its "added" time
    over the first, so a reader sees what the benchmark itself can resolve."""
    cmd = [sys.executable, "-m", "bench.overhead", "--quick", "--no-real", "--no-peer"]
    proc = subprocess.run(
        [*cmd, "--noise-floor", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in (tmp_path / "overhead.md").read_text().splitlines() if "|" in line]
    floor = [row for row in rows if "direct client again (the noise floor)" in row]
    assert len(floor) == 1
    cells = [cell.strip() for cell in floor[0].strip("|").split("|")]
    assert cells[3] == "0"  # none failed
    assert cells[6] != "-"  # its added median over the first direct client
    (solid,) = json.loads((tmp_path / "overhead.json").read_text())["data"].values()
    times = solid["times_s"]
    assert len(times["direct client again (the noise floor)"]) == len(
        times["direct client (optimal)"]
    )


def test_run_all_quick_lists_every_benchmark(tmp_path: Path) -> None:
    """run_all in quick mode, on the cheapest benchmark only (the others run above)."""
    cmd = [sys.executable, "-m", "bench.run_all", "--quick", "--only", "growth"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (tmp_path / "run_all.md").read_text()
    assert "| growth | ok |" in summary
    assert (tmp_path / "growth.md").exists()


def test_profile_cheap_routes_prints_each_route_and_its_phases() -> None:
    cmd = [sys.executable, "-m", "bench.profile_cheap", "--requests", "20", "--profile"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for route in ("hello JSON (same size)", "GET /v1/jobs/{id}", "static PNG", "cache hit"):
        assert f"  {route}" in proc.stdout
    assert "answer by version (answers.job)" in proc.stdout
    assert "links to the job (give)" in proc.stdout
    # Each route also called as a WSGI app, without the test client's own time.
    assert "GET /v1/jobs/{id}, direct:" in proc.stdout
    assert "cache hit, direct:" in proc.stdout


def test_loadgen_parses_wrk_output() -> None:
    from bench.loadgen import parse_wrk

    sample = """Running 1s test @ http://127.0.0.1:8190/
  1 threads and 1 connections
  Latency Distribution
     50%    1.21ms
     75%    1.36ms
     90%    1.46ms
     99%  250.00us
  818 requests in 1.00s, 858.74KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    816.76
"""
    result = parse_wrk(sample, 1, 1.0)
    assert result.requests == 818
    assert result.rps == pytest.approx(816.76)
    assert result.p50_ms == pytest.approx(1.21)
    assert result.p99_ms == pytest.approx(0.25)
    assert result.errors == 3
    assert result.non_2xx == 4


def test_percentile_interpolates() -> None:
    from bench.common import percentile

    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)


@pytest.mark.slow
def test_redis_memory_prints_its_figure_per_million_jobs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.redis_memory", "--jobs", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figure = proc.stdout.split("per 10^6 jobs: ")[1].split(" GiB")[0]
    assert float(figure) > 0.1  # at least the records themselves (2 kB each)


def _tools() -> list[str]:
    from bench import loadgen

    return ["python", "wrk"] if loadgen.have_wrk() else ["python"]


@pytest.mark.parametrize("tool", _tools())
def test_loadgen_spreads_clients_over_servers_with_fresh_bodies(tool: str) -> None:
    """run_spread: every server gets clients, and each ``{n}`` is a number no other request of
    the run had (the replicas benchmark's new jobs)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench import loadgen

    seen: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                seen.append((int(self.connection.getsockname()[1]), body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = [f"http://127.0.0.1:{s.server_address[1]}/x" for s in servers]
        result = loadgen.run_spread(
            urls, 4, 1.0, body=b'{"color": {n}}', force_python=tool == "python"
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert result.requests > 0
    assert result.non_2xx == 0
    assert {port for port, _ in seen} == {int(s.server_address[1]) for s in servers}
    bodies = [json.loads(body)["color"] for _, body in seen]
    assert len(set(bodies)) == len(bodies)


def test_ws_listener_bench_prints_both_readers_on_the_recorded_messages() -> None:
    """Each reader delivers every event of the recorded job (else it exits non-zero), with
    its CPU per job and its socket reads per job printed."""
    cmd = [sys.executable, "-m", "bench.ws_listener", "--jobs", "50", "--rounds", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| websocket-client's recv_data (before)",
        "| whole reads into FrameReader (now)",
    ]
    before_reads, now_reads = (float(row.rstrip(" |").rsplit(" | ", 1)[1]) for row in rows)
    assert before_reads >= 34  # at least a header and a payload read for each of 17 frames
    assert now_reads < 17  # fewer reads than frames: several frames come from each read
