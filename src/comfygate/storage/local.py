"""Outputs on the local disk, under DATA_DIR/outputs/<job_id>/<name>.

Names are made by the gateway (``<node>-<n>.<ext>`` with an extension from an allowlist),
never taken from a client or from ComfyUI. Every lookup checks the job id and the file name
against strict patterns and resolves the path inside the root: nothing outside it can be
read, whatever the request says (``..``, encoded slashes, absolute paths, symlinks).
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from comfygate.storage.base import StoredFile

# fullmatch, not ^...$: "$" also matches before a trailing newline.
_JOB_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")  # a job id or a cache key
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.[a-z0-9]{1,5}")

# Extensions ComfyUI output nodes write, with the content type served for each.
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".glb": "model/gltf-binary",
}


def output_name(node_id: str, index: int, comfy_filename: str) -> str:
    """A safe name for the index-th file of a node, keeping only a known extension."""
    ext = PurePosixPath(comfy_filename).suffix.lower()
    if ext not in CONTENT_TYPES:
        ext = ".bin"
    node = re.sub(r"[^A-Za-z0-9_-]", "_", node_id)[:40] or "node"
    return f"{node}-{index}{ext}"


def content_type(name: str) -> str:
    ext = PurePosixPath(name).suffix.lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def image_size(source: Path | bytes | None) -> tuple[int, int] | None:
    """(width, height) of an image file, or of the first bytes of one, read from its header
    only; None if it is not an image Pillow knows."""
    if source is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                return image.size
        except Image.DecompressionBombError:
            return (Image.MAX_IMAGE_PIXELS or 1 << 30, 2)  # past Pillow's own bomb limit
        except (UnidentifiedImageError, OSError):
            return None


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str, name: str | None = None) -> Path | None:
        if not _JOB_ID.fullmatch(job_id) or (name is not None and not _NAME.fullmatch(name)):
            return None
        path = self.root / job_id if name is None else self.root / job_id / name
        # resolve() follows symlinks: a link pointing out of the root is refused too.
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            return None
        return resolved

    def save(self, job_id: str, name: str, chunks: Iterable[bytes]) -> int:
        path = self._path(job_id, name)
        if path is None:
            raise ValueError("invalid output name")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        size = 0
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
        os.replace(tmp, path)
        return size

    def open_path(self, job_id: str, name: str) -> Path | None:
        """The file's path if it is a stored regular file of that job, else None."""
        path = self._path(job_id, name)
        if path is None or path.is_symlink() or not path.is_file():
            return None
        return path

    def job_dir(self, job_id: str) -> Path:
        path = self._path(job_id)
        if path is None:
            raise ValueError("invalid job id")
        return path

    def adopt(self, job_id: str, name: str, source: Path) -> None:
        """Give a job a file that already exists (a cached output): a hard link, no copy."""
        path = self._path(job_id, name)
        if path is None:
            raise ValueError("invalid output name")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)

    def delete_job(self, job_id: str) -> None:
        path = self._path(job_id)
        if path is not None and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

    # --- OutputStorage (storage/base.py); a stopgap until the storage branch merges --------

    def open(self, group: str, name: str) -> _Opened | None:
        path = self.open_path(group, name)
        if path is None:
            return None
        try:
            return _Opened(path.open("rb"), path.stat().st_size, content_type(name))
        except OSError:
            return None

    def stat(self, group: str, name: str) -> StoredFile | None:
        path = self.open_path(group, name)
        return StoredFile(path.stat().st_size, content_type(name)) if path else None

    def copy(self, source_group: str, name: str, target_group: str) -> None:
        source = self.open_path(source_group, name)
        if source is None:
            raise FileNotFoundError(name)
        self.adopt(target_group, name, source)

    def delete_group(self, group: str) -> None:
        self.delete_job(group)

    def presigned_url(self, group: str, name: str, expires_s: int) -> str | None:
        return None


class _Opened:
    def __init__(self, handle: BinaryIO, size: int, content_type: str) -> None:
        self._handle, self.size, self.content_type = handle, size, content_type

    def chunks(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        while chunk := self._handle.read(chunk_size):
            yield chunk

    def read(self, n: int = -1) -> bytes:
        return self._handle.read(n)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
