"""What every benchmark shares: statistics, the report (Markdown table, PNG plot, JSON), the
machine and version record, and the processes under test (the gateway as ``comfygate serve``,
fake ComfyUIs, the real local ComfyUI, the peer).

Every process listens on 127.0.0.1 only, every wait has a deadline, and every process a
benchmark starts is stopped by the same benchmark (context managers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
DEFAULT_OUT = ROOT / "docs" / "benchmarks"
PYTHON = sys.executable
COMFYGATE = str(Path(sys.executable).with_name("comfygate"))
PEER_VENV = BENCH_DIR / "peer-venv"
LOOPBACK = "127.0.0.1"

# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p99: float
    mean: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            len(values),
            statistics.median(values),
            percentile(values, 99),
            statistics.fmean(values),
            min(values),
            max(values),
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "median": self.median,
            "p99": self.p99,
            "mean": self.mean,
            "min": self.minimum,
            "max": self.maximum,
        }


class Deadline:
    """A time budget: every benchmark loop is bounded in count and in time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.end

    @property
    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table: fixed digits, '-' for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


# --------------------------------------------------------------------------------------------
# the machine, the versions, the command
# --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return math.nan


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    text = (proc.stdout + proc.stderr).split()
    return text[1] if len(text) > 1 else "wrk"  # "wrk debian/4.1.0-3+b2 [epoll] ..."


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": round(_ram_gib(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    found = {
        name: _version(name)
        for name in ("comfygate", "waitress", "flask", "requests", "websocket-client", "gunicorn")
    }
    found = {k: v for k, v in found.items() if v != "not installed"}
    wrk = _wrk_version()
    if wrk:
        found["wrk"] = wrk
    for key, value in (extra or {}).items():
        if value:
            found[key] = value
    return found


def command_line() -> str:
    """The exact command that ran this benchmark, as one could paste it."""
    argv = sys.argv[:]
    if argv and argv[0].endswith(".py"):
        module = Path(argv[0]).resolve()
        with contextlib.suppress(ValueError):
            rel = module.relative_to(ROOT).with_suffix("")
            return shlex.join([".venv/bin/python", "-m", ".".join(rel.parts), *argv[1:]])
    return shlex.join(argv)


# --------------------------------------------------------------------------------------------
# the report: Markdown + PNG + JSON under docs/benchmarks/
# --------------------------------------------------------------------------------------------


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Report:
    """One benchmark's results: ``NAME.md`` (tables and notes), ``NAME.png``, ``NAME.json``."""

    name: str
    title: str
    out_dir: Path
    quick: bool = False
    started: float = field(default_factory=time.monotonic)
    sections: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    extra_versions: dict[str, str | None] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        text = md_table(headers, rows)
        self.sections.append(f"### {title}\n\n{text}")
        print(f"\n{title}\n{text}", flush=True)

    def note(self, text: str) -> None:
        self.sections.append(text)
        print(text, flush=True)

    @property
    def png(self) -> Path:
        return self.out_dir / f"{self.name}.png"

    def figure(self, suffix: str = "") -> Path:
        """Where the plot goes (call plot code, then ``save_figure``)."""
        name = f"{self.name}{suffix}.png"
        self.plots.append(name)
        return self.out_dir / name

    def write(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        elapsed = time.monotonic() - self.started
        machine = machine_info()
        vers = versions(self.extra_versions)
        header = [
            f"# {self.title}",
            "",
            f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- command: `{command_line()}`" + (" (quick mode: tiny sizes)" if self.quick else ""),
            f"- machine: {machine['nproc']} CPUs ({machine['cpu']}), "
            f"{machine['ram_gib']} GiB RAM, {machine['os']}, Python {machine['python']}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
            f"- wall time of this benchmark: {elapsed:.0f} s",
            "",
        ]
        body = "\n\n".join(self.sections)
        plots = "\n".join(f"![{self.title}]({p})" for p in self.plots)
        md = self.out_dir / f"{self.name}.md"
        md.write_text("\n".join(header) + "\n" + body + ("\n\n" + plots if plots else "") + "\n")
        record = {
            "name": self.name,
            "title": self.title,
            "quick": self.quick,
            "command": command_line(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "versions": vers,
            "elapsed_s": round(elapsed, 1),
            "data": self.data,
        }
        (self.out_dir / f"{self.name}.json").write_text(
            json.dumps(record, indent=1, default=str) + "\n"
        )
        print(f"\nwrote {md}", flush=True)
        return md


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


# --------------------------------------------------------------------------------------------
# command-line options every benchmark has
# --------------------------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds the context managers: every child process is stopped


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark has; also makes SIGTERM stop the benchmark cleanly."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, fake ComfyUI only")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to write (default docs/benchmarks)"
    )
    return p


def add_real_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-real", action="store_true", help="skip the parts that need the real ComfyUI"
    )
    p.add_argument("--no-peer", action="store_true", help="skip comfy-api-proxy + comfy-sdk")
    p.add_argument(
        "--comfyui-url", help="a running real ComfyUI to use (default: start the local one)"
    )


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes (a child process that comes
    up has no event to wait on); the last result."""
    stop = threading.Event()
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        stop.wait(step_s)
    return True


def wait_http(url: str, timeout_s: float, ok: tuple[int, ...] = (200,)) -> None:
    """Until ``url`` answers one of ``ok``; TimeoutError after ``timeout_s``."""
    last = [""]

    def answers() -> bool:
        try:
            resp = requests.get(url, timeout=2)
        except requests.RequestException as exc:
            last[0] = type(exc).__name__
            return False
        last[0] = f"HTTP {resp.status_code}"
        return resp.status_code in ok

    if not wait_until(answers, timeout_s, 0.1):
        raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s ({last[0]})")


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any COMFYGATE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYGATE_")}
    env.update(extra or {})
    return env


class _Managed:
    """A child process in its own process group, stopped (SIGTERM, then SIGKILL) on exit."""

    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: IO[bytes] | None = None

    def _spawn(
        self, cmd: list[str], env: Mapping[str, str], log_path: Path, **kw: Any
    ) -> subprocess.Popen[bytes]:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            env=dict(env),
            stdout=kw.pop("stdout", self._log),
            stderr=self._log,
            start_new_session=True,
            cwd=str(ROOT),
            **kw,
        )
        return self.proc

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc

    @property
    def pid(self) -> int:
        return self._running().pid

    def log_size(self) -> int:
        """Where the log ends now: hand it to ``logged_since``."""
        return self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    def logged_since(self, offset: int) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace").splitlines()

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 3.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Piped(_Managed):
    """A child driven over its stdin: closing it asks the child to end, before a signal."""

    def stop(self, timeout_s: float = 3.0) -> None:
        proc = self.proc
        if proc is not None and proc.stdin is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        super().stop(timeout_s)


class Gateway(_Managed):
    """The gateway as its users run it: ``comfygate serve`` in a child process.

    ``settings`` become ``COMFYGATE_*`` variables. ``waitress`` (extra waitress adjustments,
    e.g. ``connection_limit``) switches to ``python -m bench.serve``, the same server set up the
    same way as ``comfygate serve`` plus those adjustments, for what the CLI cannot set yet.
    """

    def __init__(
        self,
        backends: Sequence[str],
        work_dir: Path,
        *,
        threads: int | None = None,
        settings: Mapping[str, object] | None = None,
        waitress: Mapping[str, object] | None = None,
        data_dir: Path | None = None,
        server: str = "waitress",
        executable: str | None = None,
    ) -> None:
        """``executable``: another checkout's ``comfygate`` (a baseline to compare with)."""
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="gw-data-", dir=work_dir))
        args = [f"--backend={b}" for b in backends]
        args += [f"--port={self.port}", f"--data-dir={self.data_dir}"]
        if threads is not None:
            args.append(f"--threads={threads}")
        extra_env: dict[str, str] = {}
        if server == "gunicorn":
            self.cmd = gunicorn_command("bench.wsgi:app", self.port, threads or 64)
            extra_env = {
                "COMFYGATE_BACKENDS": ",".join(backends),
                "COMFYGATE_DATA_DIR": str(self.data_dir),
            }
        elif waitress:
            extra = [f"--waitress={k}={v}" for k, v in waitress.items()]
            self.cmd = [PYTHON, "-m", "bench.serve", *args, *extra]
        else:
            self.cmd = [executable or COMFYGATE, "serve", *args]
        self.env = clean_env(
            {
                **extra_env,
                **{
                    "COMFYGATE_" + k.upper(): (json.dumps(v) if isinstance(v, dict) else str(v))
                    # One load generator stands for many clients: no cap per client address.
                    for k, v in {"max_waits_per_client": 0, **(settings or {})}.items()
                },
            }
        )
        self.log_file = work_dir / f"gateway-{self.port}.log"

    @property
    def command(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items() if k.startswith("COMFYGATE_"))
        first = Path(self.cmd[0]).name
        shown = [first if first in ("comfygate", "gunicorn") else "python", *self.cmd[1:]]
        text = (env + " " if env else "") + shlex.join(shown)
        return text.replace(str(self.data_dir), "DATA_DIR").replace(str(self.port), "PORT")

    def start(self, timeout_s: float = 60.0) -> Self:
        self._spawn(self.cmd, self.env, self.log_file)
        try:
            wait_http(self.url + "/readyz", timeout_s)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"gateway did not start: {exc}\n{self.log_tail()}") from None
        return self

    def rss_kib(self) -> int:
        return rss_kib(self.pid)


class RedisServer(_Managed):
    """A private ``redis-server`` on a free loopback port, no persistence, its files in
    ``work_dir`` (Debian's package: ``bash scripts/setup-test-tools.sh`` installs it)."""

    def __init__(self, work_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (bash scripts/setup-test-tools.sh)")
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=work_dir))
        self.cmd = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", ""]
        self.cmd += ["--appendonly", "no", "--dir", str(self.dir)]

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=30)

    def start(self, timeout_s: float = 10.0) -> Self:
        import redis

        self._spawn(self.cmd, clean_env(), self.dir / "redis.log")

        def answers() -> bool:
            try:
                return bool(self.client().ping())
            except redis.ConnectionError:
                return False

        if not wait_until(answers, timeout_s):
            self.stop()
            raise RuntimeError(f"redis-server did not answer:\n{self.log_tail()}")
        return self


class Fakes(_Piped):
    """Fake ComfyUIs in a child process (``python -m bench.fakes``), so the fakes' work does
    not share a GIL with the load generator. Commands: ``hold``, ``release``, ``stats``."""

    def __init__(
        self,
        work_dir: Path,
        count: int = 1,
        *,
        service_time_s: float = 0.0,
        caching: bool = True,
        slow: Sequence[float] = (),
        checkpoints: Sequence[str] = (),
    ) -> None:
        self.cmd = [
            PYTHON,
            "-m",
            "bench.fakes",
            f"--count={count}",
            f"--service-time={service_time_s}",
        ]
        if not caching:
            self.cmd.append("--no-caching")
        for index, factor in enumerate(slow):
            self.cmd.append(f"--slow={index}:{factor}")
        self.cmd += [f"--checkpoint={name}" for name in checkpoints]
        self.log_file = work_dir / f"fakes-{os.getpid()}-{time.monotonic_ns()}.log"
        self.urls: list[str] = []

    def start(self, timeout_s: float = 30.0) -> Self:
        proc = self._spawn(
            self.cmd, clean_env(), self.log_file, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        line = _readline(proc.stdout, timeout_s)
        if not line:
            self.stop()
            raise RuntimeError(f"fakes did not start:\n{self.log_tail()}")
        self.urls = list(json.loads(line)["urls"])
        return self

    def command(self, cmd: str, timeout_s: float = 30.0) -> Any:
        proc = self._running()
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write((cmd + "\n").encode())
        proc.stdin.flush()
        line = _readline(proc.stdout, timeout_s)
        if not line:
            raise RuntimeError(f"fakes did not answer {cmd!r}:\n{self.log_tail()}")
        return json.loads(line)


def _readline(stream: IO[bytes], timeout_s: float) -> str:
    """One line from a child's pipe, or '' after ``timeout_s``."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            return ""
    return stream.readline().decode().strip()


ON_THIS_HOST: dict[str, Path] = {}
"""The base directory of each ComfyUI this benchmark started, by URL."""


def backend_dirs(backends: Sequence[str]) -> dict[str, str]:
    """``BACKEND_DIRS`` for the backends of ``backends`` this benchmark started here: what a
    user with ComfyUI on the gateway's machine sets (outputs from the disk, not /view)."""
    found = [
        f"backend-{i}={ON_THIS_HOST[u]}" for i, u in enumerate(backends, 1) if u in ON_THIS_HOST
    ]
    return {"backend_dirs": ",".join(found)} if found else {}


@contextlib.contextmanager
def real_comfyui(url: str | None, work_dir: Path) -> Iterator[str]:
    """The given real ComfyUI, or the local CPU one started for the duration."""
    if url:
        wait_http(url.rstrip("/") + "/system_stats", 30)
        yield url.rstrip("/")
        return
    from comfygate.comfy.local import LocalComfyUI, LocalComfyUIConfig, default_home

    home = default_home()
    comfy = LocalComfyUI(
        LocalComfyUIConfig(
            home=home,
            base_dir=work_dir / "comfyui",
            models_dirs=[home / "models"],
            startup_timeout_s=300,
        )
    )
    started = comfy.start().rstrip("/")
    ON_THIS_HOST[started] = work_dir / "comfyui"
    try:
        yield started
    finally:
        ON_THIS_HOST.pop(started, None)
        comfy.stop()


class OwnedComfyUI:
    """The local CPU ComfyUI on a base dir the benchmark owns, so it can empty its folders
    (a backend's outputs slow its later jobs: docs/BENCHMARKS.md section 8) and read its CPU
    time."""

    FOLDERS = ("input", "output", "temp")

    def __init__(self, base_dir: Path) -> None:
        from comfygate.comfy.local import LocalComfyUI, LocalComfyUIConfig, default_home

        home = default_home()
        self.base_dir = base_dir
        self.comfy = LocalComfyUI(
            LocalComfyUIConfig(
                home=home, base_dir=base_dir, models_dirs=[home / "models"], startup_timeout_s=300
            )
        )
        self.url = ""

    def fresh(self) -> str:
        """Stopped, its folders emptied, started again (its history fresh too)."""
        self.comfy.stop()
        for name in self.FOLDERS:
            shutil.rmtree(self.base_dir / name, ignore_errors=True)
        self.url = self.comfy.start().rstrip("/")
        ON_THIS_HOST[self.url] = self.base_dir
        return self.url

    def reset(self) -> None:
        """Its folders emptied and its history cleared, without a restart (between
        contenders: each starts from the same backend)."""
        for name in self.FOLDERS:
            folder = self.base_dir / name
            for entry in folder.iterdir() if folder.is_dir() else ():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        requests.post(self.url + "/history", json={"clear": True}, timeout=30).raise_for_status()

    @property
    def pid(self) -> int:
        found = self.comfy.pid
        if found is None:
            raise RuntimeError("the local ComfyUI is not running")
        return found

    def stop(self) -> None:
        self.comfy.stop()


def _cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    return sum(_cpu_times(pid))


@dataclass(frozen=True)
class CPUUse:
    """What a process has used so far: user and system CPU seconds, and its threads'
    context switches (voluntary and not: each a thread that gave up or lost the CPU)."""

    user_s: float
    system_s: float
    switches: int

    def __sub__(self, other: CPUUse) -> CPUUse:
        return CPUUse(
            self.user_s - other.user_s,
            self.system_s - other.system_s,
            self.switches - other.switches,
        )


def cpu_use(pid: int) -> CPUUse:
    """The CPU times and every thread's ``ctxt_switches`` lines (a file per thread: read
    around a measurement, not while it runs)."""
    user_s, system_s = _cpu_times(pid)
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        switches += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return CPUUse(user_s, system_s, switches)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for a figure measured on a shared machine."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def comfyui_version(url: str) -> str | None:
    try:
        data = requests.get(url + "/system_stats", timeout=5).json()
        return str(data.get("system", {}).get("comfyui_version") or "") or None
    except (requests.RequestException, ValueError):
        return None


def peer_available() -> tuple[bool, str]:
    """Whether bench/setup_peer.sh has made the peer's venv."""
    proxy = PEER_VENV / "bin" / "comfy-api-proxy"
    if not proxy.exists():
        return False, "bench/peer-venv is missing: run bench/setup_peer.sh"
    return True, ""


def peer_versions() -> dict[str, str | None]:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in ('comfy-api-proxy', 'comfy-sdk')}))"
    )
    try:
        out = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        found: dict[str, str | None] = json.loads(out)
        return found
    except (subprocess.SubprocessError, ValueError):
        return {}


class PeerProxy(_Managed):
    """Comfy-Org's comfy-api-proxy in front of a ComfyUI, from bench/peer-venv."""

    def __init__(self, comfyui_url: str, work_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.cmd = [
            str(PEER_VENV / "bin" / "comfy-api-proxy"),
            f"--comfyui={comfyui_url}",
            f"--port={self.port}",
        ]
        self.log_file = work_dir / f"peer-proxy-{self.port}.log"

    def start(self, timeout_s: float = 60.0) -> Self:
        self._spawn(self.cmd, clean_env(), self.log_file)
        try:
            wait_http(self.url + "/api/v2/health", timeout_s)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"comfy-api-proxy did not start: {exc}\n{self.log_tail()}") from None
        return self


class PeerClient(_Piped):
    """``bench/peer_driver.py`` in the peer's venv: comfy-sdk, one job per request line."""

    def __init__(self, proxy_url: str, work_dir: Path) -> None:
        self.cmd = [str(PEER_VENV / "bin" / "python"), str(BENCH_DIR / "peer_driver.py")]
        self.env = clean_env({"COMFY_BASE_URL": proxy_url})
        self.log_file = work_dir / f"peer-driver-{os.getpid()}.log"

    def start(self) -> Self:
        self._spawn(
            self.cmd, self.env, self.log_file, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return self

    def run(self, graph: Mapping[str, Any], node: str, timeout_s: float = 600.0) -> dict[str, Any]:
        """Run one workflow; the driver's own timing (excluding this pipe) comes back."""
        proc = self._running()
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write((json.dumps({"graph": graph, "node": node}) + "\n").encode())
        proc.stdin.flush()
        line = _readline(proc.stdout, timeout_s)
        if not line:
            raise RuntimeError(f"peer driver did not answer:\n{self.log_tail()}")
        result: dict[str, Any] = json.loads(line)
        return result


@contextlib.contextmanager
def work_dir(name: str) -> Iterator[Path]:
    """A scratch directory under bench/work/ (logs kept on failure for a look)."""
    base = BENCH_DIR / "work"
    base.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok:
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"(logs kept in {path})", file=sys.stderr)


@contextlib.contextmanager
def comfy_backend(real: bool, url: str | None, wd: Path) -> Iterator[str]:
    """The real ComfyUI (given or started), or one fake ComfyUI (quick mode, tests)."""
    if real:
        with real_comfyui(url, wd) as found:
            yield found
    else:
        with Fakes(wd) as fakes:
            yield fakes.start().urls[0]


@contextlib.contextmanager
def peer_session(
    comfyui_url: str, wd: Path, wanted: bool
) -> Iterator[tuple[PeerClient | None, str]]:
    """comfy-api-proxy on ``comfyui_url`` and a comfy-sdk driver on it, or None and why not."""
    if not wanted:
        yield None, "skipped (--no-peer, --no-real or --quick)"
        return
    ok, why = peer_available()
    if not ok:
        yield None, why
        return
    with PeerProxy(comfyui_url, wd) as proxy, PeerClient(proxy.url, wd) as client:
        try:
            proxy.start()
            client.start()
        except RuntimeError as exc:
            yield None, f"the peer could not run: {exc}"
            return
        yield client, ""


class Hello(_Managed):
    """``python -m bench.hello``: the bare-Flask ceiling on the same server settings."""

    def __init__(
        self,
        work_dir: Path,
        threads: int,
        waitress: Mapping[str, object] | None = None,
        server: str = "waitress",
        static_file: Path | None = None,
        json_file: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.static_file = static_file
        self.json_file = json_file  # answered at /json (bench/hello.py)
        if server == "gunicorn":
            self.cmd = gunicorn_command("bench.hello:make_app()", self.port, threads)
        else:
            self.cmd = [PYTHON, "-m", "bench.hello", f"--port={self.port}", f"--threads={threads}"]
            self.cmd += [f"--waitress={k}={v}" for k, v in (waitress or {}).items()]
        self.log_file = work_dir / f"hello-{self.port}.log"

    def start(self, timeout_s: float = 30.0) -> Self:
        extra = {"HELLO_STATIC_FILE": str(self.static_file)} if self.static_file else {}
        if self.json_file:
            extra["HELLO_JSON_FILE"] = str(self.json_file)
        self._spawn(self.cmd, clean_env(extra), self.log_file)
        try:
            wait_http(self.url + "/", timeout_s)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"hello app did not start: {exc}\n{self.log_tail()}") from None
        return self


def gunicorn_command(app: str, port: int, threads: int) -> list[str]:
    """gunicorn's threaded worker, one process (the gateway cannot be split over several)."""
    return [
        str(Path(sys.executable).with_name("gunicorn")),
        "--workers=1",
        "--worker-class=gthread",
        f"--threads={threads}",
        f"--bind={LOOPBACK}:{port}",
        "--timeout=330",
        "--log-level=warning",
        app,
    ]
