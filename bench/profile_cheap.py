"""Where a cheap route's time goes, in-process: ``GET /v1/jobs/{id}`` and a result-cache hit
(``POST /v1/generate``), each through the Flask test client a few thousand times, next to
the bare-Flask baselines of bench/hello.py (a JSON answer of the same size, the same PNG as a
static file). Prints the wall time per request without a profiler, then cProfile's time per
request in each phase (hooks, store read, serialisation, answer...).

Each route is timed twice: through the test client, and called as a WSGI app with a
prepared environ ("direct"). The test client's own work (building the environ, reading the
answer: ~80 µs) is the same for both sides and hides the ratio; the direct figures are
what the app itself costs, the part a server in front adds to equally.

    .venv/bin/python -m bench.profile_cheap --requests 3000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder, TestResponse

from bench import hello
from bench.common import wait_until
from bench.load import CACHE_BODY
from comfygate.app import create_app
from comfygate.testing.fake_comfyui import FakeComfyUI

# Phases: (label, module path fragment, function name). cProfile's cumulative time per call.
PHASES: dict[str, list[tuple[str, str, str]]] = {
    "hooks": [
        ("request id (_before)", "comfygate/app.py", "_before"),
        ("Host/Origin guard", "api/origin.py", "guard"),
        ("auth", "api/auth.py", "authenticate"),
        ("metrics + headers (_after)", "comfygate/app.py", "_after"),
        ("access-log line (_write)", "comfygate/access_log.py", "_write"),
    ],
    "job": [
        ("view (all of it)", "api/jobs.py", "get"),
        ("answer by version (answers.job)", "api/answers.py", "job"),
        ("store version read", "jobs/sqlite_store.py", "version"),
        ("store read", "jobs/sqlite_store.py", "get"),
        ("record -> Job", "jobs/model.py", "from_record"),
        ("Job.public", "jobs/model.py", "public"),
        ("urls.job", "api/urls.py", "job"),
        ("jsonify", "flask/json/__init__.py", "jsonify"),
    ],
    "hit": [
        ("view (all of it)", "api/generate.py", "generate"),
        ("parse body", "api/body.py", "read_body"),
        ("validate + fill in (prepare)", "jobs/admission.py", "prepare"),
        ("cache key", "jobs/cache.py", "cache_key"),
        ("cache lookup (index + stat)", "jobs/cache.py", "get"),
        ("links to the job (give)", "jobs/cache.py", "give"),
        ("job record write", "jobs/ledger.py", "create"),
        ("answer (open + send_file)", "api/generate.py", "_answer"),
    ],
}


def _per_call(stats: pstats.Stats, fragment: str, name: str, n: int) -> float | None:
    """Cumulative µs per request of the function, or None if it never ran."""
    total = 0.0
    found = False
    for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and fragment in filename.replace(os.sep, "/"):
            total += row[3]
            found = True
    return total / n * 1e6 if found else None


def _times(calls: list[Callable[[], Any]], n: int, rounds: int = 10) -> list[float]:
    """µs per request of each call: ``rounds`` interleaved rounds of ``n / rounds`` calls
    each, the best round kept (the one least disturbed by other work on the machine)."""
    for call in calls:  # warm up: connections, caches, imports
        for _ in range(min(200, n)):
            call()
    per_round = max(1, n // rounds)
    best = [float("inf")] * len(calls)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            started = time.perf_counter()
            for _ in range(per_round):
                call()
            best[i] = min(best[i], (time.perf_counter() - started) / per_round * 1e6)
    return best


def _profile(call: Callable[[], Any], n: int) -> pstats.Stats:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        call()
    profile.disable()
    return pstats.Stats(profile, stream=io.StringIO())


def _report(title: str, stats: pstats.Stats, n: int, phases: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}: cProfile, µs per request (cumulative, profiler overhead included)")
    for label, fragment, name in phases:
        found = _per_call(stats, fragment, name, n)
        print(f"  {label:<32} {'-' if found is None else f'{found:8.1f}'}")
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(15)
    print("  top functions by own time:")
    for line in out.getvalue().splitlines():
        if line.strip() and ("{" in line or "/" in line) and "ncalls" not in line:
            print("   ", line.strip()[:150])


def _read(response: TestResponse) -> bytes:
    with response:
        return response.get_data()


def _direct(app: Any, method: str, path: str, body: bytes = b"") -> Callable[[], Any]:
    """One request straight into the WSGI app (a copy of one prepared environ), its answer
    read and closed as a server does."""
    builder = EnvironBuilder(
        path=path,
        method=method,
        base_url="http://127.0.0.1:8288",
        data=body or None,
        content_type="application/json" if body else None,
    )
    environ = builder.get_environ()
    builder.close()

    def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    def call() -> None:
        each = dict(environ)
        each["wsgi.input"] = io.BytesIO(body)
        answer = app(each, _start)
        for _chunk in answer:
            pass
        close = getattr(answer, "close", None)
        if close is not None:
            close()

    return call


def _gateway(fake: FakeComfyUI, data_dir: Path) -> Flask:
    return create_app(
        {"backends": [fake.url], "data_dir": str(data_dir), "cache_max_mb": 512},
        configure_logging=False,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--profile", action="store_true", help="also print cProfile's breakdown")
    args = p.parse_args(argv)
    n = args.requests
    # Log records go through the gateway's queue handler as under `comfygate serve`; the
    # writer thread writes them to nowhere.
    logging.basicConfig(stream=open(os.devnull, "w"), level=logging.INFO)  # noqa: SIM115
    with tempfile.TemporaryDirectory() as tmp, FakeComfyUI() as fake:
        app = _gateway(fake, Path(tmp) / "data")
        client = app.test_client()
        # Every answer is closed, as a server closes it: a synchronous job's end bookkeeping
        # (the cache entry among it) waits for its answer to be over. (Left open, the first
        # job kept its coalescing key, and every "hit" below was answered from it as a twin.)
        with client.post(
            "/v1/generate", json=CACHE_BODY, headers={"Accept": "application/json"}
        ) as first:
            job_id = first.get_json()["id"]
        store = app.extensions["comfygate"].store
        # The entry is put just after the answer closes (cache_size: the bytes cached).
        assert wait_until(lambda: store.cache_size() > 0, 5, 0.01), "no cache entry"
        with client.post("/v1/generate", json=CACHE_BODY) as hit:
            png = hit.get_data()
        assert hit.headers["X-Job-Id"] != job_id
        job_bytes = _read(client.get(f"/v1/jobs/{job_id}"))
        static = Path(tmp) / "static.png"
        static.write_bytes(png)
        os.environ["HELLO_STATIC_FILE"] = str(static)
        job_file = Path(tmp) / "job.json"
        job_file.write_bytes(job_bytes)
        os.environ["HELLO_JSON_FILE"] = str(job_file)
        base = hello.make_app().test_client()
        assert len(base.get("/json").get_data()) == len(job_bytes), "sizes differ"
        routes: list[tuple[str, str, Callable[[], Any]]] = [
            ("hello JSON (same size)", "", lambda: _read(base.get("/json"))),
            ("GET /v1/jobs/{id}", "job", lambda: _read(client.get(f"/v1/jobs/{job_id}"))),
            ("static PNG (same file)", "", lambda: _read(base.get("/static.png"))),
            (
                "cache hit (POST /v1/generate)",
                "hit",
                lambda: _read(client.post("/v1/generate", json=CACHE_BODY)),
            ),
        ]
        gateway_app, base_app = app, base.application
        body = json.dumps(CACHE_BODY).encode()
        routes += [
            ("hello JSON, direct", "", _direct(base_app, "GET", "/json")),
            ("GET /v1/jobs/{id}, direct", "", _direct(gateway_app, "GET", f"/v1/jobs/{job_id}")),
            ("static PNG, direct", "", _direct(base_app, "GET", "/static.png")),
            ("cache hit, direct", "", _direct(gateway_app, "POST", "/v1/generate", body)),
        ]
        print(f"job answer {len(job_bytes)} bytes, PNG {len(png):,} bytes, {n} requests each")
        best = _times([call for _, _, call in routes], n)
        for (title, _, _), us in zip(routes, best, strict=True):
            print(f"  {title:<32} {us:8.1f} µs per request (no profiler, best of 10 rounds)")
        for route, baseline in ((5, 4), (7, 6)):
            print(f"  {routes[route][0]}: {best[baseline] / best[route]:.2f}x its baseline")
        if args.profile:
            for title, phases, call in routes:
                if phases:
                    _report(title, _profile(call, n), n, PHASES["hooks"] + PHASES[phases])
        app.extensions["comfygate"].stop()


if __name__ == "__main__":
    main()
