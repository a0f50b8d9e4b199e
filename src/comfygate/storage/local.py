"""Files on the local disk: ``LocalStorage(root)`` keeps ``root/<group>/<name>``
(DATA_DIR/outputs, DATA_DIR/inputs, DATA_DIR/cache).

Every lookup checks the group and the name against strict patterns (``base.valid``) and
resolves the path inside the root: nothing outside it can be read, whatever the request says
(``..``, encoded slashes, absolute paths, symlinks). A file is written beside its final name
under a name no lookup accepts, then renamed over it (``os.replace``): a reader sees the old
file or the whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from comfygate.errors import StorageFailed
from comfygate.storage.base import StoredFile, require_valid, valid
from comfygate.storage.files import (
    CONTENT_TYPES,
    content_type,
    image_size,
    output_name,
)

# Kept importable from here for the engine that still does (jobs/service.py).
__all__ = [
    "CONTENT_TYPES",
    "LocalFile",
    "LocalStorage",
    "content_type",
    "image_size",
    "output_name",
]

_CHUNK = 64 * 1024


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """A failure of the disk (full, read-only, no permission) is the storage's failure."""
    try:
        yield
    except OSError as exc:
        raise StorageFailed(f"output storage cannot be written ({exc.strerror})") from None


def _regular_size(path: str) -> int | None:
    """The size of a regular file (not a symlink, not a folder), or None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _link(source: str, target: Path, name: str) -> None:
    """Give ``target`` the file ``source``, replacing one of that name: a hard link (one
    filesystem: no bytes copied, and the name appears whole at once), else a copy written
    beside it and renamed over it. ``FileNotFoundError`` if the source went meanwhile."""
    try:
        os.link(source, target, follow_symlinks=False)
        return
    except FileExistsError:
        pass  # replaced below, through a name of its own
    except FileNotFoundError:
        raise FileNotFoundError(f"no stored file {name}") from None
    except OSError:
        pass  # another filesystem, or links not allowed there: a copy
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        os.link(source, tmp, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no stored file {name}") from None
    except OSError:
        try:
            shutil.copyfile(source, tmp)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise FileNotFoundError(f"no stored file {name}") from None
    os.replace(tmp, target)


class LocalFile:
    """An open stored file (``base.Opened``) over a file descriptor."""

    def __init__(self, fh: BinaryIO, size: int, content_type: str, etag: str) -> None:
        self._fh = fh
        self.size = size
        self.content_type = content_type
        self.etag: str | None = etag

    def chunks(self, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        while chunk := self.read(chunk_size):
            yield chunk

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, group: str, name: str | None = None) -> Path | None:
        if not valid(group, name):
            return None
        # A valid group and name are single plain components (no separator, no dots to
        # climb), so the path can leave the root only through a symlink: refuse any, with
        # one lstat per component instead of a realpath of the whole path.
        folder = os.path.join(self.root, group)
        if os.path.islink(folder):
            return None
        if name is None:
            return Path(folder)
        path = os.path.join(folder, name)
        return None if os.path.islink(path) else Path(path)

    def _target(self, group: str, name: str) -> Path:
        require_valid(group, name)
        path = self._path(group, name)
        if path is None:  # a valid name whose folder leads out of the root
            raise ValueError("invalid output name or group")
        try:
            os.mkdir(path.parent)  # the group's folder, right under the root
        except FileExistsError:
            pass
        except FileNotFoundError:  # the root itself went
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save(self, group: str, name: str, chunks: Iterable[bytes]) -> int:
        path = self._target(group, name)
        # A name of its own per writer (no lookup accepts a leading dot): two saves of one
        # file never write into each other's part.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        size = 0
        try:
            with _writing(), tmp.open("wb") as fh:
                for chunk in chunks:  # the source's own errors go up as they are
                    with _writing():
                        fh.write(chunk)
                    size += len(chunk)
            with _writing():
                os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def prepare(self, group: str) -> None:
        require_valid(group)
        path = self._path(group)
        if path is not None:
            with _writing():
                path.mkdir(exist_ok=True)

    def save_file(self, group: str, name: str, source: str) -> int:
        target = self._target(group, name)
        size = _regular_size(source)
        if size is None:
            raise FileNotFoundError(f"no file {name} to store")
        with _writing():
            _link(source, target, name)
        return size

    def open(self, group: str, name: str) -> LocalFile | None:
        path = self._path(group, name)
        if path is None:
            return None
        try:
            # O_NOFOLLOW: a symlink planted after the check above is refused too.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink
                return None
            raise StorageFailed(f"output storage cannot be read ({exc.strerror})") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        etag = f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"
        return LocalFile(os.fdopen(fd, "rb"), info.st_size, content_type(name), etag)

    def stat(self, group: str, name: str) -> StoredFile | None:
        path = self._path(group, name)
        if path is None:
            return None
        try:
            info = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return StoredFile(info.st_size, content_type(name))

    def copy(self, source_group: str, name: str, target_group: str) -> None:
        require_valid(source_group, name)
        source = self._path(source_group, name)
        if source is None or _regular_size(str(source)) is None:  # a regular file only
            raise FileNotFoundError(f"no stored file {name}")
        _link(str(source), self._target(target_group, name), name)

    def delete_group(self, group: str) -> None:
        require_valid(group)
        path = self._path(group)
        if path is not None and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

    def presigned_url(self, group: str, name: str, expires_s: int) -> str | None:
        return None  # files on a disk have no url of their own: the gateway serves them
