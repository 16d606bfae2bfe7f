"""The retry journal on Redis: the same operations and guarantees as the SQLite journal, shared
by every process and host that points `redis_url` at the same server.

Data structures (every key under `matokit:{PROFILE}:journal:`: one hash tag per profile, so a
Redis Cluster keeps them in one slot and a script may touch them all; `journal_lua.KEY_PARTS`):
- `entries`, a hash: entry id -> record, the entry's fields joined by \\x1f (`journal_codec`),
  parsed and rewritten by the scripts; the Tracking API parameters are compact JSON inside it,
  never holding a token. `keys`, a hash: idempotency key -> entry id.
- Indexes, sorted sets of entry ids that follow from an entry's fields alone: `state:pending`,
  `state:sent_unconfirmed`, `state:unattributed`, `state:dead` (score 0, so ids sort by their
  text, which is the hit's time, and a typed id prefix is a lexical range); `sched` (claimable:
  pending or sent_unconfirmed, not awaiting a lookup; scored by the next attempt); `ready` (the
  claimable ones already due, score 0: claimed oldest id first) and `waiting` (the others, by
  next attempt; the first claim after their time moves them to `ready`); `leases` and `stamped`
  (inflight without and with a key dimension, by lease expiry in whole milliseconds, rounded
  down, the record's exact expiry deciding: integer scores keep a small sorted set, which Redis
  stores as a listpack, cheap to insert into; inflight entries have no state index of their
  own, which would cost two writes per hit sent, and they are few);
  `lookups` (awaiting a lookup, by when it is due).
- `delivered`, a sorted set: idempotency key -> when delivered (the dedup window, pruned by every
  ack), with its subsets `delivered:unconfirmed` and `delivered:confirmed`;
  `reasons:dead` and `reasons:unattributed` (reason -> count); `counters` (seq, the number of
  the last journaled entry: the `mark`/`tally` watermark; unconfirmed, the sum of the entries'
  lost-answer sends); `sites` (idSite -> its key dimension record); `flushes` (the last 20
  flush records); `meta` (the layout's version: a newer layout is refused, never misread; an
  older one is brought up to date by the first writing script, run when the journal is opened).

Atomicity: every change of state is one Lua script (`journal_lua`), and Redis runs a script
alone: no command of any client runs between its first and its last. A script changes an entry
as unindex(old fields), write, index(new fields), so an entry is in exactly the indexes its
fields call for: never in two states or in none. What could stop a script halfway is ruled out
before it writes: every writing script first checks the type of every key it may touch (a key
of another type under the prefix is refused with WRONGTYPE, nothing written) and carries the
`#!lua` shebang without `allow-oom` (a server out of memory refuses it before it starts, never
midway); an enqueue checks all its new ids before writing any. A script's effects reach the AOF
and the replicas wrapped in MULTI/EXEC: a crash or a replica never shows half of one, and a
truncated last block is dropped when the AOF is loaded. Tests run random sequences of every
operation on both backends and compare every result and state (tests/test_redis_journal.py).

Claims never overlap: a claim is one script that takes due entries out of `ready` (and expired
leases out of `leases`) and makes them inflight with its owner and lease in the same step, so
of two flushers claiming at once, on one host or many, the second finds them gone. A flusher
that dies leaves its entries in `leases`; once the lease expires any claim takes them back,
counting that send as unconfirmed ("lease of X expired"), as on SQLite; entries sent with their
key (`stamped`) are looked up rather than re-sent (ADR-0008). Leases and due times follow the
clocks of the hosts, as on SQLite: keep them synchronised (NTP); a host whose clock runs ahead
sees leases expire early by that much. A claim that finds in `ready` an entry not yet due by its
own clock puts it back in `waiting`. (`delivery.flush` also treats every inflight entry it finds
while holding the flush lock as orphaned: right when that lock is the profile's across hosts.)

Durability and failover: a write is acknowledged once Redis has run the script; with
`appendonly yes` and `appendfsync always` it is on disk by then (`health` warns otherwise).
Replication is asynchronous: a primary that dies before its replicas received a write loses it
when a replica takes over. With `redis_min_replicas = N`, every writing call is followed, in the
same round trip, by `WAIT N`, and fails (StorageError, exit 74) when fewer replicas confirm it
in time: then the write is on the primary but not known to be anywhere else, and running again
is safe (its keys make it a duplicate). Without it, a failover may lose the last writes: a
journaled hit whose caller was told it was queued; a claim (its hits are due again on the new
primary: sent twice if another flusher takes them while the first is sending); an ack (the hit
is inflight again, recovered as maybe sent and sent again: counted twice unless a lookup settles
it). Scripts are loaded again on a server that lacks them (EVALSHA, then SCRIPT LOAD on
NOSCRIPT). Eviction (a `maxmemory-policy` other than `noeviction`) could drop any key and lose
hits: `health` is CRITICAL then. Memory: about 1 KB per queued hit (170 bytes of parameters),
about 150 bytes per delivered key kept for the dedup window (measured on Redis 7.0).

Operations over many entries (retry --all, purge, tally, listings) go a page per script: each
page is atomic; an entry that changes state meanwhile is seen once at most (as with the SQLite
journal's paged reads).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

from matokit.errors import StorageError
from matokit.journal import lookup
from matokit.journal.connection import DEFAULT_DEDUP_WINDOW
from matokit.journal.contract import ENQUEUE_CHUNK, FLUSH_HISTORY
from matokit.journal.ids import IdGenerator
from matokit.journal.queries import chunks, id_list, params_json
from matokit.journal.reconciling import SiteRecord
from matokit.journal.records import (
    Adopted,
    DeliveredKey,
    EnqueueResult,
    Entry,
    EntryState,
    JournalStats,
    NewHit,
)
from matokit.redisstore import journal_codec as codec
from matokit.redisstore import journal_lua as lua
from matokit.redisstore.connection import RedisTarget, redis_errors

PAGE: Final = 500
BULK_PAGE: Final = 1000
TALLY_PAGE: Final = 5000
WAIT_TIMEOUT_MS: Final = 5000

_MAX_ERROR_LENGTH = 2000
_ALL = tuple(state.value for state in EntryState)
_KEY = {part: i for i, (part, _) in enumerate(lua.KEY_PARTS)}


@dataclass(frozen=True)
class _Script:
    source: str
    sha: str  # the id Redis knows the script by

    @classmethod
    def of(cls, source: str) -> _Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


_SCRIPTS: Final = {
    name: _Script.of(getattr(lua, name))
    for name in (
        "ENQUEUE",
        "CLAIM",
        "ACK",
        "ACK_CLAIM",
        "UPDATE",
        "REQUEUE_PAGE",
        "PURGE_PAGE",
        "CONFIRM",
        "REMEMBER",
        "SITE",
        "RECORD_FLUSH",
        "PAGE",
        "STATS",
        "TALLY",
        "STARTING_WITH",
        "NEIGHBOURS",
        "HAS_KEY",
        "FIND",
        "DUE_LOOKUPS",
        "DISCARD",
        "ADOPT_DELIVERED",
        "ADOPT_FLUSHES",
        "ADOPT_SITES",
        "UPGRADE",
    )
}


class RedisJournal:
    """The retry journal of one profile, kept on the Redis server of `target`."""

    def __init__(
        self,
        target: RedisTarget,
        *,
        clock: Callable[[], float] = time.time,
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
    ) -> None:
        """Open the profile's journal on Redis (nothing is created until something is written)."""
        self.target = target
        self._clock = clock
        self._dedup_window = dedup_window
        self._ids = IdGenerator()
        self._keys = [target.keys.journal(part) for part, _ in lua.KEY_PARTS]
        self._client: Any = target.client()
        self._closed = False
        with redis_errors(target, "open the journal"):
            layout = self._client.hget(self._keys[-1], "layout")
        if layout is not None and int(layout) > lua.LAYOUT:
            raise self._newer(layout)
        if layout is not None and int(layout) < lua.LAYOUT:
            self._run("UPGRADE", [], doing="bring the journal to this MatoKit's layout")

    @property
    def location(self) -> str:
        """Where the journal lives, as shown to people: the Redis URL without its password."""
        return self.target.display

    @property
    def remote(self) -> bool:
        """True: the scripts run in the Redis server while this process waits."""
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, {self.target.namespace!r})"

    def close(self) -> None:
        """Stop using the journal (the process's connection pool stays for other users)."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running scripts --

    def _newer(self, layout: bytes | str) -> StorageError:
        return StorageError(
            f"the journal on Redis at {self.location} has layout {codec.text_of(layout)}; "
            f"this MatoKit knows up to {lua.LAYOUT}",
            path=self.location,
            hint="a newer MatoKit wrote it: upgrade matokit",
        )

    def _run(self, name: str, args: Sequence[str | bytes], *, doing: str) -> Any:
        """Run script `name`; writing scripts wait for `redis_min_replicas` replicas."""
        if self._closed:
            raise RuntimeError(f"the journal {self.location} is closed")
        import redis.exceptions as rex

        script = _SCRIPTS[name]
        writes = not script.source.startswith("#!lua flags=no-writes")
        with redis_errors(self.target, doing):
            try:
                if writes and self.target.min_replicas > 0:
                    return self._run_and_wait(script, args, doing=doing)
                return self._evalsha(self._client, script, args)
            except rex.ResponseError as exc:
                if str(exc).startswith("MATOKIT_LAYOUT"):
                    raise self._newer(str(exc).split()[1]) from None
                raise

    def _evalsha(self, client: Any, script: _Script, args: Sequence[str | bytes]) -> Any:
        import redis.exceptions as rex

        try:
            return client.evalsha(script.sha, len(self._keys), *self._keys, *args)
        except rex.NoScriptError:
            client.script_load(script.source)  # a new server, or one that lost its scripts
            return client.evalsha(script.sha, len(self._keys), *self._keys, *args)

    def _run_and_wait(self, script: _Script, args: Sequence[str | bytes], *, doing: str) -> Any:
        """The script and WAIT in one round trip; StorageError unless enough replicas have it."""
        import redis.exceptions as rex

        wanted = self.target.min_replicas
        for attempt in range(2):
            pipe = self._client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(self._keys), *self._keys, *args)
            pipe.execute_command("WAIT", wanted, _wait_timeout_ms())
            result, acked = pipe.execute(raise_on_error=False)
            if isinstance(result, rex.NoScriptError) and attempt == 0:
                self._client.script_load(script.source)
                continue
            break
        for answer in (result, acked):
            if isinstance(answer, Exception):
                raise answer
        if int(acked) < wanted:
            timeout = _wait_timeout_ms()
            raise StorageError(
                f"cannot {doing} on Redis at {self.location}: only {int(acked)} of the "
                f"{wanted} replica(s) redis_min_replicas asks for confirmed the write within "
                f"{timeout / 1000:g} s (it is on the primary; a failover now could lose it)",
                path=self.location,
                hint="Check the replicas (redis-cli INFO replication), or lower "
                "redis_min_replicas. Re-running is safe: what was written is skipped.",
            )
        return result

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _update(self, op: str, ids: Sequence[str], *extra: str, doing: str) -> int:
        rows = [entry_id for (entry_id,) in id_list(ids)]
        if not rows:
            return 0
        now = codec.number(self._clock())
        return int(self._run("UPDATE", [now, op, *extra, *rows], doing=doing))

    # -- adding hits --

    def enqueue(self, hits: Iterable[NewHit], *, chunk_size: int = ENQUEUE_CHUNK) -> EnqueueResult:
        """Journal `hits`, skipping keys already queued, dead, unattributed or recently delivered.

        Each chunk of `chunk_size` is one script: committed (and on disk, with appendfsync
        always) before the next is read. If this raises, the chunks committed before stay.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        added = duplicates = 0
        for chunk in chunks(hits, chunk_size):
            count = self._insert(chunk, mode="pending")
            added += count
            duplicates += len(chunk) - count
        return EnqueueResult(added=added, duplicates=duplicates)

    def enqueue_one(self, hit: NewHit) -> bool:
        """Journal one hit; False when its key is already known (a duplicate)."""
        return self._insert([hit], mode="pending") == 1

    def enqueue_uncertain(
        self, hit: NewHit, *, dimension: int, sent_at: float, settle: float, error: str
    ) -> bool:
        """Journal a hit whose one send (`track`) is uncertain, awaiting its lookup, in one
        script; False when its key is already known."""
        record = _uncertain(dimension, sent_at, settle, error[:_MAX_ERROR_LENGTH])
        return self._insert([hit], mode="uncertain", record=record) == 1

    def _insert(
        self,
        chunk: list[NewHit],
        *,
        mode: str,
        record: Callable[[NewHit, str, str], str] = codec.pending_record,
    ) -> int:
        now = self._clock()
        at = codec.number(now)
        rows = [
            (hit, record(hit, params_json(hit.params), at).encode(), len(hit.key.encode()))
            for hit in chunk
        ]
        cutoff = codec.number(now - self._dedup_window)
        for _ in range(3):
            parts: list[bytes] = []
            for hit, rest, key_length in rows:
                entry_id = self._ids(hit.created_at).encode()
                parts.append(b"%d:%d:%s\x1f%s" % (len(rest) + 27, key_length, entry_id, rest))
            added = int(
                self._run("ENQUEUE", [at, cutoff, mode, b"".join(parts)], doing="journal hits")
            )
            if added >= 0:
                return added
            self._ids.reseed()  # another process took one of these ids: draw fresh bits
        raise StorageError(
            f"could not find unused ids for new hits on Redis at {self.location}",
            path=self.location,
        )

    # -- the delivery cycle --

    def claim(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        now: float | None = None,
        stamp: bool = False,
        ack: Sequence[str] = (),
    ) -> list[Entry]:
        """Lease up to `limit` due hits to `owner`, oldest first, counting one attempt each.

        Due as on SQLite (`Journal.claim`): pending or sent_unconfirmed whose next attempt has
        come and that await no lookup, or inflight without a key dimension whose lease expired.
        One script: concurrent claims never share a hit. `ack` names hits delivered meanwhile,
        acknowledged first in the same script.
        """
        if limit <= 0:
            if ack:
                self.ack(ack)
            return []
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        at = self._now(now)
        args = [
            codec.clean(owner),
            codec.number(at + lease_seconds),
            codec.number(at),
            str(int(limit)),
            "1" if stamp else "0",
        ]
        acked = codec.joined_ids(ack)
        if not acked:
            return codec.entries(self._run("CLAIM", args, doing="claim hits"))
        args += [codec.number(at), codec.number(at - self._dedup_window), acked]
        return codec.entries(self._run("ACK_CLAIM", args, doing="record deliveries and claim hits"))

    def ack(self, ids: Sequence[str]) -> int:
        """Mark hits delivered: delete them, remember their keys for the dedup window; how many."""
        joined = codec.joined_ids(ids)
        if not joined:
            return 0
        now = self._clock()
        args = [codec.number(now), codec.number(now - self._dedup_window), joined]
        return int(self._run("ACK", args, doing="record deliveries"))

    def reschedule(
        self,
        ids: Sequence[str],
        *,
        error: str,
        next_attempt_at: float,
        sent_unconfirmed: bool = False,
    ) -> int:
        """Put hits back to wait until `next_attempt_at`, noting `error` (see `Journal`)."""
        bump = "1" if sent_unconfirmed else "0"
        text = codec.clean(error[:_MAX_ERROR_LENGTH])
        return self._update(
            "reschedule",
            ids,
            bump,
            text,
            codec.number(next_attempt_at),
            doing="reschedule hits",
        )

    def release(self, ids: Sequence[str]) -> int:
        """Hand inflight hits back as due without counting the attempt (none was made); how many."""
        return self._update("release", ids, doing="release hits")

    def kill(self, items: Sequence[tuple[str, str]]) -> int:
        """Give up on hits: each `(id, reason)` becomes dead with that reason; how many changed."""
        if not items:
            return 0
        args = [codec.number(self._clock()), "kill"]
        for entry_id, reason in items:
            args += (entry_id, codec.clean(reason))
        return int(self._run("UPDATE", args, doing="record dead letters"))

    def mark_unattributed(self, ids: Sequence[str], *, reason: str) -> int:
        """Set queued hits aside, never re-sent, when Matomo's counts cannot say which failed."""
        return self._update("unattributed", ids, codec.clean(reason), doing="set hits aside")

    # -- operator actions --

    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Make dead hits due again; None means every dead hit (attempts reset, the max_age
        clock restarted, as on SQLite)."""
        return self._requeue("dead", ids)

    def retry_unattributed(self, ids: Sequence[str] | None = None) -> int:
        """Make unattributed hits due again; None means every unattributed hit (see
        `Journal.retry_unattributed`: Matomo may hold some, each counted twice)."""
        return self._requeue("unattributed", ids)

    def _requeue(self, state: str, ids: Sequence[str] | None) -> int:
        if ids is not None:
            return self._update("requeue", ids, state, doing="retry hits")
        total = 0
        while True:
            now = codec.number(self._clock())
            changed, seen = self._run(
                "REQUEUE_PAGE", [now, state, str(BULK_PAGE)], doing="retry hits"
            )
            total += int(changed)
            if int(seen) < BULK_PAGE:
                return total

    def purge_dead(self, *, older_than: float | None = None, now: float | None = None) -> int:
        """Delete dead hits; with `older_than` (seconds), only hits older than that."""
        return self._purge("dead", older_than=older_than, now=now, remember=False)

    def purge_unattributed(
        self, *, older_than: float | None = None, now: float | None = None
    ) -> int:
        """Delete unattributed hits; with `older_than` (seconds), only hits older than that.
        Their keys are remembered like delivered ones for the dedup window."""
        return self._purge("unattributed", older_than=older_than, now=now, remember=True)

    def _purge(
        self, state: str, *, older_than: float | None, now: float | None, remember: bool
    ) -> int:
        cutoff = "" if older_than is None else codec.number(self._now(now) - older_than)
        total, after = 0, "-"
        while True:
            args = [
                codec.number(self._clock()),
                state,
                cutoff,
                after,
                str(BULK_PAGE),
                "1" if remember else "0",
            ]
            deleted, last = self._run("PURGE_PAGE", args, doing="purge hits")
            total += int(deleted)
            if not last:
                return total
            after = "(" + codec.text_of(last)

    # -- ids people type --

    def match_ids(self, prefixes: Sequence[str], *, state: EntryState | str) -> list[str]:
        """Whole ids of the entries in `state` that `prefixes` (ids or unique prefixes) name.

        Raises UnknownEntryError or AmbiguousEntryError, as on SQLite (`journal.lookup`).
        """
        wanted = EntryState(state).value

        def starting_with(prefix: str, limit: int) -> list[tuple[str, str]]:
            args = ["[" + prefix, "(" + prefix + lookup.ABOVE_ID, str(limit)]
            flat = self._run("STARTING_WITH", args, doing="find entries")
            return [
                (codec.text_of(flat[i]), codec.text_of(flat[i + 1])) for i in range(0, len(flat), 2)
            ]

        return lookup.match_with(starting_with, list(prefixes), state=wanted)

    def short_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """Each id's shortest prefix (at least 8 characters) that names no other entry."""
        wanted = list(ids)
        if not wanted:
            return {}
        flat = self._run("NEIGHBOURS", wanted, doing="read entry ids")
        around = {
            entry_id: (
                codec.text_of(flat[2 * i]) or None,
                codec.text_of(flat[2 * i + 1]) or None,
            )
            for i, entry_id in enumerate(wanted)
        }
        return lookup.shortest_with(around)

    # -- reading --

    def entries(
        self, *, states: Collection[EntryState] | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Entries in the given states (all when None), oldest first."""
        found: list[Entry] = []
        for entry in self._iter(states, page=PAGE if limit is None else limit):
            if limit is not None and len(found) >= limit:
                break
            found.append(entry)
        return found

    def iter_entries(self, *, states: Collection[EntryState] | None = None) -> Iterator[Entry]:
        """Stream entries oldest first, a page at a time, for exports of any size.

        Each page is its own script, so a slow consumer never holds Redis; entries that change
        state meanwhile may be seen in their new state or missed, never twice.
        """
        return self._iter(states, page=PAGE)

    def _iter(self, states: Collection[EntryState] | None, *, page: int) -> Iterator[Entry]:
        wanted = _ALL if states is None else [EntryState(s).value for s in states]
        if not wanted:
            return
        page = max(1, min(page, PAGE))
        after = "-"
        while True:
            batch = codec.entries(
                self._run("PAGE", [after, str(page), *wanted], doing="read entries")
            )
            yield from batch
            if len(batch) < page:
                return
            after = "(" + batch[-1].id

    def mark(self) -> int:
        """A watermark: entries journaled after this call have a larger seq (see `tally`)."""
        if self._closed:
            raise RuntimeError(f"the journal {self.location} is closed")
        with redis_errors(self.target, "read the journal"):
            seq = self._client.hget(self._keys[_KEY["counters"]], "seq")
        return int(seq or 0)

    def tally(self, mark: int) -> dict[tuple[bool, str], int]:
        """(journaled after `mark`, state) -> how many entries; hits awaiting a lookup are
        counted under "awaiting_lookup". Counted by Redis a slice at a time."""
        counts: dict[tuple[bool, str], int] = {}
        cursor = "0"
        while True:
            flat = self._run(
                "TALLY", [cursor, str(int(mark)), str(TALLY_PAGE)], doing="count entries"
            )
            cursor = codec.text_of(flat[0])
            for i in range(1, len(flat), 2):
                after, state = codec.text_of(flat[i]).split(":", 1)
                key = (after == "1", state)
                counts[key] = counts.get(key, 0) + int(flat[i + 1])
            if cursor == "0":
                return counts

    def has_key(self, key: str) -> bool:
        """True when `key` is in the journal or was delivered within the dedup window."""
        cutoff = codec.number(self._clock() - self._dedup_window)
        return bool(self._run("HAS_KEY", [key, cutoff], doing="look up a key"))

    def find(self, key: str) -> Entry | None:
        """The entry journaled under idempotency key `key`, or None."""
        found = codec.entries(self._run("FIND", [key], doing="look up a key"))
        return found[0] if found else None

    def remember_delivered(self, keys: Sequence[str]) -> int:
        """Remember keys of hits delivered without being journaled (a direct `track`): within
        the dedup window they are duplicates. Returns how many keys were written."""
        if isinstance(keys, str):
            raise TypeError("pass a sequence of keys, not a single string")
        if not keys:
            return 0
        args = [codec.number(self._clock()), *keys]
        return int(self._run("REMEMBER", args, doing="remember delivered keys"))

    def stats(self, *, now: float | None = None) -> JournalStats:
        """Counts, ages and sizes for `queue status` and the health checks (one snapshot)."""
        at = self._now(now)
        args = [codec.number(at), codec.number(at - self._dedup_window)]
        out = self._run("STATS", args, doing="read the journal's stats")
        return _stats(out, at=at, location=self.location)

    # -- flush records --

    def record_flush(self, result: Mapping[str, Any]) -> None:
        """Keep the outcome of a flush (JSON-able values) with the time; the last 20 are kept."""
        blob = json.dumps(dict(result), default=str, sort_keys=True)
        record = codec.flush_record(self._clock(), blob)
        self._run("RECORD_FLUSH", [record, str(FLUSH_HISTORY)], doing="record the flush")

    def last_flush(self) -> dict[str, Any] | None:
        """The last recorded flush result plus its `recorded_at` time, or None."""
        records = self.flush_history(limit=1)
        return records[0] if records else None

    def flush_history(self, *, limit: int = FLUSH_HISTORY) -> list[dict[str, Any]]:
        """The recorded flush results, newest first, each with its `recorded_at` time."""
        if self._closed:
            raise RuntimeError(f"the journal {self.location} is closed")
        if limit <= 0:
            return []
        with redis_errors(self.target, "read the flush history"):
            rows = self._client.lrange(self._keys[_KEY["flushes"]], 0, limit - 1)
        return [codec.flush_result(row) for row in rows]

    # -- exactly-once: uncertain sends and the site map --

    def await_lookup(
        self, ids: Sequence[str], *, error: str, settle: float, alone: bool = False
    ) -> int:
        """Set hits aside until Matomo is asked for them: `settle` seconds after their send."""
        return self._update(
            "await",
            ids,
            "1" if alone else "0",
            codec.clean(error[:_MAX_ERROR_LENGTH]),
            codec.number(settle),
            doing="set hits aside for a lookup",
        )

    def due_lookups(self, *, now: float | None = None, limit: int = 1000) -> list[Entry]:
        """Hits awaiting a lookup whose send has settled, the earliest due first (in id order)."""
        if limit <= 0:
            return []
        args = [codec.number(self._now(now)), str(int(limit))]
        return codec.entries(self._run("DUE_LOOKUPS", args, doing="read hits awaiting lookups"))

    def awaiting_lookup(self) -> tuple[int, float | None]:
        """How many hits await a lookup, and when the next of them is due."""
        if self._closed:
            raise RuntimeError(f"the journal {self.location} is closed")
        key = self._keys[_KEY["lookups"]]
        with redis_errors(self.target, "read hits awaiting lookups"):
            pipe = self._client.pipeline(transaction=True)
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
            count, first = pipe.execute()
        return int(count), (float(first[0][1]) if first else None)

    def confirm(self, ids: Sequence[str]) -> int:
        """Matomo has these hits: delivered (by lookup), not sent again; how many."""
        rows = [entry_id for (entry_id,) in id_list(ids)]
        if not rows:
            return 0
        args = [codec.number(self._clock()), *rows]
        return int(self._run("CONFIRM", args, doing="record confirmed hits"))

    def lookup_missing(self, ids: Sequence[str]) -> int:
        """Matomo does not have these hits: due again now, their uncertain send settled."""
        return self._update("missing", ids, doing="record lookups")

    def lookup_failed(self, ids: Sequence[str], *, error: str, next_attempt_at: float) -> int:
        """The lookup could not be made: ask again at `next_attempt_at`; nothing is guessed."""
        text = codec.clean(error[:_MAX_ERROR_LENGTH])
        return self._update(
            "failed", ids, text, codec.number(next_attempt_at), doing="record lookups"
        )

    def give_up_lookup(self, ids: Sequence[str], *, error: str) -> int:
        """Lookups are impossible: fall back to at-least-once (due again now), except hits of
        a partly refused batch, which become `unattributed` as without exactly-once."""
        reason = (
            "Matomo refused part of its batch without saying which hit, and it "
            f"cannot be looked up: {error}"
        )[:500]
        return self._update(
            "give_up",
            ids,
            codec.clean(error[:_MAX_ERROR_LENGTH]),
            codec.clean(reason),
            doing="record lookups",
        )

    def hold(self, ids: Sequence[str], *, error: str, until: float) -> int:
        """Hand claimed hits back unsent, not due before `until` (attempt not counted)."""
        text = codec.clean(error[:_MAX_ERROR_LENGTH])
        return self._update("hold", ids, text, codec.number(until), doing="hold hits")

    def set_dimension(self, ids: Sequence[str], dimension: int | None) -> int:
        """Record the key dimension the next send of claimed hits carries (None: none)."""
        value = "" if dimension is None else str(int(dimension))
        return self._update("dimension", ids, value, doing="stamp hits")

    def remember_dimension(self, site: int, dimension_id: int | None) -> None:
        """Record `site`'s usable `matokit_key` dimension (None: it has none), as of now; an
        earlier "lookups unavailable" there is forgotten."""
        value = "" if dimension_id is None else str(int(dimension_id))
        args = [str(int(site)), codec.number(self._clock()), value]
        self._run("SITE", args, doing="remember a site's key dimension")

    def mark_lookups_unavailable(self, site: int, reason: str) -> None:
        """Matomo refused lookups on `site` (Live off, no view access): remember why, a day."""
        args = [str(int(site)), codec.number(self._clock()), "", codec.clean(reason[:500])]
        self._run("SITE", args, doing="remember a site's key dimension")

    def site_dimensions(self) -> dict[int, SiteRecord]:
        """Every site's remembered key dimension record."""
        if self._closed:
            raise RuntimeError(f"the journal {self.location} is closed")
        with redis_errors(self.target, "read the key dimensions"):
            rows = self._client.hgetall(self._keys[_KEY["sites"]])
        records = [codec.site_record(site, record) for site, record in rows.items()]
        return {record.site: record for record in sorted(records, key=lambda r: r.site)}

    # -- `queue migrate` (contract.Transferable) --

    def delivered_keys(self) -> Iterator[DeliveredKey]:
        """Every delivery remembered within the dedup window, a page at a time."""
        cutoff = codec.number(self._clock() - self._dedup_window)
        delivered, unconfirmed, confirmed = (
            self._keys[_KEY[part]]
            for part in ("delivered", "delivered:unconfirmed", "delivered:confirmed")
        )
        start = 0
        while True:
            with redis_errors(self.target, "read the delivered keys"):
                page = self._client.zrangebyscore(
                    delivered, cutoff, "+inf", start=start, num=_TRANSFER_PAGE, withscores=True
                )
                keys = [key for key, _ in page]
                flags_u = self._client.zmscore(unconfirmed, keys) if keys else []
                flags_c = self._client.zmscore(confirmed, keys) if keys else []
            for (key, at), was_u, was_c in zip(page, flags_u, flags_c, strict=True):
                yield DeliveredKey(
                    codec.text_of(key), float(at), int(was_u is not None), was_c is not None
                )
            if len(page) < _TRANSFER_PAGE:
                return
            start += len(page)

    def adopt_entries(self, entries: Sequence[Entry]) -> Adopted:
        """Write `entries` as given in one script, skipping keys held (see Transferable); when
        an id is taken, the page takes fresh ids of the same times."""
        if not entries:
            return Adopted(0, 0, 0, frozenset())
        keys = [e.key for e in entries]
        cutoff = self._clock() - self._dedup_window
        with redis_errors(self.target, "read the journal's keys"):
            held = self._client.hmget(self._keys[_KEY["keys"]], keys)
            when = self._client.zmscore(self._keys[_KEY["delivered"]], keys)
        present = {k for k, h in zip(keys, held, strict=True) if h is not None}
        delivered = {
            k
            for k, at in zip(keys, when, strict=True)
            if at is not None and float(at) >= cutoff and k not in present
        }
        now = self._clock()
        at = codec.number(now)
        rows = [(e, _entry_record(e).encode(), len(e.key.encode())) for e in entries]
        written = -1
        for attempt in range(4):
            parts = []
            for entry, rest, key_length in rows:
                entry_id = (entry.id if attempt == 0 else self._ids(entry.created_at)).encode()
                parts.append(b"%d:%d:%s\x1f%s" % (len(rest) + 27, key_length, entry_id, rest))
            written = int(
                self._run(
                    "ENQUEUE",
                    [at, codec.number(cutoff), "uncertain", b"".join(parts)],
                    doing="copy hits into the journal",
                )
            )
            if written >= 0:
                break
            self._ids.reseed()
        if written < 0:
            raise StorageError(
                f"could not find unused ids for copied hits on Redis at {self.location}",
                path=self.location,
            )
        return Adopted(written, len(present), len(delivered), frozenset(keys))

    def adopt_delivered(self, records: Sequence[DeliveredKey]) -> int:
        """Remember deliveries as given, the later of two winning; how many keys were new."""
        args: list[str] = []
        for r in records:
            args += [r.key, codec.number(r.delivered_at), str(int(r.sent_unconfirmed > 0))]
            args.append(str(int(r.confirmed)))
        if not args:
            return 0
        return int(self._run("ADOPT_DELIVERED", args, doing="copy delivered keys"))

    def adopt_flushes(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Merge flush records by time, keeping the last FLUSH_HISTORY; how many were added."""
        encoded = []
        for record in records:
            fields = dict(record)
            at = float(fields.pop("recorded_at"))
            encoded.append(codec.flush_record(at, json.dumps(fields, default=str, sort_keys=True)))
        if not encoded:
            return 0
        args = [str(FLUSH_HISTORY), *encoded]
        return int(self._run("ADOPT_FLUSHES", args, doing="copy flush records"))

    def adopt_sites(self, records: Sequence[SiteRecord]) -> int:
        """Remember sites' key dimensions where this journal's record is older or absent."""
        args: list[str] = []
        for r in records:
            dimension = "" if r.dimension is None else str(int(r.dimension))
            since = "" if r.unavailable_at is None else codec.number(r.unavailable_at)
            record = lua.SEPARATOR.join(
                (dimension, codec.number(r.checked_at), codec.text(r.unavailable), since)
            )
            args += [str(int(r.site)), codec.number(r.checked_at), record]
        if not args:
            return 0
        return int(self._run("ADOPT_SITES", args, doing="copy site records"))

    def discard(self, entries: Sequence[Entry]) -> int:
        """Delete entries still as given (id, key, state, attempts); how many went."""
        args: list[str] = []
        for e in entries:
            args += [e.id, e.key, e.state.value, str(int(e.attempts))]
        if not args:
            return 0
        return int(self._run("DISCARD", args, doing="delete copied hits"))


_TRANSFER_PAGE: Final = 1000


def _entry_record(entry: Entry) -> str:
    """An entry's record exactly as given, without its seq (the script prepends one)."""
    return lua.SEPARATOR.join(
        (
            codec.number(entry.created_at),
            codec.number(entry.enqueued_at),
            str(int(entry.attempts)),
            codec.number(entry.next_attempt_at),
            entry.state.value,
            codec.text(entry.last_error),
            codec.text(entry.lease_owner),
            "" if entry.lease_expires_at is None else codec.number(entry.lease_expires_at),
            codec.text(entry.reason),
            str(int(entry.sent_unconfirmed)),
            "" if entry.dimension is None else str(int(entry.dimension)),
            "" if entry.sent_at is None else codec.number(entry.sent_at),
            "1" if entry.verify else "0",
            "1" if entry.alone else "0",
            params_json(entry.params),
            entry.key,
        )
    )


def _wait_timeout_ms() -> int:
    return WAIT_TIMEOUT_MS  # read at call time, so tests can shorten it


def _uncertain(
    dimension: int, sent_at: float, settle: float, error: str
) -> Callable[[NewHit, str, str], str]:
    """The record builder of `enqueue_uncertain`."""

    def build(hit: NewHit, params: str, now: str) -> str:
        return codec.uncertain_record(
            hit, params, now, dimension=dimension, sent_at=sent_at, settle=settle, error=error
        )

    return build


def _pairs(flat: Sequence[Any]) -> dict[str, int]:
    return {codec.unclean(codec.text_of(flat[i])): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _stats(out: Sequence[Any], *, at: float, location: str) -> JournalStats:
    """JournalStats from the STATS script's answer."""
    from matokit.journal.reconciling import DIMENSION_TTL

    counts = {state: int(out[i]) for i, state in enumerate(EntryState)}
    oldest_values = [float(v) for v in out[6:9] if v]
    oldest = min(oldest_values, default=None)
    next_at = codec.text_of(out[10])
    next_lookup = codec.text_of(out[13])
    dimensions: dict[int, int | None] = {}
    unavailable: dict[int, str] = {}
    sites = out[19]
    for i in range(0, len(sites), 2):
        record = codec.site_record(codec.text_of(sites[i]), sites[i + 1])
        dimensions[record.site] = record.dimension
        if record.unavailable_at is not None and at - record.unavailable_at < DIMENSION_TTL:
            unavailable[record.site] = record.unavailable or "lookups refused"
    last = codec.text_of(out[20])
    return JournalStats(
        path=location,
        counts=counts,
        due=int(out[9]),
        oldest_created_at=oldest,
        oldest_age=None if oldest is None else max(at - oldest, 0.0),
        next_attempt_at=float(next_at) if next_at else None,
        sent_unconfirmed_total=int(out[5]),
        delivered_unconfirmed=int(out[17]),
        unattributed_by_reason=_pairs(out[14]),
        dead_by_reason=_pairs(out[15]),
        delivered_keys=int(out[16]),
        file_size=int(out[21]),
        last_flush=codec.flush_result(last) if last else None,
        awaiting_lookup=int(out[11]),
        lookups_due=int(out[12]),
        next_lookup_at=float(next_lookup) if next_lookup else None,
        confirmed_by_lookup=int(out[18]),
        key_dimensions=dict(sorted(dimensions.items())),
        lookups_unavailable=unavailable,
    )
