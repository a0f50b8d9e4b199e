"""Load generation against 127.0.0.1 only: Debian's ``wrk`` when installed (bench/setup.sh),
else a bounded Python generator (keep-alive connections on threads). Both stop by themselves:
wrk after its duration, the Python one after its duration or its request cap.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
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
    return run_spread([url], connections, duration_s, body=body, force_python=force_python)


def run_spread(
    urls: Sequence[str],
    connections: int,
    duration_s: float,
    *,
    body: bytes | None = None,
    force_python: bool = False,
) -> LoadResult:
    """Like ``run``, the clients spread round-robin over ``urls`` (the same path on several
    servers: client i talks to server i mod n; wrk: thread i, so wrk runs one thread per
    server, and the clients are a multiple of the servers). Each ``{n}`` in ``body`` becomes a
    number no other request of the run has (fresh requests, e.g. a new colour each)."""
    for url in urls:
        _check_loopback(url)
    if have_wrk() and not force_python:
        return _wrk(list(urls), connections, duration_s, body)
    return _python(list(urls), connections, duration_s, body)


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


def _wrk_script(urls: list[str], body: bytes | None) -> str:
    """wrk's Lua: one thread per server (``setup``), a POST body, fresh numbers in it."""
    lua = []
    fresh = body is not None and b"{n}" in body
    if len(urls) > 1 or fresh:  # fresh numbers need a thread id: setup() gives one
        ports = ", ".join(f'"{urlsplit(u).port}"' for u in urls)
        lua.append(
            f"local ports = {{{ports}}}\n"
            "local made = 0\n"
            "function setup(thread)\n"
            "  local port = ports[made % #ports + 1]\n"
            "  made = made + 1\n"
            '  thread.addr = wrk.lookup("127.0.0.1", port)[1]\n'
            '  thread:set("id", made)\n'
            "end\n"
        )
    if body is not None:
        text = body.decode()
        if "{n}" in text:
            head, tail = text.split("{n}", 1)
            base = random.SystemRandom().randrange(1 << 22)
            lua.append(
                "local sent = 0\n"
                "function request()\n"
                "  sent = sent + 1\n"
                f"  local n = ({base} + (id or 0) * 1000003 + sent) % 16777216\n"
                f"  local b = {json.dumps(head)} .. n .. {json.dumps(tail)}\n"
                '  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, b)\n'
                "end\n"
            )
        else:
            lua.append(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(text)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
    return "".join(lua)


def _wrk(urls: list[str], connections: int, duration_s: float, body: bytes | None) -> LoadResult:
    threads = max(1, min(2, connections)) if len(urls) == 1 else len(urls)
    connections = max(threads, connections // threads * threads)
    script: list[str] = []
    text = _wrk_script(urls, body)
    if text:
        lua = Path(tempfile.mkstemp(suffix=".lua")[1])
        lua.write_text(text)
        script = [f"--script={lua}"]
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",  # wrk takes whole seconds
        "--timeout=10s",
        "--latency",
        *script,
        urls[0],
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    finally:
        for item in script:
            Path(item.split("=", 1)[1]).unlink(missing_ok=True)
    return parse_wrk(proc.stdout, connections, duration_s)


def _python(urls: list[str], connections: int, duration_s: float, body: bytes | None) -> LoadResult:
    targets = []
    for url in urls:
        parts = urlsplit(url)
        path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        targets.append((parts.hostname or "127.0.0.1", parts.port, path))
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + duration_s
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"errors": 0, "non2xx": 0, "sent": 0}
    fresh = body is not None and b"{n}" in body
    base = random.SystemRandom().randrange(1 << 22)

    def worker(index: int) -> None:
        host, port, path = targets[index % len(targets)]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        local: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                if counts["sent"] >= MAX_PYTHON_REQUESTS:
                    break
                counts["sent"] += 1
                number = (base + counts["sent"]) % (1 << 24)
            payload = body.replace(b"{n}", str(number).encode()) if body and fresh else body
            started = time.perf_counter()
            try:
                if body is None:
                    conn.request("GET", path)
                else:
                    conn.request("POST", path, payload, headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                continue
            local.append((time.perf_counter() - started) * 1000)
            if not 200 <= resp.status < 400:
                with lock:
                    counts["non2xx"] += 1
        conn.close()
        with lock:
            latencies.extend(local)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
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
