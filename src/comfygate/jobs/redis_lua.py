"""The Lua scripts of the Redis job store, for jobs and leases (``redis_lua_records.py`` has
those of the records beside them): every write, and every read that must see several keys
at one instant, is one script, so Redis runs it atomically (no check-then-set from Python,
whatever the number of replicas).

Keys, all under the store's prefix ``P`` (the first argument of every script):

    P seq                    INCR counter: a job's ``seq``, its place in every ordering
    P job:<id>               hash: rec (JSON of Job.to_record), v, status, owner, holder, seq
    P status:<s>             zset id -> seq, every job in status s (pages, counts)
    P owner:<o>:<s>          zset id -> seq, owner o's jobs in status s (pages per owner)
    P queue                  zset id -> seq, queued jobs nobody holds (what ``claim`` takes)
    P leases                 zset id -> lease end, unfinished jobs with a holder
    P held:<holder>          set of the unfinished jobs ``holder`` holds (its own, at restart)
    P finished               zset id -> finished_at (``finished_before``)
    P job-keys:<id>          set of the Idempotency-Keys bound to the job
    P idem:<key>             hash: job, fp
    P inflight:<key>         string: the job computing a coalescing key
    P job-inflight:<id>      set of the coalescing keys bound to the job
    P batch:<id>             hash: data (JSON), jobs (JSON list)
    P cache:<key>            hash: outputs (JSON), size
    P cache-lru              zset key -> time of last use
    P cache-bytes            the cache entries' total size
    P dlv:<id>               hash: rec (JSON of Delivery.to_record), at (next attempt), job
    P dlv-due                zset id -> next attempt, pending deliveries
    P job-dlv:<id>           set of the job's delivery ids

Every unfinished job is in exactly one of ``queue`` (queued, no holder) and ``leases`` (held;
a holder written by ``swap`` without a lease has one that ended: score 0). A finished job
leaves both and gets a TTL (its keys expire if no sweep deletes it first).

Values are passed and stored as the strings Python made: a Lua number handed back to Redis is
formatted with 14 digits, which would round a timestamp to 0.1 ms or worse.
"""

from __future__ import annotations

# Shared by the scripts (Redis 7's functions could share them; register_script cannot).
PRELUDE = """
local P = ARGV[1]
local TERMINAL = {succeeded = true, failed = true, cancelled = true}
local STATUSES = {'queued', 'submitted', 'running', 'succeeded', 'failed', 'cancelled'}
local function jobkey(id) return P .. 'job:' .. id end

-- Move a job between the indexes, from (old_status, old_owner, old_holder) to the new ones;
-- old_status is false for a new job. finished_at: the score of a finished job.
local function reindex(id, seq, old_status, old_owner, old_holder, status, owner, holder,
                       finished_at, ttl)
  if old_status ~= status or old_owner ~= owner then
    if old_status then
      redis.call('ZREM', P .. 'status:' .. old_status, id)
      if old_owner ~= '' then
        redis.call('ZREM', P .. 'owner:' .. old_owner .. ':' .. old_status, id)
      end
    end
    redis.call('ZADD', P .. 'status:' .. status, seq, id)
    if owner ~= '' then redis.call('ZADD', P .. 'owner:' .. owner .. ':' .. status, seq, id) end
  end
  local live = not TERMINAL[status]
  if old_holder ~= '' and (old_holder ~= holder or not live) then
    redis.call('SREM', P .. 'held:' .. old_holder, id)
  end
  if live and holder ~= '' then
    redis.call('SADD', P .. 'held:' .. holder, id)
    redis.call('ZADD', P .. 'leases', 'NX', 0, id)  -- a lease it has is kept
  else
    redis.call('ZREM', P .. 'leases', id)
  end
  if status == 'queued' and holder == '' then
    redis.call('ZADD', P .. 'queue', seq, id)
  else
    redis.call('ZREM', P .. 'queue', id)
  end
  if live then
    redis.call('ZREM', P .. 'finished', id)
    redis.call('PERSIST', jobkey(id))
  else
    redis.call('ZADD', P .. 'finished', finished_at, id)
    redis.call('PEXPIRE', jobkey(id), ttl)
    local keys = P .. 'job-keys:' .. id
    for _, key in ipairs(redis.call('SMEMBERS', keys)) do
      redis.call('PEXPIRE', P .. 'idem:' .. key, ttl)
    end
    redis.call('PEXPIRE', keys, ttl)
  end
end

local function save_delivery(did, job_id, rec, state, at, ttl)
  local dk = P .. 'dlv:' .. did
  redis.call('HSET', dk, 'rec', rec, 'at', at, 'job', job_id)
  redis.call('PEXPIRE', dk, ttl)
  if state == 'pending' and at ~= '' then
    redis.call('ZADD', P .. 'dlv-due', at, did)
  else
    redis.call('ZREM', P .. 'dlv-due', did)
  end
  redis.call('SADD', P .. 'job-dlv:' .. job_id, did)
  redis.call('PEXPIRE', P .. 'job-dlv:' .. job_id, ttl)
end

-- Give the job to holder until the given time; a new version (the old holder's swap fails).
local function take(id, holder, untl)
  local k = jobkey(id)
  local old = redis.call('HGET', k, 'holder')
  if old and old ~= '' and old ~= holder then redis.call('SREM', P .. 'held:' .. old, id) end
  redis.call('HSET', k, 'holder', holder)
  local v = redis.call('HINCRBY', k, 'v', 1)
  redis.call('ZREM', P .. 'queue', id)
  redis.call('ZADD', P .. 'leases', untl, id)
  redis.call('SADD', P .. 'held:' .. holder, id)
  return {redis.call('HGET', k, 'rec'), v, holder}
end
"""

# ARGV: P, id, rec, status, owner, finished_at, ttl_ms. 0 if the id exists (1 if it holds
# this very record at version 1: the same insert, re-sent after its reply was lost).
INSERT = (
    PRELUDE
    + """
local id = ARGV[2]
local k = jobkey(id)
if redis.call('EXISTS', k) == 1 then
  local d = redis.call('HMGET', k, 'rec', 'v')
  if d[1] == ARGV[3] and d[2] == '1' then return 1 end
  return 0
end
local seq = redis.call('INCR', P .. 'seq')
redis.call('HSET', k, 'rec', ARGV[3], 'v', 1, 'status', ARGV[4], 'owner', ARGV[5],
           'holder', '', 'seq', seq)
reindex(id, seq, false, '', '', ARGV[4], ARGV[5], '', ARGV[6], ARGV[7])
return 1
"""
)

# ARGV: P, id, rec, status, owner, finished_at, ttl_ms, holder, until, now. A new job held by
# holder until then, unless a queued job waits for a claim (in the queue, or held by a lease
# that ended before now: what CLAIM takes): 1 written, 0 not (one waits), -1 the id exists (1
# if it holds this very record at version 1 for holder: the same call, re-sent).
INSERT_HELD = (
    PRELUDE
    + """
local id, holder, untl, now = ARGV[2], ARGV[8], ARGV[9], ARGV[10]
local k = jobkey(id)
if redis.call('EXISTS', k) == 1 then
  local d = redis.call('HMGET', k, 'rec', 'v', 'holder')
  if d[1] == ARGV[3] and d[2] == '1' and d[3] == holder then return 1 end
  return -1
end
if redis.call('ZCARD', P .. 'queue') > 0 then return 0 end
for _, lid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now,
                                'LIMIT', 0, 1000)) do
  if redis.call('HGET', jobkey(lid), 'status') == 'queued' then return 0 end
end
local seq = redis.call('INCR', P .. 'seq')
redis.call('HSET', k, 'rec', ARGV[3], 'v', 1, 'status', ARGV[4], 'owner', ARGV[5],
           'holder', holder, 'seq', seq)
reindex(id, seq, false, '', '', ARGV[4], ARGV[5], holder, ARGV[6], ARGV[7])
redis.call('ZADD', P .. 'leases', untl, id)
return 1
"""
)

# ARGV: P, id, expected, rec, status, owner, holder, finished_at, ttl_ms
#       [, delivery id, delivery rec, state, next attempt]. The new version, or 0. A swap
# re-sent after its reply was lost (redisconn retries a timeout) finds its own write, one
# version on, and answers as the first time.
SWAP = (
    PRELUDE
    + """
local id = ARGV[2]
local k = jobkey(id)
local cur = redis.call('HMGET', k, 'v', 'status', 'owner', 'holder', 'seq', 'rec')
if not cur[1] then return 0 end
if tonumber(cur[1]) ~= tonumber(ARGV[3]) then
  if tonumber(cur[1]) == tonumber(ARGV[3]) + 1 and cur[6] == ARGV[4] and cur[4] == ARGV[7] then
    return tonumber(cur[1])
  end
  return 0
end
local v = tonumber(cur[1]) + 1
redis.call('HSET', k, 'rec', ARGV[4], 'v', v, 'status', ARGV[5], 'owner', ARGV[6],
           'holder', ARGV[7])
reindex(id, cur[5], cur[2], cur[3], cur[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
if ARGV[10] then save_delivery(ARGV[10], id, ARGV[11], ARGV[12], ARGV[13], ARGV[9]) end
return v
"""
)

# ARGV: P, limit, bound ('+inf' or the seq the page starts below), owner ('' any), statuses...
# {rec, v, holder, ... of up to limit jobs, newest first; the last one's seq or false}.
# Members whose job expired are dropped from the index they were found in.
PAGE = (
    PRELUDE
    + """
local limit = tonumber(ARGV[2])
local bound = ARGV[3]
local keys = {}
for i = 5, #ARGV do
  if ARGV[4] ~= '' then keys[#keys + 1] = P .. 'owner:' .. ARGV[4] .. ':' .. ARGV[i]
  else keys[#keys + 1] = P .. 'status:' .. ARGV[i] end
end
local out, last, found = {}, false, 0
while found <= limit do
  local need = limit + 1 - found
  local cands = {}
  for _, key in ipairs(keys) do
    local r = redis.call('ZREVRANGEBYSCORE', key, '(' .. bound, '-inf', 'WITHSCORES',
                        'LIMIT', 0, need)
    for i = 1, #r, 2 do cands[#cands + 1] = {r[i], tonumber(r[i + 1]), r[i + 1], key} end
  end
  if #cands == 0 then break end
  table.sort(cands, function(a, b) return a[2] > b[2] end)
  for i = 1, math.min(#cands, need) do
    local c = cands[i]
    bound = c[3]
    local d = redis.call('HMGET', jobkey(c[1]), 'rec', 'v', 'holder')
    if d[1] then
      found = found + 1
      if found <= limit then
        out[#out + 1] = d[1]; out[#out + 1] = d[2]; out[#out + 1] = d[3]
        last = c[3]
      end
    else
      redis.call('ZREM', c[4], c[1])
    end
  end
end
if found > limit then return {out, last} end
return {out, false}
"""
)

# ARGV: P. {rec, v, holder, seq, ...} of every unfinished job.
UNFINISHED = (
    PRELUDE
    + """
local out = {}
for _, s in ipairs(STATUSES) do
  if not TERMINAL[s] then
    for _, id in ipairs(redis.call('ZRANGE', P .. 'status:' .. s, 0, -1)) do
      local d = redis.call('HMGET', jobkey(id), 'rec', 'v', 'holder', 'seq')
      if d[1] then
        out[#out + 1] = d[1]; out[#out + 1] = d[2]; out[#out + 1] = d[3]; out[#out + 1] = d[4]
      end
    end
  end
end
return out
"""
)

# ARGV: P, id. The job, its index entries, idempotency keys, deliveries and in-flight keys.
DELETE = (
    PRELUDE
    + """
local id = ARGV[2]
local k = jobkey(id)
local d = redis.call('HMGET', k, 'owner', 'holder')
for _, s in ipairs(STATUSES) do
  redis.call('ZREM', P .. 'status:' .. s, id)
  if d[1] and d[1] ~= '' then redis.call('ZREM', P .. 'owner:' .. d[1] .. ':' .. s, id) end
end
if d[2] and d[2] ~= '' then redis.call('SREM', P .. 'held:' .. d[2], id) end
redis.call('ZREM', P .. 'queue', id)
redis.call('ZREM', P .. 'leases', id)
redis.call('ZREM', P .. 'finished', id)
for _, key in ipairs(redis.call('SMEMBERS', P .. 'job-keys:' .. id)) do
  if redis.call('HGET', P .. 'idem:' .. key, 'job') == id then
    redis.call('DEL', P .. 'idem:' .. key)
  end
end
for _, did in ipairs(redis.call('SMEMBERS', P .. 'job-dlv:' .. id)) do
  redis.call('DEL', P .. 'dlv:' .. did)
  redis.call('ZREM', P .. 'dlv-due', did)
end
for _, key in ipairs(redis.call('SMEMBERS', P .. 'job-inflight:' .. id)) do
  if redis.call('GET', P .. 'inflight:' .. key) == id then
    redis.call('DEL', P .. 'inflight:' .. key)
  end
end
redis.call('DEL', k, P .. 'job-keys:' .. id, P .. 'job-dlv:' .. id, P .. 'job-inflight:' .. id)
return 1
"""
)

# ARGV: P, holder, until, now, exclude... The oldest queued job that nobody holds (or whose
# lease ended before now), taken: {rec, v, holder} or false.
CLAIM = (
    PRELUDE
    + """
local holder, untl, now = ARGV[2], ARGV[3], ARGV[4]
local skip = {}
for i = 5, #ARGV do skip[ARGV[i]] = true end
local best, best_seq = false, false
local start = 0
while not best do
  local ids = redis.call('ZRANGE', P .. 'queue', start, start + 99, 'WITHSCORES')
  if #ids == 0 then break end
  for i = 1, #ids, 2 do
    if not skip[ids[i]] then best, best_seq = ids[i], tonumber(ids[i + 1]); break end
  end
  start = start + 100
end
-- Queued jobs claimed by a holder that died before submitting them: few, and taken over
-- by the next take_over anyway (bounded: a script blocks Redis while it runs).
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now,
                               'LIMIT', 0, 1000)) do
  if not skip[id] then
    local d = redis.call('HMGET', jobkey(id), 'status', 'seq')
    if d[1] == 'queued' and (not best_seq or tonumber(d[2]) < best_seq) then
      best, best_seq = id, tonumber(d[2])
    end
  end
end
if not best then return false end
return take(best, holder, untl)
"""
)

# ARGV: P, holder, until, now, limit, own ('1' or ''). {rec, v, holder, ...}: the unfinished
# jobs whose lease ended before now (and, with own, those holder holds), oldest first, taken.
TAKE_OVER = (
    PRELUDE
    + """
local holder, untl, now, limit, own = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local seen, list = {}, {}
local function consider(id)
  if seen[id] then return end
  seen[id] = true
  local d = redis.call('HMGET', jobkey(id), 'status', 'seq')
  if d[1] and not TERMINAL[d[1]] then list[#list + 1] = {id, tonumber(d[2])}
  else
    redis.call('ZREM', P .. 'leases', id)
    redis.call('SREM', P .. 'held:' .. holder, id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now)) do
  consider(id)
end
if own ~= '' then
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'held:' .. holder)) do consider(id) end
end
table.sort(list, function(a, b) return a[2] < b[2] end)
local out = {}
for i = 1, math.min(#list, limit) do
  local t = take(list[i][1], holder, untl)
  out[#out + 1] = t[1]; out[#out + 1] = t[2]; out[#out + 1] = t[3]
end
return out
"""
)

# ARGV: P, holder, until, ids... The ids holder still holds (their leases extended).
RENEW = (
    PRELUDE
    + """
local holder, untl = ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV do
  if redis.call('HGET', jobkey(ARGV[i]), 'holder') == holder then
    redis.call('ZADD', P .. 'leases', 'XX', untl, ARGV[i])  -- a finished job has none
    out[#out + 1] = ARGV[i]
  end
end
return out
"""
)


SCRIPTS = {
    "INSERT": INSERT,
    "INSERT_HELD": INSERT_HELD,
    "SWAP": SWAP,
    "PAGE": PAGE,
    "UNFINISHED": UNFINISHED,
    "DELETE": DELETE,
    "CLAIM": CLAIM,
    "TAKE_OVER": TAKE_OVER,
    "RENEW": RENEW,
}
