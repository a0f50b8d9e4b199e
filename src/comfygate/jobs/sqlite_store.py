"""Job stores: the source of truth for every job, behind one small interface.

``SQLiteJobStore`` is the embedded default (one file in DATA_DIR, WAL mode). A store keeps
JSON, never pickle. Every transition is written here before the gateway acts on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from comfygate.jobs.model import Delivery, Job, JobStatus
from comfygate.jobs.sqlite import Database, GroupInsert


class LegacyJobStore(Protocol):  # what jobs/service.py uses until the engine is rebuilt
    def insert(self, job: Job) -> None: ...
    def update(self, job: Job, delivery: Delivery | None = None) -> None:
        """Write ``job``; with ``delivery``, add that webhook delivery in the same commit."""
        ...

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...
    def next_delivery_at(self) -> float | None: ...
    def save_delivery(self, delivery: Delivery) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        before: int | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], int | None]: ...
    def unfinished(self) -> list[Job]: ...
    def delete(self, job_id: str) -> None: ...
    def finished_before(self, timestamp: float, limit: int = 500) -> list[str]: ...
    def claim_key(self, key: str, fingerprint: str, job_id: str) -> tuple[str, str]: ...
    def insert_batch(self, batch_id: str, data: dict[str, Any]) -> None: ...
    def get_batch(self, batch_id: str) -> dict[str, Any] | None: ...
    def insert_batch_jobs(self, batch_id: str, job_ids: list[str]) -> None: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    finished_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id TEXT NOT NULL
);
-- The webhook outbox: pending rows are sent (again) by whichever process runs the store.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    next_attempt_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (state, next_attempt_at);
"""


class SQLiteJobStore:
    """Jobs, batches and idempotency keys in one SQLite file (``DATA_DIR/jobs.sqlite3``): the hot
    reads (a job by id, a page) use the calling thread's own connection."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA)
        self._inserts = GroupInsert(self._db, "jobs", ("id", "status", "finished_at", "data"))

    def close(self) -> None:
        self._db.close()

    def insert(self, job: Job) -> None:
        self._inserts.insert(
            (job.id, job.status.value, job.finished_at, json.dumps(job.to_record()))
        )

    def update(self, job: Job, delivery: Delivery | None = None) -> None:
        with self._db.writing() as conn:
            if delivery is not None:
                conn.execute("BEGIN")
            try:
                conn.execute(
                    "UPDATE jobs SET status = ?, finished_at = ?, data = ? WHERE id = ?",
                    (job.status.value, job.finished_at, json.dumps(job.to_record()), job.id),
                )
                if delivery is not None:
                    conn.execute(_SAVE_DELIVERY, _delivery_row(delivery))
                    conn.execute("COMMIT")
            except BaseException:
                if delivery is not None:
                    conn.execute("ROLLBACK")
                raise

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first."""
        rows = (
            self._db.reader()
            .execute(
                "SELECT data FROM webhook_deliveries WHERE state = 'pending' "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (now, limit),
            )
            .fetchall()
        )
        return [Delivery.from_record(json.loads(r[0])) for r in rows]

    def next_delivery_at(self) -> float | None:
        row = (
            self._db.reader()
            .execute("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'")
            .fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    def save_delivery(self, delivery: Delivery) -> None:
        with self._db.writing() as conn:
            conn.execute(_SAVE_DELIVERY, _delivery_row(delivery))

    def get(self, job_id: str) -> Job | None:
        row = self._db.reader().execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_record(json.loads(row[0])) if row else None

    def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        before: int | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], int | None]:
        """Newest first; returns the page and the cursor for the next one (None at the end).
        With ``owner``, only the jobs of that owner."""
        sql = "SELECT seq, data FROM jobs WHERE 1=1"
        args: list[object] = []
        if owner is not None:
            sql += " AND json_extract(data, '$.owner') = ?"
            args.append(owner)
        if status is not None:
            sql += " AND status = ?"
            args.append(status.value)
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._db.reader().execute(sql, args).fetchall()
        jobs = [Job.from_record(json.loads(data)) for _, data in rows[:limit]]
        cursor = rows[limit - 1][0] if len(rows) > limit else None
        return jobs, cursor

    def unfinished(self) -> list[Job]:
        with self._db.writing() as conn:
            rows = conn.execute(
                "SELECT data FROM jobs WHERE status IN (?, ?) ORDER BY seq",
                (JobStatus.QUEUED.value, JobStatus.RUNNING.value),
            ).fetchall()
        return [Job.from_record(json.loads(r[0])) for r in rows]

    def delete(self, job_id: str) -> None:
        with self._db.writing() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            conn.execute("DELETE FROM idempotency_keys WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM webhook_deliveries WHERE job_id = ?", (job_id,))

    def finished_before(self, timestamp: float, limit: int = 500) -> list[str]:
        with self._db.writing() as conn:
            rows = conn.execute(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?",
                (timestamp, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def insert_batch(self, batch_id: str, data: dict[str, Any]) -> None:
        with self._db.writing() as conn:
            conn.execute(
                "INSERT INTO batches (id, data) VALUES (?, ?)", (batch_id, json.dumps(data))
            )

    def insert_batch_jobs(self, batch_id: str, job_ids: list[str]) -> None:
        batch = self.get_batch(batch_id)
        if batch is not None:
            batch["jobs"] = job_ids
            with self._db.writing() as conn:
                conn.execute(
                    "UPDATE batches SET data = ? WHERE id = ?", (json.dumps(batch), batch_id)
                )

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        row = (
            self._db.reader()
            .execute("SELECT data FROM batches WHERE id = ?", (batch_id,))
            .fetchone()
        )
        return dict(json.loads(row[0])) if row else None

    def claim_key(self, key: str, fingerprint: str, job_id: str) -> tuple[str, str]:
        """Bind an Idempotency-Key to a job unless it is bound already; atomically returns
        the (job id, fingerprint) the key is bound to."""
        with self._db.writing() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO idempotency_keys (key, fingerprint, job_id) "
                "VALUES (?, ?, ?)",
                (key, fingerprint, job_id),
            )
            row = conn.execute(
                "SELECT job_id, fingerprint FROM idempotency_keys WHERE key = ?", (key,)
            ).fetchone()
        return str(row[0]), str(row[1])


_SAVE_DELIVERY = (
    "INSERT OR REPLACE INTO webhook_deliveries (id, job_id, state, next_attempt_at, data) "
    "VALUES (?, ?, ?, ?, ?)"
)


def _delivery_row(d: Delivery) -> tuple[str, str, str, float | None, str]:
    return (d.id, d.job_id, d.state, d.next_attempt_at, json.dumps(d.to_record()))
