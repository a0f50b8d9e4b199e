"""``RedisJobStore``: the job store in Redis, shared by every gateway replica.

The same ``JobStore`` contract as SQLite (``tests/contracts/test_job_store_contract.py``).
Each method is one Redis command or one Lua script (``jobs/redis_lua.py``, which also draws
the key layout, and ``jobs/redis_lua_records.py``), so a claim, a takeover or a compare-and-set
is atomic in Redis itself. Keys live under a prefix; a finished job's keys get a TTL of
the retention plus a grace period (the retention sweep deletes it at the retention; the TTL
is for a store nobody sweeps). A Redis that cannot be reached gives ``StorageFailed`` (503,
``Retry-After``) from every method, and the same store works again once Redis is back
(redis-py reconnects and reloads scripts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from comfygate import redisconn
from comfygate.jobs import redis_lua, redis_lua_records
from comfygate.jobs.model import Delivery, Job, JobStatus, Output
from comfygate.jobs.store import CacheEntry, decode_cursor, encode_cursor  # one cursor format

# Keys of one deployment start with it (several deployments can share one Redis).
DEFAULT_PREFIX = "comfygate:"
# How long finished jobs are kept (the gateway passes JOB_RETENTION_S).
DEFAULT_RETENTION_S = 7 * 86400.0
# A finished job's keys expire this long after the retention: the sweep, which runs every
# minute or so, deletes the job first and with it every index entry; the TTL only catches
# the jobs of a store no gateway sweeps any more.
EXPIRY_GRACE_S = 3600.0
# Batches outlive their last write by this many retentions (their jobs finish later).
BATCH_RETENTIONS = 2

_ALL = tuple(JobStatus)

# Every method: a Redis that cannot be reached (no connection, no answer in time, a
# read-only replica) is StorageFailed (503 with Retry-After); any other error is a bug.
_guarded = redisconn.as_storage_failed("using the job store")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dump(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _job(rec: Any, version: Any, holder: Any) -> Job:
    who = _text(holder) if holder is not None else ""
    return Job.from_record(json.loads(rec), version=int(version), holder=who or None)


def _jobs(flat: Sequence[Any]) -> list[Job]:
    """Jobs from a script's flat {rec, version, holder, ...} reply."""
    return [_job(*flat[i : i + 3]) for i in range(0, len(flat), 3)]


def _delivery(rec: Any, at: Any) -> Delivery:
    delivery = Delivery.from_record(json.loads(rec))
    when = _text(at) if at is not None else ""
    delivery.next_attempt_at = float(when) if when else None
    return delivery


class RedisJobStore:
    """Jobs, the queue, leases, keys, batches, the cache index and the webhook outbox in
    Redis, under ``prefix``. ``client``: a made ``redis.Redis`` (``redisconn.connect``: its
    timeouts and retries); this store closes it."""

    shared = True

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        retention_s: float = DEFAULT_RETENTION_S,
        grace_s: float = EXPIRY_GRACE_S,
    ) -> None:
        self._r = client
        self.prefix = prefix
        self._ttl = _ms(retention_s + grace_s)
        self._batch_ttl = _ms(BATCH_RETENTIONS * retention_s + grace_s)
        scripts = {**redis_lua.SCRIPTS, **redis_lua_records.SCRIPTS}
        self._scripts: dict[str, Script] = {
            name: client.register_script(source) for name, source in scripts.items()
        }

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](keys=[], args=[self.prefix, *args])

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @_guarded
    def ping(self) -> None:
        self._r.ping()

    def close(self) -> None:
        self._r.close()

    # --- jobs ------------------------------------------------------------------------------

    def _finished_score(self, job: Job) -> str:
        return repr(job.finished_at if job.finished_at is not None else job.created_at)

    def _new(self, job: Job) -> tuple[Any, ...]:
        """The arguments of the INSERT and INSERT_HELD scripts that write a new record."""
        score = self._finished_score(job)
        return (job.id, _dump(job.to_record()), job.status.value, job.owner or "", score, self._ttl)

    @_guarded
    def insert(self, job: Job) -> None:
        if not self._run("INSERT", *self._new(job)):
            raise ValueError(f"job {job.id} exists")
        job.version, job.holder = 1, None

    @_guarded
    def insert_held(self, job: Job, holder: str, until: float, now: float) -> bool:
        written = int(self._run("INSERT_HELD", *self._new(job), holder, repr(until), repr(now)))
        if written < 0:
            raise ValueError(f"job {job.id} exists")
        if written:
            job.version, job.holder = 1, holder
        return bool(written)

    @_guarded
    def get(self, job_id: str) -> Job | None:
        rec, version, holder = self._r.hmget(self._key("job", job_id), ["rec", "v", "holder"])
        return _job(rec, version, holder) if rec is not None else None

    @_guarded
    def version(self, job_id: str) -> int | None:
        found = self._r.hget(self._key("job", job_id), "v")
        return int(found) if found is not None else None

    @_guarded
    def swap(self, job: Job, expected: int, delivery: Delivery | None = None) -> bool:
        args: list[Any] = [
            job.id,
            expected,
            _dump(job.to_record()),
            job.status.value,
            job.owner or "",
            job.holder or "",
            self._finished_score(job),
            self._ttl,
        ]
        if delivery is not None:
            args += self._delivery_args(delivery)
        version = int(self._run("SWAP", *args))
        if version:
            job.version = version
        return bool(version)

    @_guarded
    def page(
        self,
        statuses: frozenset[JobStatus] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[Job], str | None]:
        bound = "+inf"
        if cursor is not None:
            seq = decode_cursor(cursor)
            if seq is None:
                raise ValueError("not a cursor of this store")
            bound = str(seq)
        chosen = sorted(statuses) if statuses is not None else list(_ALL)
        if not chosen or limit < 1:
            return [], None
        flat, last = self._run("PAGE", limit, bound, owner or "", *chosen)
        return _jobs(flat), encode_cursor(int(last)) if last is not None else None

    @_guarded
    def unfinished(self) -> list[Job]:
        flat = self._run("UNFINISHED")
        rows = sorted((int(flat[i + 3]), i) for i in range(0, len(flat), 4))
        return [_job(*flat[i : i + 3]) for _, i in rows]

    def past_deadline(self, now: float) -> list[str]:
        # Every unfinished record, as before; a deadline index would make it O(expired).
        return [j.id for j in self.unfinished() if j.deadline_at and j.deadline_at < now]

    @_guarded
    def count(self, statuses: frozenset[JobStatus]) -> int:
        with self._r.pipeline(transaction=True) as pipe:
            for status in statuses:
                pipe.zcard(self._key("status", status.value))
            return sum(int(n) for n in pipe.execute())

    @_guarded
    def delete(self, job_id: str) -> None:
        self._run("DELETE", job_id)

    @_guarded
    def finished_before(self, timestamp: float, limit: int = 500) -> list[str]:
        ids = self._r.zrangebyscore(self._key("finished"), "-inf", f"({timestamp!r}", 0, limit)
        return [_text(i) for i in ids]

    # --- leases ----------------------------------------------------------------------------

    @_guarded
    def claim(
        self, holder: str, until: float, now: float, exclude: Iterable[str] = ()
    ) -> Job | None:
        taken = self._run("CLAIM", holder, repr(until), repr(now), *exclude)
        return _job(*taken) if taken else None

    @_guarded
    def take_over(
        self, holder: str, until: float, now: float, limit: int = 100, *, own: bool = False
    ) -> list[Job]:
        mine = "1" if own else ""
        return _jobs(self._run("TAKE_OVER", holder, repr(until), repr(now), limit, mine))

    @_guarded
    def renew(self, holder: str, job_ids: Iterable[str], until: float) -> set[str]:
        ids = list(job_ids)
        if not ids:
            return set()
        return {_text(i) for i in self._run("RENEW", holder, repr(until), *ids)}

    # --- coalescing ------------------------------------------------------------------------

    @_guarded
    def join_in_flight(self, key: str, job_id: str) -> str:
        return _text(self._run("JOIN_IN_FLIGHT", key, job_id, self._ttl))

    @_guarded
    def leave_in_flight(self, key: str, job_id: str) -> None:
        self._run("LEAVE_IN_FLIGHT", key, job_id)

    # --- idempotency keys and batches ------------------------------------------------------

    @_guarded
    def claim_key(self, key: str, fingerprint: str, job_id: str) -> tuple[str, str]:
        bound, bound_fingerprint = self._run("CLAIM_KEY", key, fingerprint, job_id, self._ttl)
        return _text(bound), _text(bound_fingerprint)

    @_guarded
    def insert_batch(self, batch_id: str, data: dict[str, Any]) -> None:
        if not self._run("INSERT_BATCH", batch_id, _dump(data), self._batch_ttl):
            raise ValueError(f"batch {batch_id} exists")

    @_guarded
    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        data, jobs = self._r.hmget(self._key("batch", batch_id), ["data", "jobs"])
        if data is None:
            return None
        batch = dict(json.loads(data))
        if jobs is not None:
            batch["jobs"] = json.loads(jobs)
        return batch

    @_guarded
    def set_batch_jobs(self, batch_id: str, job_ids: list[str]) -> None:
        self._run("SET_BATCH_JOBS", batch_id, _dump(job_ids), self._batch_ttl)

    # --- the result cache's index ----------------------------------------------------------

    @_guarded
    def cache_get(self, key: str) -> CacheEntry | None:
        outputs, size = self._r.hmget(self._key("cache", key), ["outputs", "size"])
        if outputs is None or size is None:
            return None
        return CacheEntry(key, [Output(**o) for o in json.loads(outputs)], int(size))

    @_guarded
    def cache_put(self, entry: CacheEntry, used_at: float) -> None:
        outputs = _dump([o.__dict__ for o in entry.outputs])
        self._run("CACHE_PUT", entry.key, outputs, entry.size, repr(used_at))

    @_guarded
    def cache_touch(self, used: dict[str, float]) -> None:
        if used:  # XX: only entries that still exist
            self._r.zadd(self._key("cache-lru"), dict(used), xx=True)

    @_guarded
    def cache_delete(self, key: str) -> None:
        self._run("CACHE_DELETE", key)

    @_guarded
    def cache_size(self) -> int:
        total = self._r.get(self._key("cache-bytes"))
        return int(total) if total is not None else 0

    @_guarded
    def cache_oldest(self, limit: int) -> list[str]:
        if limit < 1:
            return []
        return [_text(k) for k in self._r.zrange(self._key("cache-lru"), 0, limit - 1)]

    # --- the webhook outbox ----------------------------------------------------------------

    def _delivery_args(self, d: Delivery) -> list[Any]:
        at = repr(d.next_attempt_at) if d.next_attempt_at is not None else ""
        return [d.id, _dump(d.to_record()), d.state, at]

    @_guarded
    def claim_deliveries(self, now: float, until: float, limit: int) -> list[Delivery]:
        recs = self._run("CLAIM_DELIVERIES", repr(now), repr(until), limit)
        return [_delivery(rec, repr(until)) for rec in recs]

    @_guarded
    def next_delivery_at(self) -> float | None:
        first = self._r.zrange(self._key("dlv-due"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    @_guarded
    def save_delivery(self, delivery: Delivery) -> None:
        did, rec, state, at = self._delivery_args(delivery)
        self._run("SAVE_DELIVERY", did, delivery.job_id, rec, state, at, self._ttl)

    @_guarded
    def get_delivery(self, delivery_id: str) -> Delivery | None:
        rec, at = self._r.hmget(self._key("dlv", delivery_id), ["rec", "at"])
        return _delivery(rec, at) if rec is not None else None
