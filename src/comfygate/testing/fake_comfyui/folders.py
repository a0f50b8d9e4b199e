"""The fake's input / output / temp directories, in memory, and ComfyUI's rules for the paths
that name files in them (subfolders that must not escape, ``name [output]`` annotations)."""

from __future__ import annotations

import mimetypes
import posixpath
from pathlib import Path

_IMAGE_EXTENSIONS_CACHE: dict[str, str] = {}


def is_image_name(name: str) -> bool:
    """ComfyUI's ``filter_files_content_types(files, ["image"])`` for one name."""
    extension = name.split(".")[-1]
    if extension not in _IMAGE_EXTENSIONS_CACHE:
        mime, _ = mimetypes.guess_type(name, strict=False)
        if not mime:
            return False
        _IMAGE_EXTENSIONS_CACHE[extension] = mime.split("/")[0]
    return _IMAGE_EXTENSIONS_CACHE[extension] == "image"


def split_relative(path: str) -> tuple[str, str] | None:
    """Normalise a path relative to a ComfyUI folder into (subfolder, name); None if it escapes."""
    if not path or path.startswith("/"):
        return None
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or norm == ".":
        return None
    sub, name = posixpath.split(norm)
    return sub, name


def norm_subfolder(subfolder: str) -> str | None:
    """Normalised subfolder ("" for the folder itself); None if it leaves the folder."""
    if not subfolder:
        return ""
    if subfolder.startswith("/"):
        return None
    norm = posixpath.normpath(subfolder)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """ComfyUI's ``annotated_filepath``: ``"x.png [output]"`` is (``"x.png"``, ``"output"``)."""
    if name.endswith("[output]"):
        return name[:-9], "output"
    if name.endswith("[input]"):
        return name[:-8], "input"
    if name.endswith("[temp]"):
        return name[:-7], "temp"
    return name, None


class Folders:
    """The input / output / temp directories of the fake, in memory; with ``base_dir``,
    every file is also written there, as ComfyUI writes them (``<base>/output/<subfolder>/``)."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir
        self.files: dict[str, dict[tuple[str, str], bytes]] = {
            "input": {},
            "output": {},
            "temp": {},
        }

    def get(self, folder: str, subfolder: str, name: str) -> bytes | None:
        return self.files[folder].get((subfolder, name))

    def put(self, folder: str, subfolder: str, name: str, data: bytes) -> None:
        self.files[folder][(subfolder, name)] = data
        if self.base_dir is not None:
            path = self.base_dir / folder / subfolder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def names_in(self, folder: str, subfolder: str) -> list[str]:
        return [n for (s, n) in self.files[folder] if s == subfolder]

    def input_images(self) -> list[str]:
        return [n for n in self.names_in("input", "") if is_image_name(n)]

    def resolve_annotated(self, name: str, default_folder: str = "input") -> bytes | None:
        name, folder = annotated_filepath(name)
        parts = split_relative(name)
        if parts is None:
            return None
        return self.get(folder or default_folder, parts[0], parts[1])
