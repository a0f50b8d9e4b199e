"""The result cache: a finished job's outputs, kept under a key that fully determines them.

The key hashes the canonical form of a request: the template's content hash (editing a
template invalidates its entries), every parameter value after defaults, sorted, with
numbers normalised (7 and 7.0 are the same cfg). Only requests whose result is determined
are cached: an explicit seed, an operator's fixed default seed, or a template without one.

Entries own hard links to the files (DATA_DIR/cache/<key>/), so the retention sweep of the
original job does not empty the cache and eviction does not touch any job's outputs. The
index is an SQLite table (it survives restarts); the size limit is in bytes and the least
recently used entries go first. A hit's time of use is kept in memory and written with the
next eviction or at close: a write per hit cost more than the rest of the lookup. An entry
whose files vanished is dropped, never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfygate.jobs.model import Output
from comfygate.jobs.sqlite import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    key TEXT PRIMARY KEY,
    outputs TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_lru ON cache_entries (last_used);
"""
MAX_UNWRITTEN_USES = 1000


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def cache_key(template_digest: str, params: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"template": template_digest, "params": _normalise(params)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheHit:
    key: str
    outputs: list[Output]
    directory: Path


class ResultCache:
    def __init__(self, db_path: Path, root: Path, max_bytes: int) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._db = Database(db_path, _SCHEMA)
        # key -> time of its last hit, not yet written. Hits only assign to it (atomic under
        # the GIL); _write_uses swaps it for an empty one.
        self._used: dict[str, float] = {}

    def close(self) -> None:
        self._write_uses()
        self._db.close()

    def _write_uses(self) -> None:
        used, self._used = self._used, {}
        if used:
            with self._db.writing() as conn:
                conn.executemany(
                    "UPDATE cache_entries SET last_used = ? WHERE key = ?",
                    [(when, key) for key, when in used.items()],
                )

    def get(self, key: str) -> CacheHit | None:
        row = (
            self._db.reader()
            .execute("SELECT outputs FROM cache_entries WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        outputs = [Output(**o) for o in json.loads(row[0])]
        directory = self.root / key
        for output in outputs:
            path = directory / output.filename
            if not path.is_file() or path.stat().st_size != output.size:
                self.drop(key)  # files vanished or changed: never serve them
                return None
        self._used[key] = time.time()
        if len(self._used) >= MAX_UNWRITTEN_USES:
            self._write_uses()
        return CacheHit(key, outputs, directory)

    def put(self, key: str, outputs: list[Output], source: Path) -> None:
        """Keep a job's outputs (hard links, or copies across filesystems) under the key."""
        size = sum(o.size for o in outputs)
        if not outputs or size > self.max_bytes:
            return
        directory = self.root / key
        tmp = self.root / f".{key}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for output in outputs:
            link(source / output.filename, tmp / output.filename)
        self._used.pop(key, None)
        with self._db.writing() as conn:
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(tmp, directory)
            conn.execute(
                "INSERT OR REPLACE INTO cache_entries (key, outputs, size, last_used) "
                "VALUES (?, ?, ?, ?)",
                (key, json.dumps([o.__dict__ for o in outputs]), size, time.time()),
            )
        self._evict()

    def drop(self, key: str) -> None:
        with self._db.writing() as conn:
            conn.execute("DELETE FROM cache_entries WHERE key = ?", (key,))
        shutil.rmtree(self.root / key, ignore_errors=True)

    def size(self) -> int:
        with self._db.writing() as conn:  # exact, for eviction
            row = conn.execute("SELECT COALESCE(SUM(size), 0) FROM cache_entries").fetchone()
        return int(row[0])

    def _evict(self) -> None:
        while self.size() > self.max_bytes:
            self._write_uses()
            with self._db.writing() as conn:
                row = conn.execute(
                    "SELECT key FROM cache_entries ORDER BY last_used LIMIT 1"
                ).fetchone()
            if row is None:
                return
            self.drop(str(row[0]))


def link(source: Path, target: Path) -> None:
    """A hard link (free, same filesystem) or a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
