"""The tables of the embedded job store (``sqlite_store.py``), and what a file made by an
older version gets at open."""

from __future__ import annotations

import sqlite3

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    next_attempt_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS cache_entries (
    key TEXT PRIMARY KEY,
    outputs TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_lru ON cache_entries (last_used);
-- The cache's total size, kept by triggers: every put asks for it (eviction), and a SUM over
-- the entries grew with them. Filled once from the entries of a file made before it.
CREATE TABLE IF NOT EXISTS cache_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO cache_total (id, bytes)
    SELECT 1, COALESCE(SUM(size), 0) FROM cache_entries;
CREATE TRIGGER IF NOT EXISTS cache_total_insert AFTER INSERT ON cache_entries BEGIN
    UPDATE cache_total SET bytes = bytes + NEW.size WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS cache_total_delete AFTER DELETE ON cache_entries BEGIN
    UPDATE cache_total SET bytes = bytes - OLD.size WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS cache_total_update AFTER UPDATE OF size ON cache_entries BEGIN
    UPDATE cache_total SET bytes = bytes - OLD.size + NEW.size WHERE id = 1;
END;
"""
# Added to ``jobs`` after 0.x: a file made by an older version gets them at open.
LEASE_COLUMNS = {
    "version": "INTEGER NOT NULL DEFAULT 1",
    "holder": "TEXT",
    "lease_until": "REAL",
}


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file made by an older version up to date (idempotent)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, decl in LEASE_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
    # A job an older version had sent to ComfyUI was "queued" with a prompt id.
    conn.execute(
        "UPDATE jobs SET status = 'submitted', data = json_set(data, '$.status', 'submitted') "
        "WHERE status = 'queued' "
        "AND json_extract(data, '$.prompt_id') IS NOT NULL"
    )
    # ...and held by nobody: an expired lease, so the first takeover follows it.
    conn.execute(
        "UPDATE jobs SET holder = 'before-leases', lease_until = 0 "
        "WHERE status IN ('submitted', 'running') AND holder IS NULL"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until)")
    # Coalescing bindings are kept in memory now (flights.py): the old table goes.
    conn.execute("DROP TABLE IF EXISTS in_flight")
