"""The Lua scripts of the Redis journal: every change of state is one of these, run atomically.

Each script gets the same KEYS (`KEY_PARTS`, all under the profile's hash tag) and starts with
`PRELUDE`: the record layout, the index rules (`index`/`unindex`), and for writing scripts a
guard that refuses, before anything is written, a key of the wrong type or a journal laid out by
a newer MatoKit. Writing scripts carry the `#!lua` shebang without `allow-oom`, so an
out-of-memory server refuses them before they start rather than halfway. Floats that a script
computes are written with `%.17g`, which reads back as the same double; every other float is
passed in as Python's repr and stored as given.
"""

from __future__ import annotations

from typing import Final

# The journal's keys, in the order of KEYS (1-based in Lua), with the Redis type each holds.
KEY_PARTS: Final = (
    ("entries", "hash"),  # id -> record (see RECORD_FIELDS)
    ("keys", "hash"),  # idempotency key -> id
    ("state:pending", "zset"),  # ids by state, score 0: id (= time) order, prefixes by lex
    ("state:inflight", "zset"),
    ("state:sent_unconfirmed", "zset"),
    ("state:unattributed", "zset"),
    ("state:dead", "zset"),
    ("sched", "zset"),  # claimable (pending/sent_unconfirmed, no lookup awaited) by next attempt
    ("ready", "zset"),  # claimable and due as of the last claim, score 0: claimed in id order
    ("waiting", "zset"),  # claimable, not yet due, by next attempt (moved to ready when due)
    ("leases", "zset"),  # inflight without a key dimension, by lease expiry
    ("stamped", "zset"),  # inflight carrying a key dimension, by lease expiry
    ("lookups", "zset"),  # awaiting a lookup (verify), by when it is due
    ("delivered", "zset"),  # idempotency key -> delivered at: the dedup window
    ("delivered:unconfirmed", "zset"),  # the delivered keys whose delivery followed a lost answer
    ("delivered:confirmed", "zset"),  # the delivered keys a lookup confirmed
    ("reasons:dead", "hash"),  # reason -> how many dead letters give it
    ("reasons:unattributed", "hash"),
    ("counters", "hash"),  # seq (the last enqueued entry's), unconfirmed (sum of those counts)
    ("sites", "hash"),  # idSite -> site record (see SITE_FIELDS)
    ("flushes", "list"),  # the last FLUSH_HISTORY flush records, newest first
    ("meta", "hash"),  # layout: the record layout's version
)

# An entry's record: these fields joined by \x1f, the key last (it may hold anything). Text
# fields are "" for None and "=" + text otherwise; numbers are "" for None.
RECORD_FIELDS: Final = (
    "seq",
    "created_at",
    "enqueued_at",
    "attempts",
    "next_attempt_at",
    "state",
    "last_error",
    "lease_owner",
    "lease_expires_at",
    "reason",
    "sent_unconfirmed",
    "dimension",
    "sent_at",
    "verify",
    "alone",
    "params",
    "key",
)
LAYOUT: Final = 1
SEPARATOR: Final = "\x1f"

_KEY_NAMES = "\n".join(
    f"local {name} = KEYS[{i}]"
    for i, name in enumerate(
        (
            "E",
            "KY",
            "ST_PENDING",
            "ST_INFLIGHT",
            "ST_UNCONFIRMED",
            "ST_UNATTRIBUTED",
            "ST_DEAD",
            "SCHED",
            "READY",
            "WAITING",
            "LEASES",
            "STAMPED",
            "LOOKUPS",
            "DELIVERED",
            "D_UNCONFIRMED",
            "D_CONFIRMED",
            "R_DEAD",
            "R_UNATTRIBUTED",
            "COUNTERS",
            "SITES",
            "FLUSHES",
            "META",
        ),
        start=1,
    )
)
_FIELD_NAMES = "\n".join(
    f"local F_{name.upper()} = {i}" for i, name in enumerate(RECORD_FIELDS, start=1)
)
_TYPES = ", ".join(f"'{kind}'" for _, kind in KEY_PARTS)

_HEADER = f"""
local US = '\\031'
{_KEY_NAMES}
{_FIELD_NAMES}
local NFIELDS = {len(RECORD_FIELDS)}
local ST = {{pending = ST_PENDING, inflight = ST_INFLIGHT, sent_unconfirmed = ST_UNCONFIRMED,
             unattributed = ST_UNATTRIBUTED, dead = ST_DEAD}}
local REASONS = {{dead = R_DEAD, unattributed = R_UNATTRIBUTED}}

"""

_BODY = """
-- One pattern match (in C) splits a record: much cheaper in Lua than a loop of finds.
local RECORD = '^' .. string.rep('([^\\031]*)\\031', NFIELDS - 1) .. '(.*)$'
local function parse(rec) return {string.match(rec, RECORD)} end

local function pack(f) return table.concat(f, US, 1, NFIELDS) end

local function copy(f)
  return {f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13],
          f[14], f[15], f[16], f[17]}
end

local function fmt(x) return string.format('%.17g', x) end

-- Changes are gathered in B and written by `flush()`, one command per key for the whole
-- script (removals before additions) instead of several per entry: a batch of a hundred
-- hits costs a few dozen commands. Redis runs the script alone, so nobody sees it halfway.
local B
local function reset()
  B = {rem = {}, add = {}, addxx = {}, incr = {}, hset = {}, edel = {}, kdel = {},
       unconfirmed = 0, touched = {}, cache = {}}
end
reset()

local function zrem(key, id)
  local t = B.rem[key]
  if not t then t = {}; B.rem[key] = t end
  t[#t + 1] = id
end

local function zadd(key, score, id, xx)
  local bucket = xx and B.addxx or B.add
  local t = bucket[key]
  if not t then t = {}; bucket[key] = t end
  t[#t + 1] = score
  t[#t + 1] = id
end

local function hincr(key, field, n)
  local t = B.incr[key]
  if not t then t = {}; B.incr[key] = t end
  t[field] = (t[field] or 0) + n
end

local function chunked(cmd, key, args, prefix)
  for i = 1, #args, 4000 do
    local j = math.min(i + 3999, #args)
    if prefix then
      redis.call(cmd, key, prefix, unpack(args, i, j))
    else
      redis.call(cmd, key, unpack(args, i, j))
    end
  end
end

local function flush()
  for key, ids in pairs(B.rem) do chunked('ZREM', key, ids) end
  if #B.edel > 0 then chunked('HDEL', E, B.edel) end
  if #B.kdel > 0 then chunked('HDEL', KY, B.kdel) end
  if #B.hset > 0 then chunked('HSET', E, B.hset) end
  for key, members in pairs(B.add) do chunked('ZADD', key, members) end
  for key, members in pairs(B.addxx) do chunked('ZADD', key, members, 'XX') end
  for key, fields in pairs(B.incr) do
    for field, n in pairs(B.incr[key]) do
      if n ~= 0 and redis.call('HINCRBY', key, field, n) <= 0 then
        redis.call('HDEL', key, field)
      end
    end
  end
  if B.unconfirmed ~= 0 then redis.call('HINCRBY', COUNTERS, 'unconfirmed', B.unconfirmed) end
  reset()
end

-- HMGET of any number of fields: the values in order (false where there is none).
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 4000 do
    local j = math.min(i + 3999, #fields)
    local values = redis.call('HMGET', key, unpack(fields, i, j))
    for k = i, j do out[k] = values[k - i + 1] end
  end
  return out
end

-- ARGV from position `first` on, as a list.
local function from(first)
  local out = {}
  for i = first, #ARGV do out[#out + 1] = ARGV[i] end
  return out
end

-- Read the records of `ids` at once (before changing any of them).
local function prefetch(ids)
  local recs = hmget(E, ids)
  for k, id in ipairs(ids) do
    if recs[k] then B.cache[id] = recs[k] end
  end
end

local function load(id)
  if B.touched[id] then flush() end  -- the same id twice in one call: write the first change
  local rec = B.cache[id]
  if rec == nil then rec = redis.call('HGET', E, id) end
  if rec then return parse(rec) end
  return nil
end

local function queued(f)
  local s = f[F_STATE]
  return s == 'pending' or s == 'inflight' or s == 'sent_unconfirmed'
end

local function claimable(f)
  local s = f[F_STATE]
  return (s == 'pending' or s == 'sent_unconfirmed') and f[F_VERIFY] ~= '1'
end

local function reason_of(f)
  if f[F_REASON] == '' then return '' end
  return string.sub(f[F_REASON], 2)
end

-- The indexes an entry is in follow from its fields alone: `index` adds them, `unindex`
-- removes them, so every change is unindex(old), write, index(new) and no index goes stale.
local function index(id, f, now)
  local s = f[F_STATE]
  zadd(ST[s], 0, id)
  if f[F_VERIFY] == '1' then zadd(LOOKUPS, f[F_NEXT_ATTEMPT_AT], id) end
  if s == 'inflight' then
    zadd(f[F_DIMENSION] == '' and LEASES or STAMPED, f[F_LEASE_EXPIRES_AT], id)
  elseif claimable(f) then
    zadd(SCHED, f[F_NEXT_ATTEMPT_AT], id)
    if tonumber(f[F_NEXT_ATTEMPT_AT]) <= now then
      zadd(READY, 0, id)
    else
      zadd(WAITING, f[F_NEXT_ATTEMPT_AT], id)
    end
  elseif s == 'dead' or s == 'unattributed' then
    hincr(REASONS[s], reason_of(f), 1)
  end
end

local function unindex(id, f)
  local s = f[F_STATE]
  zrem(ST[s], id)
  if f[F_VERIFY] == '1' then zrem(LOOKUPS, id) end
  if s == 'inflight' then
    zrem(f[F_DIMENSION] == '' and LEASES or STAMPED, id)
  elseif claimable(f) then
    zrem(SCHED, id)
    zrem(READY, id)
    zrem(WAITING, id)
  elseif s == 'dead' or s == 'unattributed' then
    hincr(REASONS[s], reason_of(f), -1)
  end
end

-- One entry from `old` to `new` (both parsed records): indexes, record and counters.
local function change(id, old, new, now)
  unindex(id, old)
  local n = #B.hset
  B.hset[n + 1], B.hset[n + 2] = id, pack(new)
  index(id, new, now)
  B.unconfirmed = B.unconfirmed + tonumber(new[F_SENT_UNCONFIRMED])
    - tonumber(old[F_SENT_UNCONFIRMED])
  B.touched[id] = true
end

local function delete(id, f)
  unindex(id, f)
  B.edel[#B.edel + 1] = id
  B.kdel[#B.kdel + 1] = f[F_KEY]
  B.unconfirmed = B.unconfirmed - tonumber(f[F_SENT_UNCONFIRMED])
  B.touched[id] = true
end

-- Remember `key` as delivered at `at`. With `unconfirmed` nil the flags it had are kept (a
-- direct send, a purge); otherwise they are set from this delivery.
local function remember(key, at, unconfirmed, confirmed)
  zadd(DELIVERED, at, key)
  if unconfirmed == nil then
    zadd(D_UNCONFIRMED, at, key, true)
  elseif unconfirmed > 0 then
    zadd(D_UNCONFIRMED, at, key)
  else
    zrem(D_UNCONFIRMED, key)
  end
  zadd(D_CONFIRMED, at, key, not confirmed)
end

-- A hit once sent with its answer lost stays flagged: Matomo may hold a copy whatever follows.
local function requeued_state(f)
  if tonumber(f[F_SENT_UNCONFIRMED]) > 0 then return 'sent_unconfirmed' end
  return 'pending'
end

local function clear_lease(f)
  f[F_LEASE_OWNER] = ''
  f[F_LEASE_EXPIRES_AT] = ''
end

-- retry-dead/-unattributed: due now, attempts reset, the max_age clock restarted.
local function requeue(f, now_s)
  f[F_STATE] = requeued_state(f)
  f[F_ATTEMPTS] = '0'
  f[F_NEXT_ATTEMPT_AT] = now_s
  f[F_ENQUEUED_AT] = now_s
  f[F_REASON] = ''
end
"""

PRELUDE: Final = _HEADER + _BODY

_GUARD = f"""
local TYPES = {{{_TYPES}}}
for i = 1, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= TYPES[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not the ' ..
      TYPES[i] .. ' the MatoKit journal keeps there')
  end
end
local layout = redis.call('HGET', META, 'layout')
if layout and tonumber(layout) > {LAYOUT} then
  return redis.error_reply('MATOKIT_LAYOUT ' .. layout)
end
if not layout then redis.call('HSET', META, 'layout', '{LAYOUT}') end
"""


def writing(body: str) -> str:
    """A script that may write: refused when the server is out of memory, guarded first."""
    return "#!lua\n" + PRELUDE + _GUARD + body


def reading(body: str) -> str:
    """A script that only reads (runs on a replica and when the server is out of memory)."""
    return "#!lua flags=no-writes\n" + PRELUDE + body


# ARGV: now, cutoff (delivered before it is forgotten), mode, then (id, key, record-without-seq)
# triples. Mode "pending" journals due hits; "uncertain" records whose fields say where they go.
# Returns how many were added, or -1 (nothing written) when an id is taken: the caller retries
# with fresh ids.
ENQUEUE: Final = writing("""
local now_s, cutoff, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = tonumber(now_s)
local seq = tonumber(redis.call('HGET', COUNTERS, 'seq') or '0')
local added, seen, plan, keys = 0, {}, {}, {}
-- First every check, a thousand hits per command; nothing is written if an id is taken.
for first = 4, #ARGV, 3000 do
  local last = math.min(first + 2999, #ARGV)
  local ids, wanted = {}, {}
  for i = first, last, 3 do
    ids[#ids + 1] = ARGV[i]
    wanted[#wanted + 1] = ARGV[i + 1]
  end
  for _, rec in ipairs(hmget(E, ids)) do
    if rec then return -1 end
  end
  local known = redis.call('HMGET', KY, unpack(wanted))
  local at = redis.call('ZMSCORE', DELIVERED, unpack(wanted))
  for n, key in ipairs(wanted) do
    local fresh = (not known[n]) and ((not at[n]) or tonumber(at[n]) < cutoff)
    if fresh and not seen[key] then
      seen[key] = true
      plan[#plan + 1] = first + 3 * (n - 1)
    end
  end
end
for _, i in ipairs(plan) do
  local id, key = ARGV[i], ARGV[i + 1]
  seq = seq + 1
  local rec = seq .. US .. ARGV[i + 2]
  local n = #B.hset
  B.hset[n + 1], B.hset[n + 2] = id, rec
  keys[n + 1], keys[n + 2] = key, id
  if mode == 'pending' then
    zadd(ST_PENDING, 0, id)
    zadd(SCHED, now_s, id)
    zadd(READY, 0, id)
  else
    local f = parse(rec)
    index(id, f, now)
    B.unconfirmed = B.unconfirmed + tonumber(f[F_SENT_UNCONFIRMED])
  end
  added = added + 1
end
if #keys > 0 then chunked('HSET', KY, keys) end
flush()
redis.call('HSET', COUNTERS, 'seq', seq)
return added
""")

# ARGV: owner, lease expiry, now, limit, stamp (1: give each hit its site's key dimension).
# Due: claimable with next attempt <= now, oldest id first, and inflight without a key
# dimension whose lease expired (its flusher died: that send counts as unconfirmed). Returns
# (id, record) pairs of the claimed entries.
CLAIM: Final = writing("""
local owner, expires_s, now_s = ARGV[1], ARGV[2], ARGV[3]
local now, limit, stamp = tonumber(now_s), tonumber(ARGV[4]), ARGV[5] == '1'
-- Entries whose time has come move from waiting to ready, in bulk.
local due = redis.call('ZRANGEBYSCORE', WAITING, '-inf', now_s)
if #due > 0 then
  local members = {}
  for _, id in ipairs(due) do
    members[#members + 1] = 0
    members[#members + 1] = id
  end
  chunked('ZADD', READY, members)
  redis.call('ZREMRANGEBYSCORE', WAITING, '-inf', now_s)
end
local found, cursor = {}, '-'
while #found < limit do
  local ids = redis.call('ZRANGEBYLEX', READY, cursor, '+', 'LIMIT', 0, limit - #found)
  if #ids == 0 then break end
  local recs = hmget(E, ids)
  for n, id in ipairs(ids) do
    local f = recs[n] and parse(recs[n])
    if not f then
      redis.call('ZREM', READY, id)
    elseif tonumber(f[F_NEXT_ATTEMPT_AT]) <= now then
      found[#found + 1] = {id, f}
    else
      -- made ready by a claim whose clock was ahead of this one: not due for us yet
      redis.call('ZREM', READY, id)
      redis.call('ZADD', WAITING, f[F_NEXT_ATTEMPT_AT], id)
    end
  end
  cursor = '(' .. ids[#ids]
end
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now_s, 'LIMIT', 0, limit)
if #expired > 0 then
  local recs = hmget(E, expired)
  for n, id in ipairs(expired) do
    if recs[n] then found[#found + 1] = {id, parse(recs[n])} end
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local sites = {}
local function dimension(f)
  local params = cjson.decode(f[F_PARAMS])
  local goal = params['idgoal']
  if goal ~= nil and goal ~= cjson.null then return '' end
  local site = tostring(math.floor(tonumber(params['idsite']) or 0))
  if sites[site] == nil then
    local rec = redis.call('HGET', SITES, site)
    sites[site] = rec and string.sub(rec, 1, string.find(rec, US, 1, true) - 1) or ''
  end
  return sites[site]
end
local out = {}
for i = 1, math.min(limit, #found) do
  local id, old = found[i][1], found[i][2]
  local new = copy(old)
  if old[F_STATE] == 'inflight' then
    new[F_SENT_UNCONFIRMED] = tostring(tonumber(old[F_SENT_UNCONFIRMED]) + 1)
    local previous = old[F_LEASE_OWNER] == '' and '?' or string.sub(old[F_LEASE_OWNER], 2)
    new[F_LAST_ERROR] = '=lease of ' .. previous .. ' expired'
  end
  new[F_STATE] = 'inflight'
  new[F_LEASE_OWNER] = '=' .. owner
  new[F_LEASE_EXPIRES_AT] = expires_s
  new[F_ATTEMPTS] = tostring(tonumber(old[F_ATTEMPTS]) + 1)
  new[F_SENT_AT] = now_s
  new[F_DIMENSION] = stamp and dimension(old) or ''
  change(id, old, new, now)
  out[#out + 1] = id
  out[#out + 1] = B.hset[#B.hset]
end
flush()
return out
""")

# ARGV: now, cutoff, ids. Delivered: deleted, keys remembered for the dedup window.
ACK: Final = writing("""
local now_s, cutoff_s = ARGV[1], ARGV[2]
local ids = from(3)
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local f = load(id)
  if f then
    delete(id, f)
    remember(f[F_KEY], now_s, tonumber(f[F_SENT_UNCONFIRMED]), false)
    n = n + 1
  end
end
flush()
-- Pruning is a range removal at the low end, nearly free when nothing has expired.
for _, key in ipairs({DELIVERED, D_UNCONFIRMED, D_CONFIRMED}) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff_s)
end
return n
""")

# ARGV: now, op, op's arguments..., then the entry ids (from ARGV[first]). One script for the
# changes of single entries, so that each rule reads like its SQL twin in journal/store.py.
UPDATE: Final = writing("""
local now_s, op = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local rule, first
if op == 'reschedule' then  -- bump, error, next
  first = 6
  rule = function(f)
    if not queued(f) then return false end
    f[F_SENT_UNCONFIRMED] = tostring(tonumber(f[F_SENT_UNCONFIRMED]) + tonumber(ARGV[3]))
    f[F_STATE] = requeued_state(f)
    f[F_LAST_ERROR] = '=' .. ARGV[4]
    f[F_NEXT_ATTEMPT_AT] = ARGV[5]
    clear_lease(f)
    return true
  end
elseif op == 'release' or op == 'hold' then  -- hold: error, until
  first = op == 'hold' and 5 or 3
  rule = function(f)
    if f[F_STATE] ~= 'inflight' then return false end
    f[F_ATTEMPTS] = tostring(math.max(tonumber(f[F_ATTEMPTS]) - 1, 0))
    f[F_STATE] = requeued_state(f)
    if op == 'hold' then
      f[F_LAST_ERROR] = '=' .. ARGV[3]
      f[F_NEXT_ATTEMPT_AT] = ARGV[4]
    end
    clear_lease(f)
    return true
  end
elseif op == 'unattributed' then  -- reason
  first = 4
  rule = function(f)
    if not queued(f) then return false end
    f[F_STATE] = 'unattributed'
    f[F_REASON] = '=' .. ARGV[3]
    clear_lease(f)
    return true
  end
elseif op == 'await' then  -- alone, error, settle
  first = 6
  rule = function(f)
    if not queued(f) then return false end
    local sent = f[F_SENT_AT] == '' and now or tonumber(f[F_SENT_AT])
    f[F_STATE] = 'sent_unconfirmed'
    f[F_SENT_UNCONFIRMED] = tostring(tonumber(f[F_SENT_UNCONFIRMED]) + 1)
    f[F_VERIFY] = '1'
    if ARGV[3] == '1' then f[F_ALONE] = '1' end
    f[F_LAST_ERROR] = '=' .. ARGV[4]
    f[F_NEXT_ATTEMPT_AT] = fmt(sent + tonumber(ARGV[5]))
    clear_lease(f)
    return true
  end
elseif op == 'missing' then
  first = 3
  rule = function(f)
    if f[F_VERIFY] ~= '1' then return false end
    f[F_VERIFY] = '0'
    f[F_SENT_UNCONFIRMED] = tostring(math.max(tonumber(f[F_SENT_UNCONFIRMED]) - 1, 0))
    f[F_STATE] = requeued_state(f)
    f[F_NEXT_ATTEMPT_AT] = now_s
    f[F_LAST_ERROR] = '=not in Matomo (looked up by key): sent again'
    return true
  end
elseif op == 'failed' then  -- error, next
  first = 5
  rule = function(f)
    if f[F_VERIFY] ~= '1' then return false end
    f[F_LAST_ERROR] = '=' .. ARGV[3]
    f[F_NEXT_ATTEMPT_AT] = ARGV[4]
    return true
  end
elseif op == 'give_up' then  -- error, reason
  first = 5
  rule = function(f)
    if f[F_VERIFY] ~= '1' then return false end
    f[F_VERIFY] = '0'
    f[F_LAST_ERROR] = '=' .. ARGV[3]
    if f[F_ALONE] == '1' then
      f[F_STATE] = 'unattributed'
      f[F_REASON] = '=' .. ARGV[4]
    else
      f[F_STATE] = 'sent_unconfirmed'
    end
    f[F_NEXT_ATTEMPT_AT] = now_s
    return true
  end
elseif op == 'dimension' then  -- dimension ('' for none)
  first = 4
  rule = function(f)
    if f[F_STATE] ~= 'inflight' then return false end
    f[F_DIMENSION] = ARGV[3]
    return true
  end
elseif op == 'requeue' then  -- from state
  first = 4
  rule = function(f)
    if f[F_STATE] ~= ARGV[3] then return false end
    requeue(f, now_s)
    return true
  end
elseif op == 'kill' then  -- then (id, reason) pairs
  local n = 0
  local ids = {}
  for i = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
  prefetch(ids)
  for i = 3, #ARGV, 2 do
    local old = load(ARGV[i])
    if old and old[F_STATE] ~= 'dead' then
      local new = copy(old)
      new[F_STATE] = 'dead'
      new[F_REASON] = '=' .. ARGV[i + 1]
      clear_lease(new)
      change(ARGV[i], old, new, now)
      n = n + 1
    end
  end
  flush()
  return n
else
  return redis.error_reply('ERR unknown journal update ' .. op)
end
local ids = from(first)
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local old = load(id)
  if old then
    local new = copy(old)
    if rule(new) then
      change(id, old, new, now)
      n = n + 1
    end
  end
end
flush()
return n
""")

# ARGV: now, from state, page size. Requeues up to a page of `state`'s entries (retry --all);
# returns (how many changed, how many were looked at).
REQUEUE_PAGE: Final = writing("""
local now_s, state = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local ids = redis.call('ZRANGE', ST[state], 0, tonumber(ARGV[3]) - 1)
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local old = load(id)
  if old then
    local new = copy(old)
    requeue(new, now_s)
    change(id, old, new, now)
    n = n + 1
  else
    zrem(ST[state], id)
  end
end
flush()
return {n, #ids}
""")

# ARGV: now, state, cutoff ('' for none: created_at < cutoff), after (a ZRANGEBYLEX bound),
# page size, remember (1: keep the keys as delivered). Deletes a page of `state`'s entries;
# returns (how many deleted, the last id looked at or '' when there are no more).
PURGE_PAGE: Final = writing("""
local now_s, state, after = ARGV[1], ARGV[2], ARGV[4]
local cutoff = ARGV[3] ~= '' and tonumber(ARGV[3]) or nil
local ids = redis.call('ZRANGEBYLEX', ST[state], after, '+', 'LIMIT', 0, tonumber(ARGV[5]))
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local f = load(id)
  if not f then
    zrem(ST[state], id)
  elseif cutoff == nil or tonumber(f[F_CREATED_AT]) < cutoff then
    delete(id, f)
    if ARGV[6] == '1' then remember(f[F_KEY], now_s, nil, false) end
    n = n + 1
  end
end
flush()
return {n, ids[#ids] or ''}
""")

# ARGV: now, then the ids of hits a lookup found in Matomo: delivered, never re-sent.
CONFIRM: Final = writing("""
local now_s = ARGV[1]
local ids = from(2)
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local f = load(id)
  if f and f[F_VERIFY] == '1' then
    delete(id, f)
    remember(f[F_KEY], now_s, math.max(tonumber(f[F_SENT_UNCONFIRMED]) - 1, 0), true)
    n = n + 1
  end
end
flush()
return n
""")

# ARGV: now, keys delivered without being journaled.
REMEMBER: Final = writing("""
for i = 2, #ARGV do remember(ARGV[i], ARGV[1], nil, false) end
flush()
return #ARGV - 1
""")

# ARGV: site, now, dimension ('' for none) or nil, reason or nil. With a reason, lookups are
# unavailable there (the dimension remembered is kept); without, the dimension is recorded and
# an earlier "unavailable" forgotten.
SITE: Final = writing("""
local site, now_s, dim, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if reason == nil then
  redis.call('HSET', SITES, site, table.concat({dim, now_s, '', ''}, US))
  return 1
end
local rec = redis.call('HGET', SITES, site)
local dimension, checked = '', now_s
if rec then
  local j = string.find(rec, US, 1, true)
  local k = string.find(rec, US, j + 1, true)
  dimension, checked = string.sub(rec, 1, j - 1), string.sub(rec, j + 1, k - 1)
end
redis.call('HSET', SITES, site, table.concat({dimension, checked, '=' .. reason, now_s}, US))
return 1
""")

# ARGV: the record (recorded_at \x1f JSON), how many to keep.
RECORD_FLUSH: Final = writing("""
redis.call('LPUSH', FLUSHES, ARGV[1])
redis.call('LTRIM', FLUSHES, 0, tonumber(ARGV[2]) - 1)
return 1
""")

# -- reading --

# ARGV: after (a ZRANGEBYLEX bound), limit, states... Returns (id, record) pairs in id order.
PAGE: Final = reading("""
local after, limit = ARGV[1], tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV do
  for _, id in ipairs(redis.call('ZRANGEBYLEX', ST[ARGV[i]], after, '+', 'LIMIT', 0, limit)) do
    ids[#ids + 1] = id
  end
end
table.sort(ids)
local out = {}
for i = 1, math.min(limit, #ids) do
  local rec = redis.call('HGET', E, ids[i])
  if rec then
    out[#out + 1] = ids[i]
    out[#out + 1] = rec
  end
end
return out
""")

# ARGV: at, start of the dedup window. Everything `stats` shows, read in one snapshot.
STATS: Final = reading("""
local at_s, window_s = ARGV[1], ARGV[2]
local out = {}
local states = {'pending', 'inflight', 'sent_unconfirmed', 'unattributed', 'dead'}
for i, s in ipairs(states) do out[i] = redis.call('ZCARD', ST[s]) end
out[6] = redis.call('HGET', COUNTERS, 'unconfirmed') or '0'
for i, s in ipairs({'pending', 'inflight', 'sent_unconfirmed'}) do
  local first = redis.call('ZRANGE', ST[s], 0, 0)[1]
  local rec = first and redis.call('HGET', E, first)
  out[6 + i] = rec and parse(rec)[F_CREATED_AT] or ''
end
local due, next_at = 0, nil
for _, key in ipairs({SCHED, LEASES, STAMPED}) do
  due = due + redis.call('ZCOUNT', key, '-inf', at_s)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  if first and (next_at == nil or tonumber(first) < tonumber(next_at)) then next_at = first end
end
out[10], out[11] = due, next_at or ''
out[12] = redis.call('ZCARD', LOOKUPS)
out[13] = redis.call('ZCOUNT', LOOKUPS, '-inf', at_s)
out[14] = redis.call('ZRANGE', LOOKUPS, 0, 0, 'WITHSCORES')[2] or ''
out[15] = redis.call('HGETALL', R_UNATTRIBUTED)
out[16] = redis.call('HGETALL', R_DEAD)
out[17] = redis.call('ZCOUNT', DELIVERED, window_s, '+inf')
out[18] = redis.call('ZCOUNT', D_UNCONFIRMED, window_s, '+inf')
out[19] = redis.call('ZCOUNT', D_CONFIRMED, window_s, '+inf')
out[20] = redis.call('HGETALL', SITES)
out[21] = redis.call('LINDEX', FLUSHES, 0) or ''
local bytes = 0
for i = 1, #KEYS do bytes = bytes + (redis.call('MEMORY', 'USAGE', KEYS[i]) or 0) end
out[22] = bytes
return out
""")

# ARGV: HSCAN cursor, mark, count. Counts a slice of the entries by (journaled after the mark,
# state or awaiting_lookup); returns the next cursor, then (label, count) pairs.
TALLY: Final = reading("""
local mark = tonumber(ARGV[2])
local scan = redis.call('HSCAN', E, ARGV[1], 'COUNT', tonumber(ARGV[3]))
local counts = {}
local records = scan[2]
for i = 2, #records, 2 do
  local f = parse(records[i])
  local what = f[F_VERIFY] == '1' and 'awaiting_lookup' or f[F_STATE]
  local label = (tonumber(f[F_SEQ]) > mark and '1:' or '0:') .. what
  counts[label] = (counts[label] or 0) + 1
end
local out = {scan[1]}
for label, n in pairs(counts) do
  out[#out + 1] = label
  out[#out + 1] = n
end
return out
""")

# ARGV: a ZRANGEBYLEX range (min, max) and a limit. (id, state) pairs over every state, in id
# order: the entries a typed prefix names.
STARTING_WITH: Final = reading("""
local found = {}
for s, key in pairs(ST) do
  for _, id in ipairs(redis.call('ZRANGEBYLEX', key, ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])) do
    found[#found + 1] = {id, s}
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {}
for i = 1, math.min(#found, tonumber(ARGV[3])) do
  out[#out + 1] = found[i][1]
  out[#out + 1] = found[i][2]
end
return out
""")

# ARGV: ids. For each, the largest id below it and the smallest above it ('' when none).
NEIGHBOURS: Final = reading("""
local out = {}
for i = 1, #ARGV do
  local before, after = '', ''
  for _, key in pairs(ST) do
    local b = redis.call('ZREVRANGEBYLEX', key, '(' .. ARGV[i], '-', 'LIMIT', 0, 1)[1]
    if b and b > before then before = b end
    local a = redis.call('ZRANGEBYLEX', key, '(' .. ARGV[i], '+', 'LIMIT', 0, 1)[1]
    if a and (after == '' or a < after) then after = a end
  end
  out[#out + 1] = before
  out[#out + 1] = after
end
return out
""")

# ARGV: key, start of the dedup window. 1 when the key is journaled or recently delivered.
HAS_KEY: Final = reading("""
if redis.call('HEXISTS', KY, ARGV[1]) == 1 then return 1 end
local at = redis.call('ZSCORE', DELIVERED, ARGV[1])
if at and tonumber(at) >= tonumber(ARGV[2]) then return 1 end
return 0
""")

# ARGV: key. The (id, record) of the entry journaled under it, or nothing.
FIND: Final = reading("""
local id = redis.call('HGET', KY, ARGV[1])
local rec = id and redis.call('HGET', E, id)
if rec then return {id, rec} end
return {}
""")

# ARGV: now, limit. (id, record) pairs of sent_unconfirmed hits awaiting a lookup that is due,
# the earliest due first.
DUE_LOOKUPS: Final = reading("""
local limit = tonumber(ARGV[2])
local out, offset = {}, 0
while #out < 2 * limit do
  local ids = redis.call('ZRANGEBYSCORE', LOOKUPS, '-inf', ARGV[1], 'LIMIT', offset, limit)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local rec = redis.call('HGET', E, id)
    if rec and #out < 2 * limit and parse(rec)[F_STATE] == 'sent_unconfirmed' then
      out[#out + 1] = id
      out[#out + 1] = rec
    end
  end
  offset = offset + #ids
end
return out
""")
