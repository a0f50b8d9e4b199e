"""The versions of recent jobs, kept in memory by the one process that writes the SQLite file,
so a job read (``JobStore.version``, every ``GET /v1/jobs/{id}``) asks SQLite nothing for a
job this process wrote or read lately.

Why: a SQLite query gives up the GIL at each step and takes it back behind every runnable
request thread; under load that was about 20 thread switches and 150 µs of system time per
job read, half of its cost (docs/BENCHMARKS.md §4). Only the embedded store has it: one
gateway process owns a DATA_DIR (gateway.lock refuses a second), so every write of the file
goes through this process's store object and is noted here. Replicas share Redis, which any
of them may write; its store reads the version every time.

The rules that keep a noted version from ever going back (ids are never reused):

- a write notes the version it committed, unless a newer one is noted already (two writers
  may note in the other order than they committed);
- a deletion notes the job as gone, and nothing overrides that;
- a read from the file notes its version only where nothing is noted: a write committed
  after the read has noted its own, or will (and then wins by the first rule); and only if no
  note was dropped since the read began (``mark``), as the dropped one may have been newer.

The notes written least lately are dropped past ``capacity``; a job not noted is read from
the file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

CAPACITY: Final = 20_000  # a few MB: the jobs being created and polled now
GONE: Final = 0  # versions start at 1


class Versions:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._noted: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()  # dict updates only: never held over SQLite
        self._dropped = 0

    def get(self, job_id: str) -> int | None:
        """The noted version, ``GONE`` (deleted), or None: nothing is noted."""
        return self._noted.get(job_id)  # one dict read: atomic, no lock

    def written(self, job_id: str, version: int) -> None:
        with self._lock:
            noted = self._noted.get(job_id)
            if noted is None:
                self._add(job_id, version)
            else:
                self._noted.move_to_end(job_id)
                if noted != GONE and version > noted:
                    self._noted[job_id] = version

    def mark(self) -> int:
        """Taken before reading the file, handed to ``read``."""
        return self._dropped

    def read(self, job_id: str, version: int | None, mark: int) -> None:
        """What a read of the file found (None: no such job; not noted, as an id may be
        asked for before its job is written)."""
        if version is None:
            return
        with self._lock:
            if job_id not in self._noted and self._dropped == mark:
                self._add(job_id, version)

    def deleted(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._noted:
                self._noted[job_id] = GONE
            else:
                self._add(job_id, GONE)

    def _add(self, job_id: str, version: int) -> None:
        self._noted[job_id] = version
        if len(self._noted) > self.capacity:
            self._noted.popitem(last=False)
            self._dropped += 1
