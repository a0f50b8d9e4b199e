"""The embedded job store: one SQLite file in DATA_DIR (WAL mode), implementing ``JobStore``.

Every method is one statement or one transaction on the writer connection, so it is atomic
for every thread and for every process that opens the file: a claim is one ``UPDATE ...
WHERE seq = (SELECT ...) RETURNING``, a swap one ``UPDATE ... WHERE version = ?``. Reads use
the calling thread's own connection (``sqlite.Database``). A store keeps JSON, never pickle.

The versions of recent jobs are kept in memory too (``versions.Versions``), noted by every
write that changes one, so a job read by version needs no query: what ``shared = False``
allows (this store object is the file's only writer; gateway.lock makes sure of it for
``comfygate serve``), as the result cache's index kept in memory does (jobs/cache.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from comfygate.jobs.flights import Flights
from comfygate.jobs.model import Delivery, Job, JobStatus, Output
from comfygate.jobs.sqlite import Database, GroupInsert
from comfygate.jobs.sqlite_schema import SCHEMA, migrate
from comfygate.jobs.store import CacheEntry, decode_cursor, encode_cursor
from comfygate.jobs.versions import GONE, Versions

_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.SUBMITTED.value, JobStatus.RUNNING.value)
_COLUMNS = "data, version, holder"


def _job(row: tuple[Any, ...]) -> Job:
    return Job.from_record(json.loads(row[0]), version=int(row[1]), holder=row[2])


class SQLiteJobStore:
    """Jobs, leases, batches, keys, the cache index and the outbox in ``DATA_DIR/jobs.sqlite3``."""

    shared = False

    def __init__(self, path: Path) -> None:
        self._db = Database(path, SCHEMA)
        with self._db.writing() as conn:
            migrate(conn)
        self._inserts = GroupInsert(
            self._db, "jobs", ("id", "status", "finished_at", "version", "data")
        )
        self._versions = Versions()
        self._flights = Flights(self._status)

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        self._db.one("SELECT 1")

    # --- jobs ------------------------------------------------------------------------------

    def insert(self, job: Job) -> None:
        self._inserts.insert(
            (job.id, job.status.value, job.finished_at, 1, json.dumps(job.to_record()))
        )
        self._versions.written(job.id, 1)
        job.version, job.holder = 1, None

    def insert_held(self, job: Job, holder: str, until: float, now: float) -> bool:
        # One statement: the check and the insert are atomic by themselves.
        values = (job.id, job.status.value, job.finished_at, json.dumps(job.to_record()))
        with self._db.writing() as conn:
            written = conn.execute(_INSERT_HELD, (*values, holder, until, now)).rowcount
            if written:
                self._versions.written(job.id, 1)
        if written:
            job.version, job.holder = 1, holder
        return bool(written)

    def get(self, job_id: str) -> Job | None:
        mark = self._versions.mark()
        row = (
            self._db.one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))  # noqa: S608
        )
        if not row:
            return None
        self._versions.read(job_id, int(row[1]), mark)
        return _job(row)

    def version(self, job_id: str) -> int | None:
        noted = self._versions.get(job_id)
        if noted is not None:
            return noted if noted != GONE else None
        mark = self._versions.mark()
        row = self._db.one("SELECT version FROM jobs WHERE id = ?", (job_id,))
        version = int(row[0]) if row else None
        self._versions.read(job_id, version, mark)
        return version

    def swap(self, job: Job, expected: int, delivery: Delivery | None = None) -> bool:
        values = (
            job.status.value,
            job.finished_at,
            json.dumps(job.to_record()),
            job.holder,
            job.holder,
            job.id,
            expected,
        )
        with self._db.writing() as conn:
            if delivery is None:  # one statement: atomic by itself
                changed = conn.execute(_SWAP, values).rowcount
            else:
                conn.execute("BEGIN")
                try:
                    changed = conn.execute(_SWAP, values).rowcount
                    if changed:
                        conn.execute(_SAVE_DELIVERY, _delivery_row(delivery))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            if changed:
                self._versions.written(job.id, expected + 1)
        if changed:
            job.version = expected + 1
        return bool(changed)

    def page(
        self,
        statuses: frozenset[JobStatus] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], str | None]:
        sql = "SELECT seq, data, version, holder FROM jobs WHERE 1=1"
        args: list[object] = []
        if owner is not None:
            sql += " AND json_extract(data, '$.owner') = ?"
            args.append(owner)
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            args.extend(sorted(s.value for s in statuses))
        if cursor is not None:
            before = decode_cursor(cursor)
            if before is None:
                raise ValueError("not a cursor of this store")
            sql += " AND seq < ?"
            args.append(before)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._db.all(sql, args)
        jobs = [_job(row[1:]) for row in rows[:limit]]
        return jobs, encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None

    def unfinished(self) -> list[Job]:
        rows = self._db.all(
            f"SELECT {_COLUMNS} FROM jobs WHERE status IN (?, ?, ?) ORDER BY seq",  # noqa: S608
            _UNFINISHED,
        )
        return [_job(r) for r in rows]

    def past_deadline(self, now: float) -> list[str]:
        # The deadline read in SQLite: no record (with its graph) parsed in Python for it.
        rows = self._db.all(
            "SELECT id FROM jobs WHERE status IN (?, ?, ?) "
            "AND json_extract(data, '$.deadline_at') < ?",
            (*_UNFINISHED, now),
        )
        return [str(r[0]) for r in rows]

    def count(self, statuses: frozenset[JobStatus]) -> int:
        marks = ", ".join("?" * len(statuses))
        row = self._db.one(
            f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})",  # noqa: S608
            [s.value for s in statuses],
        )
        return int(row[0])

    def delete(self, job_id: str) -> None:
        with self._db.writing() as conn:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            conn.execute("DELETE FROM idempotency_keys WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM webhook_deliveries WHERE job_id = ?", (job_id,))
            conn.execute("COMMIT")
            self._versions.deleted(job_id)
        self._flights.forget(job_id)

    def finished_before(self, timestamp: float, limit: int = 500) -> list[str]:
        rows = self._db.all(
            "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?",
            (timestamp, limit),
        )
        return [r[0] for r in rows]

    # --- leases ----------------------------------------------------------------------------

    def claim(
        self, holder: str, until: float, now: float, exclude: Iterable[str] = ()
    ) -> Job | None:
        skip = list(exclude)
        marks = ", ".join("?" * len(skip))
        with self._db.writing() as conn:
            row = conn.execute(
                "UPDATE jobs SET holder = ?, lease_until = ?, version = version + 1 "  # noqa: S608
                "WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' "
                "AND (holder IS NULL OR lease_until < ?) "
                + (f"AND id NOT IN ({marks}) " if skip else "")
                + f"ORDER BY seq LIMIT 1) RETURNING {_COLUMNS}",
                (holder, until, now, *skip),
            ).fetchone()
            if not row:
                return None
            job = _job(row)
            self._versions.written(job.id, job.version)
        return job

    def take_over(
        self, holder: str, until: float, now: float, limit: int = 100, *, own: bool = False
    ) -> list[Job]:
        with self._db.writing() as conn:
            rows = conn.execute(
                "UPDATE jobs SET holder = ?, lease_until = ?, version = version + 1 "  # noqa: S608
                "WHERE seq IN (SELECT seq FROM jobs WHERE status IN (?, ?, ?) "
                "AND holder IS NOT NULL AND (lease_until < ? OR holder = ?) "
                f"ORDER BY seq LIMIT ?) RETURNING {_COLUMNS}",
                (holder, until, *_UNFINISHED, now, holder if own else None, limit),
            ).fetchall()
            jobs = [_job(r) for r in rows]
            for job in jobs:
                self._versions.written(job.id, job.version)
        return jobs

    def renew(self, holder: str, job_ids: Iterable[str], until: float) -> set[str]:
        ids = list(job_ids)
        held: set[str] = set()
        with self._db.writing() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"UPDATE jobs SET lease_until = ? WHERE holder = ? "  # noqa: S608
                    f"AND id IN ({', '.join('?' * len(chunk))}) RETURNING id",
                    (until, holder, *chunk),
                ).fetchall()
                held.update(r[0] for r in rows)
        return held

    # --- coalescing ------------------------------------------------------------------------

    def join_in_flight(self, key: str, job_id: str) -> str:
        return self._flights.join(key, job_id)  # in memory: flights.py says why

    def leave_in_flight(self, key: str, job_id: str) -> None:
        self._flights.leave(key, job_id)

    def _status(self, job_id: str) -> str | None:
        row = self._db.one("SELECT status FROM jobs WHERE id = ?", (job_id,))
        return str(row[0]) if row else None

    # --- idempotency keys and batches ------------------------------------------------------

    def claim_key(self, key: str, fingerprint: str, job_id: str) -> tuple[str, str]:
        with self._db.writing() as conn:
            row = conn.execute(
                "INSERT INTO idempotency_keys (key, fingerprint, job_id) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET key = key RETURNING job_id, fingerprint",
                (key, fingerprint, job_id),
            ).fetchone()
        return str(row[0]), str(row[1])

    def insert_batch(self, batch_id: str, data: dict[str, Any]) -> None:
        with self._db.writing() as conn:
            conn.execute(
                "INSERT INTO batches (id, data) VALUES (?, ?)", (batch_id, json.dumps(data))
            )

    def set_batch_jobs(self, batch_id: str, job_ids: list[str]) -> None:
        with self._db.writing() as conn:
            conn.execute(
                "UPDATE batches SET data = json_set(data, '$.jobs', json(?)) WHERE id = ?",
                (json.dumps(job_ids), batch_id),
            )

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self._db.one("SELECT data FROM batches WHERE id = ?", (batch_id,))
        return dict(json.loads(row[0])) if row else None

    # --- the result cache's index ----------------------------------------------------------

    def cache_get(self, key: str) -> CacheEntry | None:
        row = self._db.one("SELECT outputs, size FROM cache_entries WHERE key = ?", (key,))
        if row is None:
            return None
        return CacheEntry(key, [Output(**o) for o in json.loads(row[0])], int(row[1]))

    def cache_put(self, entry: CacheEntry, used_at: float) -> None:
        with self._db.writing() as conn:
            conn.execute(
                # An upsert, not INSERT OR REPLACE: a replaced row fires no delete trigger,
                # and cache_total's would count it twice.
                "INSERT INTO cache_entries (key, outputs, size, last_used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET outputs = excluded.outputs, "
                "size = excluded.size, last_used = excluded.last_used",
                (entry.key, json.dumps([o.__dict__ for o in entry.outputs]), entry.size, used_at),
            )

    def cache_touch(self, used: dict[str, float]) -> None:
        if used:
            with self._db.writing() as conn:
                conn.executemany(
                    "UPDATE cache_entries SET last_used = ? WHERE key = ?",
                    [(when, key) for key, when in used.items()],
                )

    def cache_delete(self, key: str) -> None:
        with self._db.writing() as conn:
            conn.execute("DELETE FROM cache_entries WHERE key = ?", (key,))

    def cache_size(self) -> int:
        row = self._db.one("SELECT bytes FROM cache_total WHERE id = 1")
        return int(row[0]) if row else 0

    def cache_oldest(self, limit: int) -> list[str]:
        rows = self._db.all("SELECT key FROM cache_entries ORDER BY last_used LIMIT ?", (limit,))
        return [str(r[0]) for r in rows]

    # --- the webhook outbox ----------------------------------------------------------------

    def claim_deliveries(self, now: float, until: float, limit: int) -> list[Delivery]:
        with self._db.writing() as conn:
            rows = conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id IN "
                "(SELECT id FROM webhook_deliveries WHERE state = 'pending' "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) RETURNING data",
                (until, now, limit),
            ).fetchall()
        return [Delivery.from_record(json.loads(r[0])) for r in rows]

    def next_delivery_at(self) -> float | None:
        row = self._db.one(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'"
        )
        return float(row[0]) if row and row[0] is not None else None

    def save_delivery(self, delivery: Delivery) -> None:
        with self._db.writing() as conn:
            conn.execute(_SAVE_DELIVERY, _delivery_row(delivery))

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = self._db.one("SELECT data FROM webhook_deliveries WHERE id = ?", (delivery_id,))
        return Delivery.from_record(json.loads(row[0])) if row else None


_INSERT_HELD = (
    "INSERT INTO jobs (id, status, finished_at, version, data, holder, lease_until) "
    "SELECT ?, ?, ?, 1, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' "
    "AND (holder IS NULL OR lease_until < ?))"
)
_SWAP = (
    "UPDATE jobs SET status = ?, finished_at = ?, data = ?, holder = ?, "
    "lease_until = CASE WHEN ? IS NULL THEN NULL ELSE lease_until END, "
    "version = version + 1 WHERE id = ? AND version = ?"
)
_SAVE_DELIVERY = (
    "INSERT OR REPLACE INTO webhook_deliveries (id, job_id, state, next_attempt_at, data) "
    "VALUES (?, ?, ?, ?, ?)"
)


def _delivery_row(d: Delivery) -> tuple[str, str, str, float | None, str]:
    return (d.id, d.job_id, d.state, d.next_attempt_at, json.dumps(d.to_record()))
