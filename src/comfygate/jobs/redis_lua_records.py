"""The Lua scripts of the Redis job store for the records beside the jobs: coalescing,
idempotency keys, batches, the cache index and the webhook outbox (the key layout is drawn
in ``redis_lua.py``). Each is atomic in Redis, as there.
"""

from __future__ import annotations

from comfygate.jobs.redis_lua import PRELUDE

# ARGV: P, key, job id, ttl_ms. The job id bound now: another one stays bound while it is
# unfinished, succeeded (until it leaves) or not written yet (the caller joins before it
# inserts).
JOIN_IN_FLIGHT = (
    PRELUDE
    + """
local fk = P .. 'inflight:' .. ARGV[2]
local cur = redis.call('GET', fk)
if cur and cur ~= ARGV[3] then
  local status = redis.call('HGET', jobkey(cur), 'status')
  if not status or not TERMINAL[status] or status == 'succeeded' then return cur end
end
redis.call('SET', fk, ARGV[3], 'PX', ARGV[4])
local rk = P .. 'job-inflight:' .. ARGV[3]
redis.call('SADD', rk, ARGV[2])
redis.call('PEXPIRE', rk, ARGV[4])
return ARGV[3]
"""
)

# ARGV: P, key, job id.
LEAVE_IN_FLIGHT = """
local fk = ARGV[1] .. 'inflight:' .. ARGV[2]
if redis.call('GET', fk) == ARGV[3] then redis.call('DEL', fk) end
redis.call('SREM', ARGV[1] .. 'job-inflight:' .. ARGV[3], ARGV[2])
return 1
"""

# ARGV: P, key, fingerprint, job id, ttl_ms. {job id, fingerprint} the key is bound to.
CLAIM_KEY = (
    PRELUDE
    + """
local ik = P .. 'idem:' .. ARGV[2]
local cur = redis.call('HMGET', ik, 'job', 'fp')
if cur[1] then return cur end
redis.call('HSET', ik, 'job', ARGV[4], 'fp', ARGV[3])
redis.call('PEXPIRE', ik, ARGV[5])
local keys = P .. 'job-keys:' .. ARGV[4]
redis.call('SADD', keys, ARGV[2])
redis.call('PEXPIRE', keys, ARGV[5])
return {ARGV[4], ARGV[3]}
"""
)

# ARGV: P, id, data, ttl_ms. 0 if the id exists.
INSERT_BATCH = """
local bk = ARGV[1] .. 'batch:' .. ARGV[2]
if redis.call('EXISTS', bk) == 1 then return 0 end
redis.call('HSET', bk, 'data', ARGV[3])
redis.call('PEXPIRE', bk, ARGV[4])
return 1
"""

# ARGV: P, id, jobs, ttl_ms. Only an existing batch.
SET_BATCH_JOBS = """
local bk = ARGV[1] .. 'batch:' .. ARGV[2]
if redis.call('EXISTS', bk) == 0 then return 0 end
redis.call('HSET', bk, 'jobs', ARGV[3])
redis.call('PEXPIRE', bk, ARGV[4])
return 1
"""

# ARGV: P, key, outputs, size, used_at.
CACHE_PUT = """
local P = ARGV[1]
local ck = P .. 'cache:' .. ARGV[2]
local old = redis.call('HGET', ck, 'size')
if old then redis.call('DECRBY', P .. 'cache-bytes', old) end
redis.call('HSET', ck, 'outputs', ARGV[3], 'size', ARGV[4])
redis.call('ZADD', P .. 'cache-lru', ARGV[5], ARGV[2])
redis.call('INCRBY', P .. 'cache-bytes', ARGV[4])
return 1
"""

# ARGV: P, key.
CACHE_DELETE = """
local P = ARGV[1]
local ck = P .. 'cache:' .. ARGV[2]
local old = redis.call('HGET', ck, 'size')
if not old then return 0 end
redis.call('DECRBY', P .. 'cache-bytes', old)
redis.call('DEL', ck)
redis.call('ZREM', P .. 'cache-lru', ARGV[2])
return 1
"""

# ARGV: P, id, job id, rec, state, next attempt ('' none), ttl_ms.
SAVE_DELIVERY = (
    PRELUDE
    + """
save_delivery(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
"""
)

# ARGV: P, now, until, limit. The recs of the pending deliveries due at now, oldest first,
# each now due at until.
CLAIM_DELIVERIES = """
local P = ARGV[1]
local out = {}
for _, did in ipairs(redis.call('ZRANGEBYSCORE', P .. 'dlv-due', '-inf', ARGV[2],
                                'LIMIT', 0, tonumber(ARGV[4]))) do
  local dk = P .. 'dlv:' .. did
  local rec = redis.call('HGET', dk, 'rec')
  if rec then
    redis.call('ZADD', P .. 'dlv-due', ARGV[3], did)
    redis.call('HSET', dk, 'at', ARGV[3])
    out[#out + 1] = rec
  else
    redis.call('ZREM', P .. 'dlv-due', did)  -- expired
  end
end
return out
"""


SCRIPTS = {
    "JOIN_IN_FLIGHT": JOIN_IN_FLIGHT,
    "LEAVE_IN_FLIGHT": LEAVE_IN_FLIGHT,
    "CLAIM_KEY": CLAIM_KEY,
    "INSERT_BATCH": INSERT_BATCH,
    "SET_BATCH_JOBS": SET_BATCH_JOBS,
    "CACHE_PUT": CACHE_PUT,
    "CACHE_DELETE": CACHE_DELETE,
    "SAVE_DELIVERY": SAVE_DELIVERY,
    "CLAIM_DELIVERIES": CLAIM_DELIVERIES,
}
