"""Output storage: gateway-made names, and nothing outside the data directory, ever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfygate.storage.local import LocalStorage, output_name

JOB = "0123456789abcdef0123456789abcdef"


def test_names_are_made_by_the_gateway() -> None:
    assert output_name("9", 0, "comfygate_x_00001_.png") == "9-0.png"
    assert output_name("9", 1, "../../etc/passwd") == "9-1.bin"
    assert output_name("a/b", 0, "x.WEBP") == "a_b-0.webp"


def test_save_and_open(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "out")
    assert storage.save(JOB, "9-0.png", [b"ab", b"c"]) == 3
    opened = storage.open(JOB, "9-0.png")
    assert opened is not None
    with opened:
        assert opened.read() == b"abc"


@pytest.mark.parametrize(
    ("job", "name"),
    [
        (JOB, "../../etc/passwd"),
        (JOB, "..%2F..%2Fetc%2Fpasswd"),
        (JOB, "/etc/passwd"),
        ("..", "jobs.sqlite3"),
        (JOB, "9-0.png/.."),
        (JOB.upper(), "9-0.png"),
        (JOB, "missing.png"),
        (JOB, ""),
    ],
)
def test_traversal_and_unknown_names_are_refused(tmp_path: Path, job: str, name: str) -> None:
    storage = LocalStorage(tmp_path / "out")
    storage.save(JOB, "9-0.png", [b"x"])
    (tmp_path / "secret").write_text("s")
    assert storage.open(job, name) is None


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "out")
    storage.save(JOB, "9-0.png", [b"x"])
    secret = tmp_path / "secret.png"
    secret.write_text("s")
    os.symlink(secret, tmp_path / "out" / JOB / "link.png")
    assert storage.open(JOB, "link.png") is None
