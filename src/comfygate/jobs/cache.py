"""The result cache: a finished job's outputs, kept under a key that fully determines them.

The key hashes the canonical form of a request: the template's content hash (editing a
template invalidates its entries), every parameter value after defaults, sorted, with
numbers normalised (7 and 7.0 are the same cfg). Only requests whose result is determined
are cached: an explicit seed, an operator's fixed default seed, or a template without one.

The index (outputs, size, last use) is behind the job store (``JobStore.cache_*``: SQLite,
or Redis shared by replicas); the files are in the output storage under the key as their
group, copies of the job's (hard links on a local disk, server-side copies in S3), so the
retention sweep of the original job does not empty the cache and eviction touches no job's
outputs. The size limit is in bytes; the least recently used entries go first. A hit's time
of use is kept in memory and written with the next eviction or at close: a write per hit
cost more than the rest of the lookup. An entry whose files vanished is dropped, never served:
its files are checked (there, with the sizes the index says) the first time this process
serves it and whenever the index changes; after that, giving a job its files fails if they
went away (a miss, and the next lookup checks again). A check is a ``stat`` through the
storage, several system calls that each give up the GIL: on every hit, a convoy under load.
For the same reason a store no other process writes (SQLite) has its index entries kept in
memory as this process wrote or read them; with Redis every lookup reads the index.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from comfygate.errors import StorageFailed
from comfygate.jobs.model import Output
from comfygate.jobs.store import CacheEntry, JobStore
from comfygate.storage.base import OutputStorage

MAX_UNWRITTEN_USES = 1000
MAX_CHECKED = 10_000  # entries whose files were checked (forgotten all at once past this)


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


class ResultCache:
    def __init__(self, store: JobStore, storage: OutputStorage, max_bytes: int) -> None:
        self.store = store
        self.storage = storage  # the outputs' storage: an entry's group is its key
        self.max_bytes = max_bytes
        # key -> time of its last hit, not yet written. Hits only assign to it (atomic under
        # the GIL); _write_uses swaps it for an empty one.
        self._used: dict[str, float] = {}
        # key -> the (filename, size) pairs its files were found with (same GIL rule).
        self._checked: dict[str, tuple[tuple[str, int], ...]] = {}
        # The index's entries as this process wrote or read them, when no other process
        # writes the index (SQLite: the gateway holding DATA_DIR); with Redis, replicas
        # replace and evict entries, so every lookup reads the index.
        self._entries: dict[str, CacheEntry] | None = None if store.shared else {}

    def close(self) -> None:
        self._write_uses()

    def _write_uses(self) -> None:
        used, self._used = self._used, {}
        self.store.cache_touch(used)

    def get(self, key: str) -> CacheHit | None:
        entry = self._entry(key)
        if entry is None:
            return None
        files = tuple((o.filename, o.size) for o in entry.outputs)
        if self._checked.get(key) != files:
            for output in entry.outputs:
                found = self.storage.stat(key, output.filename)
                if found is None or found.size != output.size:
                    self.drop(key)  # files vanished or changed: never serve them
                    return None
            if len(self._checked) >= MAX_CHECKED:
                self._checked = {}
            self._checked[key] = files
        self._used[key] = time.time()
        if len(self._used) >= MAX_UNWRITTEN_USES:
            self._write_uses()
        return CacheHit(key, entry.outputs)

    def _entry(self, key: str) -> CacheEntry | None:
        kept = self._entries
        if kept is not None and (entry := kept.get(key)) is not None:
            return entry
        entry = self.store.cache_get(key)
        if entry is not None and kept is not None:
            if len(kept) >= MAX_CHECKED:
                kept.clear()
            kept[key] = entry
        return entry

    def _forget(self, key: str) -> None:
        self._checked.pop(key, None)
        if self._entries is not None:
            self._entries.pop(key, None)

    def give(self, hit: CacheHit, job_id: str) -> bool:
        """Give a job the files of a hit; False if they went away meanwhile (evicted)."""
        try:
            for output in hit.outputs:
                self.storage.copy(hit.key, output.filename, job_id)
        except (OSError, StorageFailed):
            self._forget(hit.key)  # the next lookup reads the index and checks the files
            self.storage.delete_group(job_id)
            return False
        return True

    def put(self, key: str, outputs: list[Output], job_id: str) -> None:
        """Keep a job's outputs under the key (copies of the job's files)."""
        size = sum(o.size for o in outputs)
        if not outputs or size > self.max_bytes or self.store.cache_get(key) is not None:
            return  # kept already (by a job that ran with cache: false, say): served as it is
        # No deletion first: the same key names the same files, each copy replaces its file
        # whole, and a hit served meanwhile reads the old file or the new one.
        for output in outputs:
            self.storage.copy(job_id, output.filename, key)
        self._used.pop(key, None)
        self._forget(key)
        self.store.cache_put(CacheEntry(key, outputs, size), time.time())
        self._evict()

    def drop(self, key: str) -> None:
        self._forget(key)
        self.store.cache_delete(key)
        self.storage.delete_group(key)

    def size(self) -> int:
        return self.store.cache_size()

    def _evict(self) -> None:
        while self.size() > self.max_bytes:
            self._write_uses()
            oldest = self.store.cache_oldest(1)
            if not oldest:
                return
            self.drop(oldest[0])
