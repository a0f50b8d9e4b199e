"""Where the time of replicas under load goes: py-spy samples of one replica (the threads
holding the GIL, by function), and Redis' own time by command and by Lua script (SLOWLOG with
every command logged), during generations and during cache hits. Also the optional S3 server
of ``bench/replicas.py --s3`` (s3rver, as the tests run it).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from bench import loadgen
from bench.common import ROOT, Report, fmt, free_port, wait_until

if TYPE_CHECKING:
    from bench.replicas import Cluster

S3RVER = ROOT / "build" / "test-tools" / "node_modules" / "@20minutes" / "s3rver"
SLOWLOG_MAX = 50_000
TOP = 15


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def s3_server(wd: Path) -> Iterator[tuple[dict[str, str], int]]:
    """s3rver on a loopback port (``bash scripts/setup-test-tools.sh`` installs it): the
    replicas' environment for it, and its process id."""
    node = shutil.which("node")
    if node is None or not (S3RVER / "package.json").exists():
        raise SystemExit("s3rver is not installed: run bash scripts/setup-test-tools.sh")
    port = free_port()
    data = wd / "s3-objects"
    data.mkdir()
    launcher = ROOT / "tests" / "s3rver.js"
    log = (wd / "s3rver.log").open("ab")
    proc = subprocess.Popen(
        [node, str(launcher), str(S3RVER), str(port), str(data), "comfygate"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until(lambda: _answers(url), 20, 0.1):
            raise RuntimeError("s3rver did not answer")
        missing = str(wd / "no-aws-config")
        env = {
            "AWS_ACCESS_KEY_ID": "S3RVER",
            "AWS_SECRET_ACCESS_KEY": "S3RVER",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
            "COMFYGATE_STORAGE": "s3",
            "COMFYGATE_S3_BUCKET": "comfygate",
            "COMFYGATE_S3_ENDPOINT_URL": url,
        }
        yield env, proc.pid
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


def script_names() -> dict[str, str]:
    """The gateway's Lua scripts by SHA1 (what EVALSHA names them by)."""
    from comfygate.jobs import numbered, redis_lua, redis_lua_records

    scripts = {**redis_lua.SCRIPTS, **redis_lua_records.SCRIPTS, "PUBLISH": numbered.PUBLISH_SCRIPT}
    return {
        hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest(): name
        for name, src in scripts.items()
    }


def _frame(text: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.func``, the module path shortened."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", text)
    if not match:
        return text
    func, path = match.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path.removesuffix('.py').replace('/', '.')}.{func}"


def parse_raw(text: str) -> dict[str, Any]:
    """py-spy's raw (collapsed) output: share of samples by leaf function (self), by function
    anywhere on the stack (inclusive, comfygate's only) and by package of the leaf."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    package: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if "(" in f and not f.startswith("thread")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        package[frames[-1].split(".", 1)[0]] += count
        for name in set(frames):
            if name.startswith("comfygate."):
                inclusive[name] += count
    share = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "self": [(k, v * share) for k, v in own.most_common(TOP)],
        "inclusive": [(k, v * share) for k, v in inclusive.most_common(TOP)],
        "package": [(k, v * share) for k, v in package.most_common(8)],
    }


def _phase(
    cluster: Cluster, name: str, clients: int, body: bytes, duration: float, force: bool
) -> dict[str, Any]:
    redis = cluster.redis.client()
    replica = cluster.replicas[0]
    redis.config_set("slowlog-log-slower-than", 0)
    redis.config_set("slowlog-max-len", SLOWLOG_MAX)
    redis.slowlog_reset()
    ran_before = cluster.ran()
    raw = cluster.wd / f"py-spy-{name}.txt"
    spy = py_spy()
    proc = None
    if spy:
        cmd = [spy, "record", "--pid", str(replica.pid), "--duration", str(int(duration))]
        cmd += ["--rate", "200", "--gil", "--nonblocking", "--function", "--format", "raw"]
        proc = subprocess.Popen(
            [*cmd, "--output", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    loaded: dict[str, loadgen.LoadResult] = {}

    def load() -> None:
        loaded["r"] = loadgen.run_spread(
            [u + "/v1/generate" for u in cluster.urls],
            clients,
            duration + 1,
            body=body,
            force_python=force,
        )

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(duration + 90)
    spy_error = ""
    if proc is not None:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            spy_error = err.decode(errors="replace")[-500:]
    entries = redis.slowlog_get(SLOWLOG_MAX)
    redis.config_set("slowlog-log-slower-than", 10_000)
    redis.slowlog_reset()
    jobs = max(1, cluster.drain() - ran_before)
    requests_done = max(1, loaded["r"].requests) if "r" in loaded else 1
    names = script_names()
    usec: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for entry in entries:
        command = entry["command"]
        words = (command.decode() if isinstance(command, bytes) else str(command)).split()
        key = words[0].upper() if words else "?"
        if key in ("EVALSHA", "EVAL") and len(words) > 1:
            key = f"{key} {names.get(words[1], words[1][:8])}"
        usec[key] += int(entry["duration"])
        calls[key] += 1
    return {
        "requests": requests_done,
        "jobs_run": jobs,
        "slowlog_entries": len(entries),
        "slowlog_full": len(entries) >= SLOWLOG_MAX,
        "redis": [(k, calls[k], usec[k]) for k, _ in usec.most_common(TOP)],
        "redis_usec_total": sum(usec.values()),
        "py_spy": parse_raw(raw.read_text()) if raw.exists() else {},
        "py_spy_error": spy_error if spy else "py-spy is not installed (the dev extra has it)",
    }


def breakdown(
    cluster: Cluster,
    count: int,
    gen_clients: int,
    hit_clients: int,
    fresh_body: bytes,
    hit_body: dict[str, Any],
    force_python: bool,
) -> dict[str, Any]:
    """With ``count`` replicas: generations, then cache hits, each profiled for 6 s."""
    import json

    from bench.replicas import cache_ready, replicas

    found: dict[str, Any] = {"replicas": count}
    with replicas(cluster, count) as gws:
        found["generations"] = _phase(
            cluster, "generations", gen_clients, fresh_body, 6, force_python
        )
        cache_ready([g.url for g in gws])
        found["cache hits"] = _phase(
            cluster, "hits", hit_clients, json.dumps(hit_body).encode(), 6, force_python
        )
        found["clients"] = {"generations": gen_clients, "cache hits": hit_clients}
    return found


def report(rep: Report, found: dict[str, Any]) -> None:
    for phase in ("generations", "cache hits"):
        data = found.get(phase)
        if not data:
            continue
        per = "job" if phase == "generations" else "hit"
        n = data["jobs_run"] if phase == "generations" else data["requests"]
        rows = [
            [k, fmt(c / n, 2), fmt(u / n, 1), fmt(100 * u / max(1, data["redis_usec_total"]), 0)]
            for k, c, u in data["redis"]
        ]
        rep.table(
            f"Redis time by command and script during {phase} ({found['replicas']} replicas, "
            f"{found['clients'][phase]} clients; SLOWLOG of every command, "
            f"{data['slowlog_entries']:,} entries)",
            ["command / script", f"calls per {per}", f"µs per {per}", "% of Redis time"],
            rows,
        )
        if data["slowlog_full"]:
            rep.note(
                f"SLOWLOG reached its {SLOWLOG_MAX:,}-entry cap: it kept the newest entries only, "
                f"so the figures per {per} are too low; the shares of Redis time still hold."
            )
        spy = data.get("py_spy") or {}
        if not spy:
            rep.note(f"py-spy during {phase}: no samples ({data.get('py_spy_error', '')}).")
            continue
        rep.table(
            f"Replica 1 during {phase}: where the GIL was held (py-spy --gil, "
            f"{spy['samples']:,} samples at 200 Hz for 6 s), by own time",
            ["function (self)", "% of samples"],
            [[f"`{k}`", fmt(v, 1)] for k, v in spy["self"]],
        )
        rep.table(
            f"Replica 1 during {phase}: comfygate functions by inclusive time",
            ["function (inclusive)", "% of samples"],
            [[f"`{k}`", fmt(v, 1)] for k, v in spy["inclusive"]],
        )
        rep.note(
            f"Own time by package during {phase}: "
            + ", ".join(f"{k} {fmt(v, 0)} %" for k, v in spy["package"])
            + "."
        )


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return True
