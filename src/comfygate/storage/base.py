"""Output storage behind one ``Protocol``: ``local`` (a directory under DATA_DIR) and ``s3``
(any S3-compatible service). Callers never see a filesystem path: they put a stream, open a
stream, ask a size and type, delete, and may ask for a presigned url.

A store holds *groups* of named files: a job's outputs (group = job id), a job's input
images, a cached result (group = cache key). Groups and names are made by the gateway and
checked against strict patterns by every implementation (``valid``, ``require_valid``),
whatever a request says. An invalid group or name is never an error of the storage: the
reads (``open``, ``stat``, ``presigned_url``) answer None, as for a file that is not there;
the writes (``save``, ``copy``, ``delete_group``) raise ``ValueError`` (a bug of the caller).
A file's content type follows from its name (``files.content_type``).

A storage that cannot be reached or written raises ``errors.StorageFailed`` (a 503 to a
request), never its library's own exception, and never with an endpoint or a credential in
the message.

Every implementation passes the contract suite in ``tests/contracts/test_storage_contract.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

# fullmatch, not ^...$: "$" also matches before a trailing newline.
GROUP = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")  # a job id or a cache key
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.[a-z0-9]{1,5}")


def valid(group: str, name: str | None = None) -> bool:
    return GROUP.fullmatch(group) is not None and (name is None or NAME.fullmatch(name) is not None)


def require_valid(group: str, name: str | None = None) -> None:
    """What the writes check: a ValueError for an invalid group or name."""
    if not valid(group, name):
        raise ValueError("invalid output name or group")


@dataclass(frozen=True)
class StoredFile:
    size: int
    content_type: str


class Opened(Protocol):
    """An open stored file: read it in chunks, then close it (or use ``with``). ``etag``
    changes whenever the file's bytes could have (None if the storage has none)."""

    size: int
    content_type: str
    etag: str | None

    def chunks(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]: ...
    def read(self, n: int = -1) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> Opened: ...
    def __exit__(self, *exc: object) -> None: ...


class OutputStorage(Protocol):
    def save(self, group: str, name: str, chunks: Iterable[bytes]) -> int:
        """Store a file from a stream; returns its size. Readers never see a partial file.
        Raises ``errors.StorageFailed`` if the storage cannot be written."""
        ...

    def save_file(self, group: str, name: str, source: str) -> int:
        """Store the regular file at ``source``, a path on this host (an output of a ComfyUI
        here), which is left where it is; returns its size. Raises ``FileNotFoundError`` if
        it is not there (nothing stored), ``errors.StorageFailed`` as ``save``."""
        ...

    def prepare(self, group: str) -> None:
        """Make the group ready to be saved into, ahead of its first file (its folder on a
        disk, made while the job runs instead of when its outputs are ready)."""
        ...

    def open(self, group: str, name: str) -> Opened | None:
        """The stored file, or None (no such file, or an invalid group or name)."""
        ...

    def stat(self, group: str, name: str) -> StoredFile | None:
        """The file's size and type, or None (as ``open``)."""
        ...

    def copy(self, source_group: str, name: str, target_group: str) -> None:
        """Give ``target_group`` the file ``name`` of ``source_group`` (a cached result:
        a hard link or a server-side copy, never a download), replacing one of that name.
        Raises ``FileNotFoundError`` if the source is not there (nothing changed)."""
        ...

    def delete_group(self, group: str) -> None:
        """Delete every file of the group (nothing if it has none)."""
        ...

    def presigned_url(self, group: str, name: str, expires_s: int) -> str | None:
        """A url anyone may GET the file with until it expires; None if the storage has no
        such urls (``local``)."""
        ...
