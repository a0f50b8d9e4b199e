"""The job store: the source of truth for every job, behind one ``Protocol``.

Every implementation (``sqlite``, the embedded default; ``redis``, for replicas) passes the
one contract suite in ``tests/contracts/test_job_store_contract.py``. What it must offer:

- **jobs**: insert, get, its version alone (a cheap read), a page with an opaque cursor,
  delete;
- **compare-and-set**: ``swap`` writes a job only if its stored ``version`` is the one the
  caller read; every write bumps it. The ledger (``jobs/ledger.py``) is the only caller;
- **leases**: ``claim`` takes the oldest queued job nobody holds; ``insert_held`` writes a
  new job already held (a synchronous request's, sent at once) only while no queued job
  waits for a claim, so it never jumps the queue; ``take_over`` takes jobs
  whose holder's lease ran out (a dead process); ``renew`` extends a holder's leases. A
  claim or a takeover bumps the version, so a holder that lost its job (it was slow, not
  dead) fails its next ``swap`` and learns it;
- **in flight** (coalescing): the live job computing a cache key, per owner and webhook;
- **idempotency keys**, **batches**, **the result cache's index**, **the webhook outbox**
  (deliveries, claimed like jobs so two processes never send one twice).

Every method is atomic in the engine itself (one SQLite statement or transaction; one Lua
script or ``MULTI`` in Redis), never a read-then-write from Python.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from comfygate.jobs.model import Delivery, Job, JobStatus, Output


@dataclass(frozen=True)
class CacheEntry:
    """A cached result: the outputs (their files are in storage, group = the key)."""

    key: str
    outputs: list[Output]
    size: int


class JobStore(Protocol):
    # Whether other processes write this store too (Redis: replicas). The SQLite file is
    # written by one gateway (it holds DATA_DIR's claim), which may keep what it wrote.
    shared: bool

    # --- jobs ------------------------------------------------------------------------------
    def insert(self, job: Job) -> None:
        """Write a new job (version 1); an existing id is an error."""
        ...

    def insert_held(self, job: Job, holder: str, until: float, now: float) -> bool:
        """Write a new job (version 1) held by ``holder`` until ``until``, as ``job`` says
        (a submitted job: its backend and prompt id with it), in one atomic step with the
        check that no queued job waits for a claim (none that nobody holds, nor one whose
        lease ended before ``now``: what ``claim`` would take). False, writing nothing, when
        one waits; an existing id is an error."""
        ...

    def get(self, job_id: str) -> Job | None:
        """The job as stored, with its ``version`` and ``holder`` (lease owner)."""
        ...

    def version(self, job_id: str) -> int | None:
        """The job's ``version`` without reading its record (None: no such job). Every
        write bumps it, so an answer made once per version stays true (api/answers.py)."""
        ...

    def swap(self, job: Job, expected: int, delivery: Delivery | None = None) -> bool:
        """Compare-and-set: write ``job`` if the stored version is ``expected`` (then
        ``job.version`` becomes ``expected + 1``); False, writing nothing, otherwise. The
        job's ``holder`` is written too (None: the lease is released). With ``delivery``,
        that webhook delivery is written in the same atomic step."""
        ...

    def page(
        self,
        statuses: frozenset[JobStatus] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first; the page and an opaque cursor for the next one (None at the end).
        A cursor this store did not make raises ``ValueError``."""
        ...

    def unfinished(self) -> list[Job]:
        """Every job not yet in a terminal state, oldest first."""
        ...

    def past_deadline(self, now: float) -> list[str]:
        """The ids of the unfinished jobs whose deadline is before ``now``."""
        ...

    def count(self, statuses: frozenset[JobStatus]) -> int: ...

    def delete(self, job_id: str) -> None:
        """The job and its idempotency keys and deliveries."""
        ...

    def finished_before(self, timestamp: float, limit: int = 500) -> list[str]: ...

    # --- leases ----------------------------------------------------------------------------
    def claim(
        self, holder: str, until: float, now: float, exclude: Iterable[str] = ()
    ) -> Job | None:
        """Atomically take the oldest queued job that nobody holds (no holder, or a lease
        that ended before ``now``), leaving out ``exclude``; it is held by ``holder`` until
        ``until``."""
        ...

    def take_over(
        self, holder: str, until: float, now: float, limit: int = 100, *, own: bool = False
    ) -> list[Job]:
        """Atomically take every unfinished job whose lease ended before ``now`` (its holder
        stopped renewing); with ``own``, also every unfinished job ``holder`` itself holds (a
        restart of the same holder need not wait for its own leases to run out)."""
        ...

    def renew(self, holder: str, job_ids: Iterable[str], until: float) -> set[str]:
        """Extend ``holder``'s leases on ``job_ids``; returns those it still holds."""
        ...

    # --- coalescing ------------------------------------------------------------------------
    def join_in_flight(self, key: str, job_id: str) -> str:
        """Bind ``key`` to ``job_id`` unless another job is bound to it that is unfinished,
        not written yet (the caller joins before it inserts its job) or succeeded (it leaves
        once its result is in the cache); one that failed or was cancelled is replaced.
        Returns the job id bound now (``job_id``, or the twin's)."""
        ...

    def leave_in_flight(self, key: str, job_id: str) -> None:
        """Unbind ``key`` if it is still bound to ``job_id``."""
        ...

    # --- idempotency keys and batches ------------------------------------------------------
    def claim_key(self, key: str, fingerprint: str, job_id: str) -> tuple[str, str]:
        """Bind an Idempotency-Key to a job unless it is bound already; returns the
        (job id, fingerprint) the key is bound to."""
        ...

    def insert_batch(self, batch_id: str, data: dict[str, Any]) -> None: ...
    def get_batch(self, batch_id: str) -> dict[str, Any] | None: ...
    def set_batch_jobs(self, batch_id: str, job_ids: list[str]) -> None: ...

    # --- the result cache's index ----------------------------------------------------------
    def cache_get(self, key: str) -> CacheEntry | None: ...
    def cache_put(self, entry: CacheEntry, used_at: float) -> None: ...
    def cache_touch(self, used: dict[str, float]) -> None:
        """Record the times of last use of entries (written in batches, not per hit)."""
        ...

    def cache_delete(self, key: str) -> None: ...
    def cache_size(self) -> int: ...
    def cache_oldest(self, limit: int) -> list[str]:
        """The least recently used keys, oldest first."""
        ...

    # --- the webhook outbox ----------------------------------------------------------------
    def claim_deliveries(self, now: float, until: float, limit: int) -> list[Delivery]:
        """Atomically take pending deliveries due at ``now``: each one's next attempt moves
        to ``until`` (so no other process sends it meanwhile; if this one dies, it is due
        again then). The caller writes the outcome with ``save_delivery``."""
        ...

    def next_delivery_at(self) -> float | None: ...
    def save_delivery(self, delivery: Delivery) -> None: ...
    def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` if the store cannot be reached (readiness)."""
        ...

    def close(self) -> None: ...


# The job-list cursor, one format for every store: a job's insertion sequence, opaque.
def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The row a cursor points at; None for a cursor this store did not make. (A bare number
    is accepted too: the cursor of versions before it was opaque.)"""
    if cursor.isdigit():
        return int(cursor) if 0 < int(cursor) < 2**63 else None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(text[1:]) if text.startswith("s") and text[1:].isdigit() else None
