"""The managed local ComfyUI: a child process on a loopback port, watched and restarted.

``comfygate serve`` runs one when no backend is configured. The ComfyUI install lives in its own
virtualenv (``comfygate comfyui install``, comfy/install.py; ``scripts/setup.sh`` runs it) under
``COMFYGATE_COMFYUI_HOME`` (default ``~/.cache/comfygate/comfyui``): ``venv/`` and
``main_py_path``, a file holding the path of ComfyUI's ``main.py``.

The child runs in its own session/process group, so a Ctrl-C in the gateway's terminal does not
reach it behind the gateway's back; :meth:`LocalComfyUI.stop` (also registered with
:mod:`atexit`) terminates the whole group. Its stdout/stderr go to a log file whose tail is put
into every startup error.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

__all__ = [
    "SETUP_HINT",
    "ComfyUIInstall",
    "LocalComfyUI",
    "LocalComfyUIConfig",
    "LocalComfyUIError",
    "LocalComfyUINotInstalled",
    "LocalComfyUIStartError",
    "default_home",
    "find_install",
    "pick_free_port",
    "write_extra_model_paths",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SETUP_HINT = (
    "run `comfygate comfyui install` to install the local CPU ComfyUI "
    "(or set COMFYGATE_COMFYUI_HOME to an existing install, or give a backend with --backend)"
)
EXTRA_MODEL_PATHS_NAME = "comfygate_extra_model_paths.yaml"

# ComfyUI 0.3.75's model folder names (folder_paths.py) and the sub-directories each one is read
# from, legacy names included. Other sub-directories found in a models dir are added under their
# own name (custom node packs register such folder types).
_MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "configs": ("configs",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "embeddings": ("embeddings",),
    "diffusers": ("diffusers",),
    "vae_approx": ("vae_approx",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",),
    "upscale_models": ("upscale_models",),
    "latent_upscale_models": ("latent_upscale_models",),
    "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",),
    "classifiers": ("classifiers",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}
_NOT_MODEL_FOLDERS = frozenset({"custom_nodes"})
# Environment variables of the gateway's interpreter that must not leak into ComfyUI's venv.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")

_PROBE_TIMEOUT = (1.0, 5.0)  # (connect, read) seconds for every readiness probe
_PROBE_INTERVAL_S = 0.2
_WATCH_INTERVAL_S = 0.2
_LOG_TAIL_BYTES = 6000
_LOG_TAIL_LINES = 40


def default_home() -> Path:
    """``$COMFYGATE_COMFYUI_HOME``, else ``~/.cache/comfygate/comfyui``."""
    env = os.environ.get("COMFYGATE_COMFYUI_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "comfygate" / "comfyui"


class LocalComfyUIError(RuntimeError):
    """The local ComfyUI could not be started or managed."""


class LocalComfyUINotInstalled(LocalComfyUIError):
    """No usable ComfyUI install in the configured home; the message says how to get one."""


class LocalComfyUIStartError(LocalComfyUIError):
    """The child exited during startup, or did not answer before the deadline."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        if log_tail:
            message = f"{message}\n--- last lines of the ComfyUI log ---\n{log_tail}"
        super().__init__(message)
        self.log_tail = log_tail


class _Cancelled(Exception):
    """stop() was called while a child was starting."""


@dataclass(frozen=True, kw_only=True)
class LocalComfyUIConfig:
    """How to run the local ComfyUI. Relative paths are taken from the current directory."""

    home: Path = field(default_factory=default_home)
    """The ComfyUI install: ``venv/`` and ``main_py_path``."""
    base_dir: Path
    """ComfyUI's ``--base-directory`` (input/, output/, temp/, user/); created if missing."""
    models_dirs: list[Path] = field(default_factory=list)
    """Directories in ComfyUI's models layout (checkpoints/, loras/, vae/ ...), all made visible."""
    extra_model_paths: Path | None = None
    """A user's own extra_model_paths.yaml, passed through as another --extra-model-paths-config."""
    port: int = 0
    """0 picks a free loopback port on the first start (restarts keep it)."""
    startup_timeout_s: float = 120.0
    log_file: Path | None = None
    """The child's stdout/stderr, appended; default ``base_dir/comfyui.log``."""
    extra_args: tuple[str, ...] = ()
    """More ComfyUI command-line flags, e.g. ``("--preview-method", "auto")``."""


@dataclass(frozen=True)
class ComfyUIInstall:
    """A located ComfyUI install."""

    home: Path
    python: Path
    main_py: Path


def find_install(home: Path) -> ComfyUIInstall:
    """Locate the venv's interpreter and ComfyUI's main.py, or raise LocalComfyUINotInstalled."""
    home = home.expanduser()
    python = home / "venv" / "bin" / "python"
    marker = home / "main_py_path"
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise LocalComfyUINotInstalled(
            f"ComfyUI is not installed: no virtualenv interpreter at {python}; {SETUP_HINT}"
        )
    if not marker.is_file():
        raise LocalComfyUINotInstalled(
            f"ComfyUI is not installed: {marker} is missing; {SETUP_HINT}"
        )
    main_py = Path(marker.read_text(encoding="utf-8").strip())
    if not main_py.is_file():
        raise LocalComfyUINotInstalled(
            f"ComfyUI is not installed: {marker} names {main_py}, which does not exist; "
            f"{SETUP_HINT}"
        )
    return ComfyUIInstall(home=home, python=python, main_py=main_py)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the gateway dies, even by
    SIGKILL, so no ComfyUI is orphaned. (Tied to the spawning thread: the main thread or the
    watchdog, both of which live as long as the gateway.)"""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass


def pick_free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (bind to port 0, ask, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR like aiohttp's listener: connections in TIME_WAIT do not count, a listener does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _model_folder_entries(models_dir: Path) -> dict[str, str]:
    """One extra_model_paths.yaml section body for a models dir (relative to its base_path)."""
    entries = {name: "\n".join(subdirs) for name, subdirs in _MODEL_FOLDERS.items()}
    known = {sub for subdirs in _MODEL_FOLDERS.values() for sub in subdirs}
    if models_dir.is_dir():
        for child in sorted(models_dir.iterdir()):
            if child.is_dir() and child.name not in known and child.name not in _NOT_MODEL_FOLDERS:
                entries[child.name] = child.name
    return entries


def write_extra_model_paths(path: Path, models_dirs: list[Path]) -> None:
    """Write an extra_model_paths.yaml (as JSON, which YAML reads) listing every models dir."""
    config: dict[str, dict[str, Any]] = {}
    for index, models_dir in enumerate(models_dirs):
        if not models_dir.is_dir():
            logger.warning(
                "models dir %s does not exist (yet); ComfyUI will see it empty", models_dir
            )
        config[f"comfygate_models_{index}"] = {
            "base_path": str(models_dir),
            "is_default": index == 0,
            **_model_folder_entries(models_dir),
        }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_log_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _LOG_TAIL_BYTES))
            data = fh.read()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


class LocalComfyUI:
    """One managed ComfyUI child process.

    ``start()`` launches it and waits until it answers; ``watch()`` adds a daemon thread that
    restarts it on the same port (exponential backoff) if it dies while not stopping;
    ``stop()`` ends it (SIGTERM, then SIGKILL) and the watchdog.
    """

    def __init__(self, config: LocalComfyUIConfig) -> None:
        self.config = config
        self.base_dir = config.base_dir.expanduser().resolve()
        self.models_dirs = [d.expanduser().resolve() for d in config.models_dirs]
        self.extra_model_paths = (
            config.extra_model_paths.expanduser().resolve()
            if config.extra_model_paths is not None
            else None
        )
        self.log_file = (
            config.log_file.expanduser().resolve()
            if config.log_file is not None
            else self.base_dir / "comfyui.log"
        )
        self.restarts: int = 0
        """Successful restarts by the watchdog."""
        self.last_startup_s: float | None = None
        """Seconds the last (re)start took until /system_stats answered."""
        self._port: int | None = config.port or None
        self._install: ComfyUIInstall | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every restart
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._atexit_registered = False

    # -- public API ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:P``; known once a port is chosen (config.port or first start)."""
        if self._port is None:
            raise LocalComfyUIError("the local ComfyUI has no port yet: call start() first")
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def pid(self) -> int | None:
        """The running child's pid, None when there is none."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        return proc.pid

    def start(self) -> str:
        """Start the child and wait until GET /system_stats answers 200; return the base URL.

        Raises LocalComfyUINotInstalled without an install, LocalComfyUIStartError (with the
        log tail) if the child exits or startup_timeout_s passes. A no-op if already running.
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self.url
            self._stopping.clear()
        self._install = find_install(self.config.home)
        if self.extra_model_paths is not None and not self.extra_model_paths.is_file():
            raise LocalComfyUIError(f"extra_model_paths file {self.extra_model_paths} not found")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        write_extra_model_paths(self.base_dir / EXTRA_MODEL_PATHS_NAME, self.models_dirs)
        if self._port is None or (self.config.port == 0 and not _port_is_free(self._port)):
            self._port = pick_free_port()  # restarts by the watchdog keep the port
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        try:
            self._launch()
        except _Cancelled:
            raise LocalComfyUIError("stop() was called while ComfyUI was starting") from None
        return self.url

    def watch(self, *, backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0) -> None:
        """Start the watchdog thread (once): restart a dead child on the same port.

        The wait before a restart starts at backoff_initial_s and doubles (up to backoff_max_s)
        while the child keeps dying; it is reset once a child has stayed up backoff_max_s.
        """
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        with self._lock:
            if self._proc is None:
                raise LocalComfyUIError("call start() before watch()")
            if self._watchdog is not None and self._watchdog.is_alive():
                return
            thread = threading.Thread(
                target=self._watch_loop,
                args=(backoff_initial_s, backoff_max_s),
                name=f"comfyui-watchdog:{self._port}",
                daemon=True,
            )
            self._watchdog = thread
        thread.start()

    def wait_for_restarts(self, count: int, timeout_s: float) -> bool:
        """Block until ``restarts >= count``; False if timeout_s passes first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.restarts >= count, timeout=timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after timeout_s; join the watchdog.

        Idempotent; safe from any thread.
        """
        self._stopping.set()
        with self._lock:
            proc = self._proc
            self._proc = None
        if proc is not None:
            self._terminate(proc, timeout_s)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=timeout_s + 5.0)
            if watchdog.is_alive():
                logger.error("the ComfyUI watchdog thread did not end")
            else:
                self._watchdog = None
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def kill_for_test(self) -> None:
        """Fault injection: SIGKILL the child's process group, as a crash would."""
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            raise LocalComfyUIError("no running ComfyUI child to kill")
        logger.warning("killing ComfyUI (pid %d) with SIGKILL for a test", proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    # -- internals -------------------------------------------------------------------------

    def _stop_at_exit(self) -> None:
        self.stop(timeout_s=5.0)

    def _command(self, install: ComfyUIInstall, port: int) -> list[str]:
        cmd = [
            str(install.python),
            str(install.main_py),
            "--cpu",
            "--listen",
            LOOPBACK,
            "--port",
            str(port),
            "--disable-all-custom-nodes",
            "--disable-auto-launch",
            "--base-directory",
            str(self.base_dir),
            "--database-url",
            "sqlite:///:memory:",
            "--extra-model-paths-config",
            str(self.base_dir / EXTRA_MODEL_PATHS_NAME),
        ]
        if self.extra_model_paths is not None:
            cmd += ["--extra-model-paths-config", str(self.extra_model_paths)]
        cmd += list(self.config.extra_args)
        return cmd

    def _launch(self) -> None:
        """Spawn a child on self._port and wait until it answers (or raise and kill it)."""
        install, port = self._install, self._port
        if install is None or port is None:
            raise LocalComfyUIError("internal: _launch() before start() resolved install and port")
        started = time.monotonic()
        deadline = started + self.config.startup_timeout_s
        if not _port_is_free(port):
            raise LocalComfyUIStartError(
                f"port {port} on {LOOPBACK} is already in use; cannot start ComfyUI there"
            )
        cmd = self._command(install, port)
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        with self._lock:
            if self._stopping.is_set():
                raise _Cancelled
            with self.log_file.open("ab") as log:
                log.write(f"\n=== comfygate: starting ComfyUI: {' '.join(cmd)}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.base_dir,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # prctl only: safe between fork and exec
                )
            self._proc = proc
        logger.info("started ComfyUI (pid %d) on port %d; log: %s", proc.pid, port, self.log_file)
        try:
            self._wait_ready(proc, port, deadline)
        except BaseException:
            self._terminate(proc, 5.0)
            raise
        self.last_startup_s = time.monotonic() - started
        logger.info(
            "ComfyUI ready at %s (pid %d) after %.1f s", self.url, proc.pid, self.last_startup_s
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
        url = f"http://{LOOPBACK}:{port}/system_stats"
        with requests.Session() as session:
            session.trust_env = False  # no proxies for loopback
            while True:
                code = proc.poll()
                if code is not None:
                    raise LocalComfyUIStartError(
                        f"ComfyUI (pid {proc.pid}) exited with code {code} during startup",
                        _read_log_tail(self.log_file),
                    )
                if self._stopping.is_set():
                    raise _Cancelled
                try:
                    with session.get(url, timeout=_PROBE_TIMEOUT) as response:
                        if response.status_code == 200:
                            if self._answer_is_ours(response):
                                return
                            raise LocalComfyUIStartError(
                                f"another server answers on port {port}; is a second ComfyUI "
                                "running there?"
                            )
                except (requests.ConnectionError, requests.Timeout):
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LocalComfyUIStartError(
                        f"ComfyUI (pid {proc.pid}) did not answer GET {url} within "
                        f"{self.config.startup_timeout_s:.0f} s",
                        _read_log_tail(self.log_file),
                    )
                self._stopping.wait(min(_PROBE_INTERVAL_S, remaining))

    def _answer_is_ours(self, response: requests.Response) -> bool:
        try:
            argv = response.json()["system"]["argv"]
        except (ValueError, KeyError, TypeError):
            return False
        return isinstance(argv, list) and str(self.base_dir) in argv

    def _terminate(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        """End the child's process group: SIGTERM, then SIGKILL after timeout_s; reap it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "ComfyUI (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL",
                    proc.pid,
                    timeout_s,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            logger.info("ComfyUI (pid %d) stopped (exit code %s)", proc.pid, proc.returncode)
        # Anything the child left behind in its group (the leader was just reaped, so the group
        # id cannot have been reused yet).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _watch_loop(self, backoff_initial_s: float, backoff_max_s: float) -> None:
        delay = backoff_initial_s
        up_since = time.monotonic()
        while not self._stopping.wait(_WATCH_INTERVAL_S):
            proc = self._proc
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                continue
            if self._stopping.is_set():
                break
            if time.monotonic() - up_since >= backoff_max_s:
                delay = backoff_initial_s
            logger.warning(
                "ComfyUI (pid %d, port %s) died (exit code %s); restarting in %.1f s",
                proc.pid,
                self._port,
                code,
                delay,
            )
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, backoff_max_s)
            try:
                self._launch()
            except _Cancelled:
                break
            except LocalComfyUIError as exc:
                # The failed child is dead (or was never spawned): the next round backs off.
                logger.error("restarting ComfyUI failed: %s", exc)
                continue
            except Exception:
                logger.exception("restarting ComfyUI failed unexpectedly")
                continue
            up_since = time.monotonic()
            with self._changed:
                self.restarts += 1
                self._changed.notify_all()
            logger.warning(
                "ComfyUI restarted on %s (pid %s, restart #%d)", self.url, self.pid, self.restarts
            )
