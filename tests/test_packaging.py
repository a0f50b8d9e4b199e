"""What a pip-installed comfygate has: the fake ComfyUI is an extra (`comfygate[testing]`)
and says so when aiohttp is missing; the checkpoint builder of `comfygate comfyui install`
is in the package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_fake_comfyui_without_aiohttp_says_which_extra_to_install() -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['aiohttp'] = None\nimport comfygate.testing.fake_comfyui",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 1
    last = child.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: comfygate.testing.fake_comfyui needs aiohttp, which the gateway itself "
        "does not: pip install 'comfygate[testing]'"
    )


def test_the_testing_extra_brings_aiohttp_and_the_gateway_does_not_need_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("aiohttp") for dep in project["optional-dependencies"]["testing"])
    assert not any(dep.startswith("aiohttp") for dep in project["dependencies"])
    gateway = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['aiohttp'] = None\n"
            "from comfygate.app import create_app; import comfygate.cli",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gateway.returncode == 0, gateway.stderr
