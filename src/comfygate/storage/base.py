"""Output storage behind one ``Protocol``: ``local`` (a directory under DATA_DIR) and ``s3``
(any S3-compatible service). Callers never see a filesystem path: they put a stream, open a
stream, ask a size and type, delete, and may ask for a presigned url.

A store holds *groups* of named files: a job's outputs (group = job id), a job's input
images, a cached result (group = cache key). Groups and names are made by the gateway and
checked against strict patterns by every implementation (``check_group``, ``check_name``),
whatever a request says.

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


@dataclass(frozen=True)
class StoredFile:
    size: int
    content_type: str


class Opened(Protocol):
    """An open stored file: read it in chunks, then close it (or use ``with``)."""

    size: int
    content_type: str

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

    def open(self, group: str, name: str) -> Opened | None:
        """The stored file, or None (no such file, or an invalid group or name)."""
        ...

    def stat(self, group: str, name: str) -> StoredFile | None: ...

    def copy(self, source_group: str, name: str, target_group: str) -> None:
        """Give ``target_group`` the file ``name`` of ``source_group`` (a cached result:
        a hard link or a server-side copy, never a download)."""
        ...

    def delete_group(self, group: str) -> None: ...

    def presigned_url(self, group: str, name: str, expires_s: int) -> str | None:
        """A url anyone may GET the file with until it expires; None if the storage has no
        such urls (``local``)."""
        ...
