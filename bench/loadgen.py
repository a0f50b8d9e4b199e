"""Load generation against 127.0.0.1 only: Debian's ``wrk`` when installed (bench/setup.sh),
else a bounded Python generator (keep-alive connections on threads). Both stop by themselves:
wrk after its duration, the Python one after its duration or its request cap.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import percentile

MAX_PYTHON_REQUESTS = 200_000


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"load is only ever sent to loopback addresses, not {host!r}")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    connections: int,
    duration_s: float,
    *,
    body: bytes | None = None,
    force_python: bool = False,
) -> LoadResult:
    """GET ``url`` (or POST ``body`` as JSON) from ``connections`` keep-alive clients."""
    _check_loopback(url)
    if have_wrk() and not force_python:
        return _wrk(url, connections, duration_s, body)
    return _python(url, connections, duration_s, body)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str, connections: int, duration_s: float) -> LoadResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors = 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors = sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return LoadResult(
        "wrk",
        connections,
        duration_s,
        int(total.group(1)) if total else 0,
        float(rps.group(1)) if rps else 0.0,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        errors,
        int(non2xx.group(1)) if non2xx else 0,
    )


def _wrk(url: str, connections: int, duration_s: float, body: bytes | None) -> LoadResult:
    threads = max(1, min(2, connections))
    script: list[str] = []
    if body is not None:
        lua = Path(tempfile.mkstemp(suffix=".lua")[1])
        lua.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        script = [f"--script={lua}"]
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",  # wrk takes whole seconds
        "--timeout=10s",
        "--latency",
        *script,
        url,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    finally:
        for item in script:
            Path(item.split("=", 1)[1]).unlink(missing_ok=True)
    return parse_wrk(proc.stdout, connections, duration_s)


def _python(url: str, connections: int, duration_s: float, body: bytes | None) -> LoadResult:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + duration_s
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"errors": 0, "non2xx": 0, "sent": 0}

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        local: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                if counts["sent"] >= MAX_PYTHON_REQUESTS:
                    break
                counts["sent"] += 1
            started = time.perf_counter()
            try:
                if body is None:
                    conn.request("GET", path)
                else:
                    conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(
                    parts.hostname or "127.0.0.1", parts.port, timeout=10
                )
                continue
            local.append((time.perf_counter() - started) * 1000)
            if not 200 <= resp.status < 400:
                with lock:
                    counts["non2xx"] += 1
        conn.close()
        with lock:
            latencies.extend(local)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + 30)
    elapsed = time.monotonic() - started
    return LoadResult(
        "python",
        connections,
        elapsed,
        len(latencies),
        len(latencies) / elapsed if elapsed else 0.0,
        percentile(latencies, 50),
        percentile(latencies, 99),
        counts["errors"],
        counts["non2xx"],
    )
