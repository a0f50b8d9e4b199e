"""Pytest fixtures for tests against a real local ComfyUI (installed by scripts/setup-comfyui.sh).

Load it with ``pytest_plugins = ["tests.real_comfyui"]`` (or ``-p tests.real_comfyui``).

* ``comfyui_install`` (session): the install's paths; fails (never skips) when it is missing.
* ``real_comfyui`` (session): one started, watched :class:`LocalComfyUI` with a temporary base
  dir and the install's models dir, so ``random-sd15-fp16.safetensors`` is visible.
* ``fresh_comfyui`` (function): a separate one, for tests that kill, restart or stop it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfygate.comfy.local import (
    LocalComfyUI,
    LocalComfyUIConfig,
    LocalComfyUIError,
    LocalComfyUINotInstalled,
    default_home,
    find_install,
)

RANDOM_SD15 = "random-sd15-fp16.safetensors"
STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ComfyUIInstallPaths:
    """Where the local ComfyUI and its test checkpoint are."""

    home: Path
    python: Path
    main_py: Path
    models_dir: Path
    checkpoint: Path

    def config(self, base_dir: Path) -> LocalComfyUIConfig:
        """A LocalComfyUIConfig for this install and base dir, with the install's models dir.

        Change other fields with ``dataclasses.replace``.
        """
        return LocalComfyUIConfig(
            home=self.home,
            base_dir=base_dir,
            models_dirs=[self.models_dir],
            startup_timeout_s=STARTUP_TIMEOUT_S,
        )


def start_or_fail(comfyui: LocalComfyUI) -> str:
    """Start it, turning a startup failure (with its log tail) into a test failure."""
    try:
        return comfyui.start()
    except LocalComfyUIError as exc:
        comfyui.stop()
        pytest.fail(f"the local ComfyUI did not start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def comfyui_install() -> ComfyUIInstallPaths:
    home = default_home()
    try:
        install = find_install(home)
    except LocalComfyUINotInstalled as exc:
        pytest.fail(f"{exc}\n(the tests marked 'comfyui' need it)", pytrace=False)
    models_dir = home / "models"
    checkpoint = models_dir / "checkpoints" / RANDOM_SD15
    if not checkpoint.is_file():
        pytest.fail(
            f"the random SD 1.5 test checkpoint {checkpoint} is missing; "
            "run `comfygate comfyui install` (scripts/setup.sh does)",
            pytrace=False,
        )
    return ComfyUIInstallPaths(
        home=install.home,
        python=install.python,
        main_py=install.main_py,
        models_dir=models_dir,
        checkpoint=checkpoint,
    )


@pytest.fixture(scope="session")
def real_comfyui(
    comfyui_install: ComfyUIInstallPaths, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalComfyUI]:
    comfyui = LocalComfyUI(comfyui_install.config(tmp_path_factory.mktemp("comfyui-session")))
    start_or_fail(comfyui)
    comfyui.watch()
    try:
        yield comfyui
    finally:
        comfyui.stop()


@pytest.fixture
def fresh_comfyui(comfyui_install: ComfyUIInstallPaths, tmp_path: Path) -> Iterator[LocalComfyUI]:
    comfyui = LocalComfyUI(comfyui_install.config(tmp_path / "comfyui-base"))
    start_or_fail(comfyui)
    try:
        yield comfyui
    finally:
        comfyui.stop()
