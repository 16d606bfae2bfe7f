"""The Lua scripts of the Redis journal: every change of state is one of these, run atomically.

Each script gets the same KEYS (`KEY_PARTS`, all under the profile's hash tag) and starts with
`PRELUDE`: the record layout, the index rules (`index`/`unindex`), and for writing scripts a
guard that refuses, before anything is written, a key of the wrong type or a journal laid out by
a newer MatoKit. Writing scripts carry the `#!lua` shebang without `allow-oom`, so an
out-of-memory server refuses them before they start rather than halfway. Floats that a script
computes are written with `%.17g`, which reads back as the same double; every other float is
passed in as Python's repr and stored as given. Entries go back to Python as one string:
"<length>:<id><record>" after one another (see `journal_codec.entries`).
"""

from __future__ import annotations

from typing import Final

# The journal's keys, in the order of KEYS (1-based in Lua), with the Redis type each holds.
# Lua names them by the first word of the comment.
KEY_PARTS: Final = (
    ("entries", "hash"),  # E: id -> record (see RECORD_FIELDS)
    ("keys", "hash"),  # KY: idempotency key -> id
    ("state:pending", "zset"),  # ST_PENDING: ids, score 0 (id = time order; prefixes by lex)
    ("state:sent_unconfirmed", "zset"),  # ST_UNCONFIRMED
    ("state:unattributed", "zset"),  # ST_UNATTRIBUTED
    ("state:dead", "zset"),  # ST_DEAD
    ("sched", "zset"),  # SCHED: claimable (pending/sent_unconfirmed, no lookup) by next attempt
    ("ready", "zset"),  # READY: the claimable ones due (as of a claim), score 0: id order
    ("waiting", "zset"),  # WAITING: the other claimable ones, by next attempt
    ("leases", "zset"),  # LEASES: inflight without a key dimension, by lease expiry (in ms)
    ("stamped", "zset"),  # STAMPED: inflight carrying a key dimension, by lease expiry (in ms)
    ("lookups", "zset"),  # LOOKUPS: awaiting a lookup (verify), by when it is due
    ("delivered", "zset"),  # DELIVERED: idempotency key -> delivered at (the dedup window)
    ("delivered:unconfirmed", "zset"),  # D_UNCONFIRMED: delivered after a lost answer
    ("delivered:confirmed", "zset"),  # D_CONFIRMED: delivered, as a lookup confirmed
    ("reasons:dead", "hash"),  # R_DEAD: reason -> how many dead letters give it
    ("reasons:unattributed", "hash"),  # R_UNATTRIBUTED
    ("counters", "hash"),  # COUNTERS: seq (of the last journaled entry), unconfirmed (sum)
    ("sites", "hash"),  # SITES: idSite -> "dimension \x1f checked \x1f why \x1f since"
    ("flushes", "list"),  # FLUSHES: the last flush records, newest first
    ("meta", "hash"),  # META: layout (of records, keys and scores)
)
_LUA_NAMES: Final = (
    "E",
    "KY",
    "ST_PENDING",
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
# Layout 2 scores LEASES and STAMPED in whole milliseconds (layout 1: float seconds); the
# first writing script on a layout-1 journal rescores them (`_GUARD`).
LAYOUT: Final = 2
SEPARATOR: Final = "\x1f"
ID_LENGTH: Final = 26  # journal.ids: ULID-shaped

_HEADER: Final = "\n".join(
    [
        "local US = '\\031'",
        *(f"local {name} = KEYS[{i}]" for i, name in enumerate(_LUA_NAMES, start=1)),
        *(f"local F_{name.upper()} = {i}" for i, name in enumerate(RECORD_FIELDS, start=1)),
        f"local NFIELDS = {len(RECORD_FIELDS)}",
        f"local ID_LENGTH = {ID_LENGTH}",
        f"local LAYOUT = '{LAYOUT}'",
        "local TYPES = {" + ", ".join(f"'{kind}'" for _, kind in KEY_PARTS) + "}",
        "",
    ]
)

_BODY: Final = r"""
local ST = {pending = ST_PENDING, sent_unconfirmed = ST_UNCONFIRMED,
            unattributed = ST_UNATTRIBUTED, dead = ST_DEAD}
local STATES = {'pending', 'inflight', 'sent_unconfirmed', 'unattributed', 'dead'}
local REASONS = {dead = R_DEAD, unattributed = R_UNATTRIBUTED}

-- One pattern match (in C) splits a record: much cheaper in Lua than a loop of finds. A
-- pattern may capture only some fields (the others are skipped unread).
local function pattern(wanted)
  local p = {'^'}
  for i = 1, NFIELDS - 1 do
    p[#p + 1] = wanted[i] and '([^\031]*)\031' or '[^\031]*\031'
  end
  p[#p + 1] = '(.*)$'
  return table.concat(p)
end
local ALL = {}
for i = 1, NFIELDS - 1 do ALL[i] = true end
local RECORD = pattern(ALL)
local function parse(rec) return {string.match(rec, RECORD)} end

-- A claim's view of a record: (seq, created_at, enqueued_at) with their separators, attempts,
-- next_attempt_at, state, last_error and its separator, (reason, sent_unconfirmed) with theirs,
-- and (verify, alone, params, key): what it keeps, and what it changes.
local F = '[^\031]*'
local CLAIMED = '^(' .. F .. '\031' .. F .. '\031' .. F .. '\031)(' .. F .. ')\031(' .. F ..
  ')\031(' .. F .. ')\031(' .. F .. '\031)' .. F .. '\031' .. F .. '\031(' .. F .. '\031' .. F ..
  '\031)' .. F .. '\031' .. F .. '\031(.*)$'
local PARAMS_OF_REST = '^' .. F .. '\031' .. F .. '\031(' .. F .. ')\031'
local LEASE = pattern({[F_LEASE_EXPIRES_AT] = true})  -- its lease's expiry

-- What deleting an entry needs: where it is indexed, its lost-answer count, time and key.
local GONE = {F_CREATED_AT, F_STATE, F_REASON, F_SENT_UNCONFIRMED, F_DIMENSION, F_VERIFY}
local GONE_PATTERN = pattern({[F_CREATED_AT] = true, [F_STATE] = true, [F_REASON] = true,
  [F_SENT_UNCONFIRMED] = true, [F_DIMENSION] = true, [F_VERIFY] = true})
local function parse_gone(rec)
  local c = {string.match(rec, GONE_PATTERN)}
  local f = {}
  for i, n in ipairs(GONE) do f[n] = c[i] end
  f[F_KEY] = c[#GONE + 1]
  return f
end

local function pack(f) return table.concat(f, US, 1, NFIELDS) end

local function copy(f)
  return {f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13],
          f[14], f[15], f[16], f[17]}
end

local function fmt(x) return string.format('%.17g', x) end

-- The lease indexes (LEASES, STAMPED) are scored by the lease's expiry in whole milliseconds,
-- rounded down (the record keeps the exact time, which decides). Redis keeps a small sorted
-- set as a listpack, where a float score is text parsed again at every step of an insertion:
-- leasing a batch of 100 into an empty index cost 1.4 ms with float scores, 0.17 ms with
-- integer ones added in descending order (see `flush`).
local function lease_score(at) return string.format('%.0f', math.floor(tonumber(at) * 1000)) end

-- Changes are gathered in B and written by `flush()`, one command per key for the whole
-- script (removals before additions) instead of several per entry: a batch of a hundred
-- hits costs a few dozen commands. Redis runs the script alone, so nobody sees it halfway.
local B
local function reset()
  B = {rem = {}, add = {}, addxx = {}, incr = {}, hset = {}, edel = {}, kdel = {},
       unconfirmed = 0, touched = {}, cache = {}}
end
reset()
local EXISTS = {}

local function exists(key)
  if EXISTS[key] == nil then EXISTS[key] = redis.call('EXISTS', key) == 1 end
  return EXISTS[key]
end

local function zrem(key, id)
  local t = B.rem[key]
  if not t then t = {}; B.rem[key] = t end
  t[#t + 1] = id
end

local function zadd(key, score, id, xx)
  if xx and not exists(key) then return end  -- nothing there to update
  EXISTS[key] = true
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

-- Up to 128 (score, member) pairs in the reverse of the order given; more as they are.
local function small_reversed(members)
  if #members > 256 then return members end
  local out, n = {}, 0
  for i = #members - 1, 1, -2 do
    out[n + 1], out[n + 2] = members[i], members[i + 1]
    n = n + 2
  end
  return out
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
  -- A few members go in the reverse of the order they were gathered: ids are gathered in
  -- ascending order, so each lands at the head of a small (listpack) sorted set, not after all
  -- the others. Past 128 members Redis keeps a skiplist, where the order makes no difference.
  for key, members in pairs(B.add) do chunked('ZADD', key, small_reversed(members)) end
  for key, members in pairs(B.addxx) do chunked('ZADD', key, small_reversed(members), 'XX') end
  for key, fields in pairs(B.incr) do
    for field, n in pairs(fields) do
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

-- The ids of `key` (a lease index) whose lease has expired at `now`, up to `limit`.
local function lease_expired(key, now, limit)
  local candidates = redis.call('ZRANGEBYSCORE', key, '-inf', lease_score(now), 'LIMIT', 0, limit)
  local out = {}
  if #candidates == 0 then return out end
  local recs = hmget(E, candidates)
  for n, id in ipairs(candidates) do
    if recs[n] and tonumber((string.match(recs[n], LEASE))) <= now then out[#out + 1] = id end
  end
  return out
end

-- How many leases of `key` (a lease index) have expired at `at`, and the earliest expiry
-- (nil when there is none).
local function lease_due(key, at)
  local ms = lease_score(at)
  local n = redis.call('ZCOUNT', key, '-inf', '(' .. ms)
  local edge = redis.call('ZRANGEBYSCORE', key, ms, ms)
  for _, rec in ipairs(hmget(E, edge)) do
    if rec and tonumber((string.match(rec, LEASE))) <= at then n = n + 1 end
  end
  local first = redis.call('ZRANGE', key, 0, 0)[1]
  local rec = first and redis.call('HGET', E, first)
  return n, rec and (string.match(rec, LEASE)) or nil
end

-- ARGV from position `first` on, as a list.
local function from(first)
  local out = {}
  for i = first, #ARGV do out[#out + 1] = ARGV[i] end
  return out
end

-- Entry ids given as one argument, one after another (each ID_LENGTH long).
local function joined(text)
  local out = {}
  for i = 1, #text, ID_LENGTH do out[#out + 1] = string.sub(text, i, i + ID_LENGTH - 1) end
  return out
end

-- Read the records of `ids` at once (before changing any of them).
local function prefetch(ids)
  local recs = hmget(E, ids)
  for k, id in ipairs(ids) do
    if recs[k] then B.cache[id] = recs[k] end
  end
end

local function record(id)
  if B.touched[id] then flush() end  -- the same id twice in one call: write the first change
  local rec = B.cache[id]
  if rec == nil then rec = redis.call('HGET', E, id) end
  return rec
end

local function load(id)
  local rec = record(id)
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
-- Inflight entries are in LEASES or STAMPED only: a state index of their own would cost two
-- writes per hit sent, and they are few (a batch per running or dead flusher).
local function index(id, f, now)
  local s = f[F_STATE]
  if f[F_VERIFY] == '1' then zadd(LOOKUPS, f[F_NEXT_ATTEMPT_AT], id) end
  if s == 'inflight' then
    zadd(f[F_DIMENSION] == '' and LEASES or STAMPED, lease_score(f[F_LEASE_EXPIRES_AT]), id)
    return
  end
  zadd(ST[s], 0, id)
  if claimable(f) then
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

-- `from` ('ready' or 'waiting'), when known, spares a removal from the other.
local function unindex(id, f, from)
  local s = f[F_STATE]
  if f[F_VERIFY] == '1' then zrem(LOOKUPS, id) end
  if s == 'inflight' then
    zrem(f[F_DIMENSION] == '' and LEASES or STAMPED, id)
    return
  end
  zrem(ST[s], id)
  if claimable(f) then
    zrem(SCHED, id)
    if from ~= 'waiting' then zrem(READY, id) end
    if from ~= 'ready' then zrem(WAITING, id) end
  elseif s == 'dead' or s == 'unattributed' then
    hincr(REASONS[s], reason_of(f), -1)
  end
end

-- One entry from `old` to `new` (both parsed records): indexes, record and counters.
local function change(id, old, new, now, from)
  unindex(id, old, from)
  local n = #B.hset
  B.hset[n + 1], B.hset[n + 2] = id, pack(new)
  index(id, new, now)
  B.unconfirmed = B.unconfirmed + tonumber(new[F_SENT_UNCONFIRMED])
    - tonumber(old[F_SENT_UNCONFIRMED])
  B.touched[id] = true
end

-- Delete an entry (`f` may hold only the fields `parse_gone` reads).
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
  elseif exists(D_UNCONFIRMED) then
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

-- Entries for Python: "<length>:<id><record>" after one another, in one string.
local function reply(ids, recs)
  local parts, n = {}, 0
  for i, id in ipairs(ids) do
    parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = #id + #recs[i], ':', id, recs[i]
    n = n + 4
  end
  return table.concat(parts)
end

-- Every inflight id (they are few).
local function inflight_ids()
  local ids = redis.call('ZRANGE', LEASES, 0, -1)
  for _, id in ipairs(redis.call('ZRANGE', STAMPED, 0, -1)) do ids[#ids + 1] = id end
  return ids
end

-- Up to `limit` ids of `state` within the lex range (min, max), in id order.
local function ids_in(state, min, max, limit)
  if state ~= 'inflight' then
    return redis.call('ZRANGEBYLEX', ST[state], min, max, 'LIMIT', 0, limit)
  end
  local lo, lo_open = string.sub(min, 2), string.sub(min, 1, 1) == '('
  local hi, hi_open = string.sub(max, 2), string.sub(max, 1, 1) == '('
  local out = {}
  for _, id in ipairs(inflight_ids()) do
    local above = min == '-' or id > lo or (id == lo and not lo_open)
    local below = max == '+' or id < hi or (id == hi and not hi_open)
    if above and below then out[#out + 1] = id end
  end
  table.sort(out)
  while #out > limit do out[#out] = nil end
  return out
end
"""

_GUARD: Final = """
for i = 1, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= TYPES[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not the ' ..
      TYPES[i] .. ' the MatoKit journal keeps there')
  end
end
local layout = redis.call('HGET', META, 'layout')
if layout and tonumber(layout) > tonumber(LAYOUT) then
  return redis.error_reply('MATOKIT_LAYOUT ' .. layout)
end
if layout == '1' then  -- scored its leases in seconds
  for _, key in ipairs({LEASES, STAMPED}) do
    local members = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    for i = 1, #members, 2 do
      redis.call('ZADD', key, lease_score(members[i + 1]), members[i])
    end
  end
end
if layout ~= LAYOUT then redis.call('HSET', META, 'layout', LAYOUT) end
"""

PRELUDE: Final = _HEADER + _BODY


def writing(body: str) -> str:
    """A script that may write: refused when the server is out of memory, guarded first."""
    return "#!lua\n" + PRELUDE + _GUARD + body


def reading(body: str) -> str:
    """A script that only reads (runs on a replica and when the server is out of memory)."""
    return "#!lua flags=no-writes\n" + PRELUDE + body


# ARGV: now, cutoff (delivered before it is forgotten), mode, then the hits as one string:
# for each, "<record length>:<key length>:<id>\x1f<record without seq>" (lengths in bytes; the
# record ends with the key). One large argument instead of three per hit: packing thousands of
# small arguments costs the client more than the whole script costs Redis. Mode "pending"
# journals due hits; "uncertain" records whose fields say where they go. Returns how many were
# added, or -1 (nothing written) when an id is taken: the caller retries with fresh ids.
ENQUEUE: Final = writing(r"""
local now_s, cutoff, mode, blob = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local now = tonumber(now_s)
local ids, wanted, rests = {}, {}, {}
local pos, size = 1, #blob
while pos <= size do
  local c1 = string.find(blob, ':', pos, true)
  local c2 = string.find(blob, ':', c1 + 1, true)
  local last = c2 + tonumber(string.sub(blob, pos, c1 - 1))
  local n = #ids + 1
  ids[n] = string.sub(blob, c2 + 1, c2 + ID_LENGTH)
  wanted[n] = string.sub(blob, last - tonumber(string.sub(blob, c1 + 1, c2 - 1)) + 1, last)
  rests[n] = string.sub(blob, c2 + ID_LENGTH + 2, last)
  pos = last + 1
end
-- First every check, a thousand hits per command; nothing is written if an id is taken.
for _, rec in ipairs(hmget(E, ids)) do
  if rec then return -1 end
end
local known = hmget(KY, wanted)
local seq = tonumber(redis.call('HGET', COUNTERS, 'seq') or '0')
local added, seen, keys = 0, {}, {}
for first = 1, #wanted, 1000 do
  local last = math.min(first + 999, #wanted)
  local at = redis.call('ZMSCORE', DELIVERED, unpack(wanted, first, last))
  for n = first, last do
    local key, when = wanted[n], at[n - first + 1]
    if not known[n] and ((not when) or tonumber(when) < cutoff) and not seen[key] then
      seen[key] = true
      local id = ids[n]
      seq = seq + 1
      local rec = seq .. US .. rests[n]
      local h = #B.hset
      B.hset[h + 1], B.hset[h + 2] = id, rec
      keys[h + 1], keys[h + 2] = key, id
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
  end
end
if #keys > 0 then chunked('HSET', KY, keys) end
flush()
redis.call('HSET', COUNTERS, 'seq', seq)
return added
""")

# ARGV: owner, lease expiry, now, limit, stamp (1: give each hit its site's key dimension).
# Due: claimable with next attempt <= now, oldest id first, and inflight without a key
# dimension whose lease expired (its flusher died: that send counts as unconfirmed). Returns
# the claimed entries (see `reply`).
_CLAIM_BODY: Final = r"""
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
-- Due entries from READY, in id order (a light look at their next attempt only).
local cids, crecs, cursor = {}, {}, '-'
local NEXT = pattern({[F_NEXT_ATTEMPT_AT] = true})
while #cids < limit do
  local ids = redis.call('ZRANGEBYLEX', READY, cursor, '+', 'LIMIT', 0, limit - #cids)
  if #ids == 0 then break end
  local recs = hmget(E, ids)
  for n, id in ipairs(ids) do
    local rec = recs[n]
    if not rec then
      redis.call('ZREM', READY, id)
    else
      local next_at = string.match(rec, NEXT)
      if tonumber(next_at) <= now then
        cids[#cids + 1], crecs[#crecs + 1] = id, rec
      else
        -- made ready by a claim whose clock was ahead of this one: not due for us yet
        redis.call('ZREM', READY, id)
        redis.call('ZADD', WAITING, next_at, id)
      end
    end
  end
  cursor = '(' .. ids[#ids]
end
-- Leases that expired join them, oldest id first (rare: a flusher died).
local expired = lease_expired(LEASES, now, limit)
if #expired > 0 then
  local found = {}
  for n, id in ipairs(cids) do found[n] = {id, crecs[n]} end
  for n, rec in ipairs(hmget(E, expired)) do
    if rec then found[#found + 1] = {expired[n], rec} end
  end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  cids, crecs = {}, {}
  for i = 1, math.min(limit, #found) do cids[i], crecs[i] = found[i][1], found[i][2] end
end
local sites = {}
local function dimension(text)
  local params = cjson.decode(text)
  local goal = params['idgoal']
  if goal ~= nil and goal ~= cjson.null then return '' end
  local site = tostring(math.floor(tonumber(params['idsite']) or 0))
  if sites[site] == nil then
    local rec = redis.call('HGET', SITES, site)
    sites[site] = rec and string.sub(rec, 1, string.find(rec, US, 1, true) - 1) or ''
  end
  return sites[site]
end
-- Each becomes inflight. This is change(old, new) written out for the two cases a claim meets
-- (the hot path of every flush): a claimable entry leaves its state index, SCHED and READY;
-- an expired lease leaves its lease index, its send counted as unconfirmed. Either joins a
-- lease index; LOOKUPS is unchanged (same flag, same time). A claimable entry's record is
-- rewritten from seven captures, not all seventeen fields: every string costs in Lua.
local lease_ms, owner_f = lease_score(expires_s), '=' .. owner
local recs = {}
for i, id in ipairs(cids) do
  local head, attempts, next_at, state, last_error, middle, rest = string.match(crecs[i], CLAIMED)
  local dim
  if state == 'inflight' then
    local f = parse(crecs[i])
    zrem(f[F_DIMENSION] == '' and LEASES or STAMPED, id)
    middle = f[F_REASON] .. US .. (tonumber(f[F_SENT_UNCONFIRMED]) + 1) .. US
    B.unconfirmed = B.unconfirmed + 1
    local previous = f[F_LEASE_OWNER] == '' and '?' or string.sub(f[F_LEASE_OWNER], 2)
    last_error = '=lease of ' .. previous .. ' expired' .. US
  else
    zrem(ST[state], id)
    zrem(SCHED, id)
    zrem(READY, id)
  end
  dim = stamp and dimension(string.match(rest, PARAMS_OF_REST)) or ''
  local new = head .. (tonumber(attempts) + 1) .. US .. next_at .. US .. 'inflight' .. US ..
    last_error .. owner_f .. US .. expires_s .. US .. middle .. dim .. US .. now_s .. US .. rest
  zadd(dim == '' and LEASES or STAMPED, lease_ms, id)
  local n = #B.hset
  B.hset[n + 1], B.hset[n + 2] = id, new
  recs[i] = new
end
flush()
return reply(cids, recs)
"""
CLAIM: Final = writing(_CLAIM_BODY)

# ARGV: now, cutoff, the ids joined. Delivered: deleted, keys remembered for the dedup window.
_ACK_BODY: Final = r"""
local now_s, cutoff_s = ARGV[1], ARGV[2]
local ids = joined(ARGV[3])
prefetch(ids)
local ACKED = pattern({[F_STATE] = true, [F_SENT_UNCONFIRMED] = true, [F_DIMENSION] = true,
  [F_VERIFY] = true})
local n = 0
for _, id in ipairs(ids) do
  local rec = record(id)
  if rec then
    local state, unconfirmed, dim, verify, key = string.match(rec, ACKED)
    unconfirmed = tonumber(unconfirmed)
    if state == 'inflight' and verify ~= '1' then  -- delete(), written out for the usual case
      zrem(dim == '' and LEASES or STAMPED, id)
      B.edel[#B.edel + 1], B.kdel[#B.kdel + 1] = id, key
      B.unconfirmed = B.unconfirmed - unconfirmed
      B.touched[id] = true
    else
      delete(id, parse_gone(rec))
    end
    remember(key, now_s, unconfirmed, false)
    n = n + 1
  end
end
flush()
-- Pruning is a range removal at the low end, nearly free when nothing has expired.
for _, key in ipairs({DELIVERED, D_UNCONFIRMED, D_CONFIRMED}) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff_s)
end
return n
"""
ACK: Final = writing(_ACK_BODY)

# ARGV: CLAIM's five, then ACK's (now, cutoff, the ids joined): the hits delivered since the last
# claim are acknowledged, then the next batch claimed, in one script (one round trip and one
# fsync where a flusher sending one batch at a time needed two).
ACK_CLAIM: Final = writing(
    "local function acknowledge()\n"
    + _ACK_BODY.replace("ARGV[1], ARGV[2]", "ARGV[6], ARGV[7]").replace("ARGV[3]", "ARGV[8]")
    + "\nend\nacknowledge()\n"
    + _CLAIM_BODY
)

# ARGV: now, op, op's arguments..., then the entry ids (from ARGV[first]). One script for the
# changes of single entries, so that each rule reads like its SQL twin in journal/store.py and
# journal/reconciling.py.
UPDATE: Final = writing(r"""
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
REQUEUE_PAGE: Final = writing(r"""
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
PURGE_PAGE: Final = writing(r"""
local now_s, state, after = ARGV[1], ARGV[2], ARGV[4]
local cutoff = ARGV[3] ~= '' and tonumber(ARGV[3]) or nil
local ids = redis.call('ZRANGEBYLEX', ST[state], after, '+', 'LIMIT', 0, tonumber(ARGV[5]))
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local rec = record(id)
  local f = rec and parse_gone(rec)
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
CONFIRM: Final = writing(r"""
local now_s = ARGV[1]
local ids = from(2)
prefetch(ids)
local n = 0
for _, id in ipairs(ids) do
  local rec = record(id)
  local f = rec and parse_gone(rec)
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
REMEMBER: Final = writing(r"""
for i = 2, #ARGV do remember(ARGV[i], ARGV[1], nil, false) end
flush()
return #ARGV - 1
""")

# ARGV: site, now, dimension ('' for none) or nil, reason or nil. With a reason, lookups are
# unavailable there (the dimension remembered is kept); without, the dimension is recorded and
# an earlier "unavailable" forgotten.
SITE: Final = writing(r"""
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
RECORD_FLUSH: Final = writing(r"""
redis.call('LPUSH', FLUSHES, ARGV[1])
redis.call('LTRIM', FLUSHES, 0, tonumber(ARGV[2]) - 1)
return 1
""")

# Nothing but the guard, which brings an older layout up to date.
UPGRADE: Final = writing("return 1")

# -- `queue migrate` (the Transferable side) --

# ARGV: quadruples id, key, state, attempts: delete each entry still as given; how many went.
DISCARD: Final = writing(r"""
local n = 0
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  local rec = record(id)
  if rec then
    local f = parse(rec)
    if f[F_KEY] == ARGV[i + 1] and f[F_STATE] == ARGV[i + 2] and f[F_ATTEMPTS] == ARGV[i + 3] then
      delete(id, parse_gone(rec))
      n = n + 1
    end
  end
end
flush()
return n
""")

# ARGV: quadruples key, delivered at, unconfirmed (0/1), confirmed (0/1): the later of two
# deliveries of one key wins. Returns how many keys were new.
ADOPT_DELIVERED: Final = writing(r"""
local n = 0
for i = 1, #ARGV, 4 do
  local key, at = ARGV[i], ARGV[i + 1]
  local old = redis.call('ZSCORE', DELIVERED, key)
  if not old then n = n + 1 end
  if (not old) or tonumber(at) > tonumber(old) then
    remember(key, at, tonumber(ARGV[i + 2]), ARGV[i + 3] == '1')
  end
end
flush()
return n
""")

# ARGV: how many to keep, then flush records (recorded_at \x1f JSON): merged with the kept ones,
# newest first. Returns how many were added.
ADOPT_FLUSHES: Final = writing(r"""
local keep = tonumber(ARGV[1])
local all, seen = {}, {}
for _, rec in ipairs(redis.call('LRANGE', FLUSHES, 0, -1)) do
  if not seen[rec] then seen[rec] = true; all[#all + 1] = rec end
end
local new = {}
for i = 2, #ARGV do
  if not seen[ARGV[i]] then seen[ARGV[i]] = true; new[ARGV[i]] = true; all[#all + 1] = ARGV[i] end
end
local function at(rec) return tonumber(string.sub(rec, 1, string.find(rec, US, 1, true) - 1)) end
table.sort(all, function(a, b) return at(a) > at(b) end)
redis.call('DEL', FLUSHES)
local last = math.min(#all, keep)
if last > 0 then redis.call('RPUSH', FLUSHES, unpack(all, 1, last)) end
local added = 0
for i = 1, last do if new[all[i]] then added = added + 1 end end
return added
""")

# ARGV: triples site, checked at, record: kept where the site has none or an older one.
ADOPT_SITES: Final = writing(r"""
local n = 0
for i = 1, #ARGV, 3 do
  local rec = redis.call('HGET', SITES, ARGV[i])
  local older = true
  if rec then
    local j = string.find(rec, US, 1, true)
    local k = string.find(rec, US, j + 1, true)
    older = tonumber(string.sub(rec, j + 1, k - 1)) < tonumber(ARGV[i + 1])
  end
  if older then redis.call('HSET', SITES, ARGV[i], ARGV[i + 2]); n = n + 1 end
end
return n
""")

# -- reading --

# ARGV: after (a ZRANGEBYLEX bound), limit, states... The next entries in id order.
PAGE: Final = reading(r"""
local after, limit = ARGV[1], tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV do
  for _, id in ipairs(ids_in(ARGV[i], after, '+', limit)) do ids[#ids + 1] = id end
end
table.sort(ids)
while #ids > limit do ids[#ids] = nil end
local recs = hmget(E, ids)
local found, values = {}, {}
for i, id in ipairs(ids) do
  if recs[i] then
    found[#found + 1] = id
    values[#values + 1] = recs[i]
  end
end
return reply(found, values)
""")

# ARGV: at, start of the dedup window. Everything `stats` shows, read in one snapshot.
STATS: Final = reading(r"""
local at_s, window_s = ARGV[1], ARGV[2]
local out = {}
local inflight = inflight_ids()
for i, s in ipairs(STATES) do
  out[i] = s == 'inflight' and #inflight or redis.call('ZCARD', ST[s])
end
out[6] = redis.call('HGET', COUNTERS, 'unconfirmed') or '0'
table.sort(inflight)
local firsts = {redis.call('ZRANGE', ST_PENDING, 0, 0)[1], inflight[1],
                redis.call('ZRANGE', ST_UNCONFIRMED, 0, 0)[1]}
for i = 1, 3 do
  local rec = firsts[i] and redis.call('HGET', E, firsts[i])
  out[6 + i] = rec and parse(rec)[F_CREATED_AT] or ''
end
local due = redis.call('ZCOUNT', SCHED, '-inf', at_s)
local next_at = redis.call('ZRANGE', SCHED, 0, 0, 'WITHSCORES')[2]
for _, key in ipairs({LEASES, STAMPED}) do
  local n, first = lease_due(key, tonumber(at_s))
  due = due + n
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
TALLY: Final = reading(r"""
local mark = tonumber(ARGV[2])
local scan = redis.call('HSCAN', E, ARGV[1], 'COUNT', tonumber(ARGV[3]))
local counts = {}
local records = scan[2]
local p = pattern({[F_SEQ] = true, [F_STATE] = true, [F_VERIFY] = true})
for i = 2, #records, 2 do
  local seq, state, verify = string.match(records[i], p)
  local what = verify == '1' and 'awaiting_lookup' or state
  local label = (tonumber(seq) > mark and '1:' or '0:') .. what
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
STARTING_WITH: Final = reading(r"""
local found = {}
for _, s in ipairs(STATES) do
  for _, id in ipairs(ids_in(s, ARGV[1], ARGV[2], tonumber(ARGV[3]))) do
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
NEIGHBOURS: Final = reading(r"""
local inflight = inflight_ids()
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  local before, after = '', ''
  for _, key in pairs(ST) do
    local b = redis.call('ZREVRANGEBYLEX', key, '(' .. id, '-', 'LIMIT', 0, 1)[1]
    if b and b > before then before = b end
    local a = redis.call('ZRANGEBYLEX', key, '(' .. id, '+', 'LIMIT', 0, 1)[1]
    if a and (after == '' or a < after) then after = a end
  end
  for _, other in ipairs(inflight) do
    if other < id and other > before then before = other end
    if other > id and (after == '' or other < after) then after = other end
  end
  out[#out + 1] = before
  out[#out + 1] = after
end
return out
""")

# ARGV: key, start of the dedup window. 1 when the key is journaled or recently delivered.
HAS_KEY: Final = reading(r"""
if redis.call('HEXISTS', KY, ARGV[1]) == 1 then return 1 end
local at = redis.call('ZSCORE', DELIVERED, ARGV[1])
if at and tonumber(at) >= tonumber(ARGV[2]) then return 1 end
return 0
""")

# ARGV: key. The entry journaled under it (see `reply`), or ''.
FIND: Final = reading(r"""
local id = redis.call('HGET', KY, ARGV[1])
local rec = id and redis.call('HGET', E, id)
if rec then return reply({id}, {rec}) end
return ''
""")

# ARGV: now, limit. The sent_unconfirmed hits awaiting a lookup that is due, the earliest due
# first.
DUE_LOOKUPS: Final = reading(r"""
local limit = tonumber(ARGV[2])
local ids, recs, offset = {}, {}, 0
while #ids < limit do
  local batch = redis.call('ZRANGEBYSCORE', LOOKUPS, '-inf', ARGV[1], 'LIMIT', offset, limit)
  if #batch == 0 then break end
  local values = hmget(E, batch)
  for i, id in ipairs(batch) do
    local rec = values[i]
    if rec and #ids < limit and parse(rec)[F_STATE] == 'sent_unconfirmed' then
      ids[#ids + 1] = id
      recs[#recs + 1] = rec
    end
  end
  offset = offset + #batch
end
return reply(ids, recs)
""")
