"""Where a live gateway's CPU goes, by phase of a job: which of its threads spent it (from
``/proc/PID/task``, the threads named by one ``py-spy dump``) and, within them, what held the
GIL (``py-spy record --gil``, collapsed stacks).

Each of a job's phases runs on threads of its own, so a thread's role is its phase:

* ``waitress-N`` (request threads): parse and validate the body, bind the graph, the job's
  first store writes (admission); a synchronous request also sends its own job
  (``POST /prompt``), waits, collects it (``/view``, the storage write, ``succeeded``) and
  answers;
* ``job-submit_N``: ``POST /prompt`` of the jobs no request sends itself (async jobs, jobs
  queued behind a full backend);
* ``ws-listener-*``: ComfyUI's websocket frames, parsed into events, the ``running`` write;
* ``job-collect_N``: the end's bookkeeping after the answer (the cache entry, the coalescing
  key, the backend's slot, metrics, the log line), and collecting the jobs no request waits
  on;
* ``job-engine``: the engine's loop (placing queued jobs, renewing leases);
* ``MainThread``: waitress's socket loop (accepting, reading requests, sending answers);
* ``Thread-N (_monitor)``: the log queue's listener (formatting and writing log lines).

The kernel counts a thread's CPU in clock ticks, so a thousand request threads that each run
a millisecond now and then round down to nothing one by one; their share is the process's
total minus what the other threads spent (the process total is exact).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
REQUESTS = "request threads (waitress-N): admission; a sync request's POST, collection, answer"
ROLES = [  # (thread name prefix, phase)
    ("job-submit", "POST /prompt of jobs no request sends (job-submit_N)"),
    ("ws-listener", "websocket frames to events, running write (ws-listener)"),
    ("job-collect", "the end's bookkeeping: cache, coalescing key, slot (job-collect_N)"),
    ("job-engine", "engine loop: placing, leases (job-engine)"),
    ("MainThread", "waitress socket loop: accept, read, send (MainThread)"),
    ("_monitor", "log lines: format and write (logging QueueListener)"),
]
OTHER = "other threads (executor threads between tasks, health probes, webhooks)"


def have_py_spy() -> bool:
    return PY_SPY.exists()


def _clock() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each live thread of ``pid``."""
    found: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / _clock()
    return found


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from one ``py-spy dump`` (no pause)."""
    if not have_py_spy():
        return {}
    proc = subprocess.run(
        [str(PY_SPY), "dump", "--pid", str(pid), "--nonblocking"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r'^Thread (\d+) \(\w+\): "([^"]*)"', proc.stdout, re.M)
    }


def role_of(name: str) -> str:
    if name.startswith("waitress"):
        return REQUESTS
    for prefix, role in ROLES:
        if prefix in name:
            return role
    return OTHER


@dataclass
class ThreadSnapshot:
    """Per-thread CPU at the start of a window; ``phases`` at its end."""

    pid: int
    process_s: float
    threads: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def take(cls, pid: int, process_s: float) -> ThreadSnapshot:
        """Named now, before a ``py-spy record`` attaches (one dump at a time works best)."""
        return cls(pid, process_s, thread_cpu(pid), thread_names(pid))

    def phases(self, process_s: float) -> dict[str, float]:
        """CPU seconds per phase since this snapshot (the request threads' share is the
        process's total minus the other threads')."""
        now = thread_cpu(self.pid)
        names = self.names
        if set(now) - set(names):  # threads started since: name them too
            names = {**names, **thread_names(self.pid)}
        spent: dict[str, float] = collections.Counter()
        for tid, seconds in now.items():
            role = role_of(names.get(tid, ""))
            if role != REQUESTS:
                spent[role] += seconds - self.threads.get(tid, 0.0)
        spent[REQUESTS] = max(0.0, process_s - self.process_s - sum(spent.values()))
        return dict(spent)


def stack_summary(collapsed: Path, per_phase: int = 3) -> list[tuple[str, str, float]]:
    """From ``py-spy record --gil --format raw``: per phase, the gateway functions that held
    the GIL most (the innermost ``comfygate`` frame, and the innermost frame of all when that
    is a library's), as (phase, function, % of all samples)."""
    if not collapsed.exists():
        return []
    per: dict[tuple[str, str], int] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        ours = [f.split(" (")[0] for f in frames if "comfygate/" in f]
        leaf = frames[-1].split(" (")[0]
        where = (ours[-1] if ours else "") + (f" > {leaf}" if ours and leaf != ours[-1] else "")
        per[(_stack_role(frames), where or leaf)] += int(count)
    rows: list[tuple[str, str, float]] = []
    for role in [r for _, r in ROLES] + [REQUESTS, OTHER]:
        mine = sorted(((w, n) for (r, w), n in per.items() if r == role), key=lambda x: -x[1])
        rows += [(role, where, n * 100 / total) for where, n in mine[:per_phase]]
    return rows


def _stack_role(frames: list[str]) -> str:
    text = ";".join(frames)
    if "ThreadedTaskDispatcher.handler_thread" in text:
        return REQUESTS
    for marker, role in (
        ("Dispatcher._submit", ROLES[0][1]),
        ("WebsocketListener", ROLES[1][1]),
        ("Collector.", ROLES[2][1]),
        ("JobEngine._loop", ROLES[3][1]),
        ("BaseWSGIServer.run", ROLES[4][1]),
        ("QueueListener", ROLES[5][1]),
    ):
        if marker in text:
            return role
    return OTHER


def phase_totals(collapsed: Path) -> dict[str, float]:
    """% of GIL samples per phase."""
    if not collapsed.exists():
        return {}
    per: dict[str, int] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            per[_stack_role(stack.split(";"))] += int(count)
            total += int(count)
    return {role: n * 100 / total for role, n in per.items()} if total else {}
