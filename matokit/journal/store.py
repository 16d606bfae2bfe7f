"""The Journal: adding hits, the delivery cycle (claim, ack, reschedule), operator actions, reads.

A claim is a lease: if the flusher dies, the lease expires and the hits become due again.
Delivered idempotency keys are remembered for a window, so replaying an import or a retry never
counts a hit twice.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from matokit.errors import StorageError
from matokit.journal import lookup
from matokit.journal.ids import IdCollision
from matokit.journal.queries import (
    CLAIM_SQL,
    INSERT_SQL,
    QUEUED_SQL,
    REQUEUED_STATE,
    chunks,
    entry_from_row,
    fetch_all,
    id_list,
    params_json,
    state_filter,
)
from matokit.journal.reconciling import Reconciling
from matokit.journal.records import EnqueueResult, Entry, EntryState, JournalStats, NewHit
from matokit.journal.schema import ENTRY_COLUMNS
from matokit.journal.stats import last_flushes, read_stats
from matokit.journal.transfer import Transferring

ENQUEUE_CHUNK: Final = 1000
FLUSH_HISTORY: Final = 20

_MAX_ERROR_LENGTH = 2000
_PAGE_SIZE = 500


class Journal(Reconciling, Transferring):
    """The retry journal of one profile, stored in the SQLite file at `path`."""

    # -- adding hits --

    def enqueue(self, hits: Iterable[NewHit], *, chunk_size: int = ENQUEUE_CHUNK) -> EnqueueResult:
        """Journal `hits`, skipping keys already queued, dead, unattributed or recently delivered.

        The iterable is consumed in chunks of `chunk_size`, each committed in one transaction
        before the next is read, so any size streams through in bounded memory. If this raises,
        the chunks committed before stay journaled. Bulk imports pass larger chunks: fewer
        commits (each an fsync) make them several times faster.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        added = duplicates = 0
        for chunk in chunks(hits, chunk_size):
            count = self._insert_chunk(chunk)
            added += count
            duplicates += len(chunk) - count
        return EnqueueResult(added=added, duplicates=duplicates)

    def enqueue_one(self, hit: NewHit) -> bool:
        """Journal one hit; False when its key is already known (a duplicate)."""
        return self.enqueue((hit,)).added == 1

    def _insert_chunk(self, chunk: list[NewHit]) -> int:
        encoded = [(hit.key, params_json(hit.params), float(hit.created_at)) for hit in chunk]
        for _ in range(3):
            try:
                return self._write(functools.partial(self._insert_rows, encoded=encoded))
            except IdCollision:
                self._ids.reseed()
        raise StorageError(
            f"could not find unused ids for new hits in {self.path}", path=str(self.path)
        )

    def _insert_rows(self, conn: sqlite3.Connection, encoded: list[tuple[str, str, float]]) -> int:
        now = self._clock()
        cutoff = now - self._dedup_window
        new_id = self._ids
        rows = [(new_id(at), key, params, at, now, cutoff) for key, params, at in encoded]
        try:
            return conn.executemany(INSERT_SQL, rows).rowcount
        except sqlite3.IntegrityError as exc:
            if "entries.id" in str(exc):
                raise IdCollision from exc
            raise

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

        Due means pending or sent_unconfirmed with `next_attempt_at <= now` and not awaiting a
        lookup, or inflight with an expired lease (its flusher died; that send counts as
        unconfirmed). The claimed hits are inflight until acked, rescheduled, released, killed
        or their lease expires; their `sent_at` is now. With `stamp`, each takes its site's
        remembered key dimension (`remember_dimension`), which its send must carry. `ack`
        names hits delivered meanwhile: acknowledged first, in the same transaction (one
        commit instead of two for a flusher that sends one batch at a time).
        """
        if limit <= 0:
            if ack:
                self.ack(ack)
            return []
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        at = self._now(now)
        params = {
            "owner": owner,
            "expires": at + lease_seconds,
            "now": at,
            "limit": limit,
            "stamp": int(stamp),
        }
        acked = id_list(ack)

        def run(conn: sqlite3.Connection) -> list[Any]:
            if acked:
                self._ack_rows(conn, acked)
            return conn.execute(CLAIM_SQL, params).fetchall()

        rows = self._write(run)
        return sorted((entry_from_row(row) for row in rows), key=lambda entry: entry.id)

    def ack(self, ids: Sequence[str]) -> int:
        """Mark hits delivered: delete them, remember their keys for the dedup window; how many."""
        id_rows = id_list(ids)
        return self._write(lambda conn: self._ack_rows(conn, id_rows)) if id_rows else 0

    def _ack_rows(self, conn: sqlite3.Connection, id_rows: Sequence[tuple[str]]) -> int:
        """`ack` within a write transaction."""
        now = self._clock()
        conn.executemany(
            """INSERT INTO delivered (key, delivered_at, sent_unconfirmed)
               SELECT key, ?, sent_unconfirmed FROM entries WHERE id = ?
               ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at,
                   sent_unconfirmed = excluded.sent_unconfirmed""",
            [(now, entry_id) for (entry_id,) in id_rows],
        )
        deleted = conn.executemany("DELETE FROM entries WHERE id = ?", id_rows).rowcount
        # Pruning here is an index range scan, nearly free when nothing has expired.
        conn.execute("DELETE FROM delivered WHERE delivered_at < ?", (now - self._dedup_window,))
        return deleted

    def reschedule(
        self,
        ids: Sequence[str],
        *,
        error: str,
        next_attempt_at: float,
        sent_unconfirmed: bool = False,
    ) -> int:
        """Put hits back to wait until `next_attempt_at`, noting `error`.

        With `sent_unconfirmed`, the request was sent and its answer lost: the hit's counter
        goes up and it stays in the sent_unconfirmed state from then on. Dead and unattributed
        hits are left alone. Returns how many hits changed.
        """
        bump = 1 if sent_unconfirmed else 0
        sql = f"""UPDATE entries SET
                sent_unconfirmed = sent_unconfirmed + :bump,
                state = CASE WHEN sent_unconfirmed + :bump > 0
                    THEN 'sent_unconfirmed' ELSE 'pending' END,
                last_error = :error, next_attempt_at = :next,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = :id AND state IN {QUEUED_SQL}"""
        common = {"bump": bump, "error": error[:_MAX_ERROR_LENGTH], "next": next_attempt_at}
        return self._update(sql, [{**common, "id": entry_id} for (entry_id,) in id_list(ids)])

    def release(self, ids: Sequence[str]) -> int:
        """Hand inflight hits back as due without counting the attempt (none was made); how many."""
        sql = f"""UPDATE entries SET attempts = max(attempts - 1, 0), state = {REQUEUED_STATE},
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state = 'inflight'"""
        return self._update(sql, id_list(ids))

    def kill(self, items: Sequence[tuple[str, str]]) -> int:
        """Give up on hits: each `(id, reason)` becomes dead with that reason; how many changed."""
        sql = """UPDATE entries SET state = 'dead', reason = ?,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state != 'dead'"""
        return self._update(sql, [(reason, entry_id) for entry_id, reason in items])

    def mark_unattributed(self, ids: Sequence[str], *, reason: str) -> int:
        """Set queued hits aside, never re-sent, when Matomo's counts cannot say which failed."""
        sql = f"""UPDATE entries SET state = 'unattributed', reason = ?,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state IN {QUEUED_SQL}"""
        return self._update(sql, [(reason, entry_id) for (entry_id,) in id_list(ids)])

    # -- operator actions --

    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Make dead hits due again; None means every dead hit.

        Attempts are reset and the max_age clock restarts (as if enqueued now): a hit that died
        of old age would otherwise die again at the next flush.
        """
        return self._requeue("dead", ids)

    def purge_dead(self, *, older_than: float | None = None, now: float | None = None) -> int:
        """Delete dead hits; with `older_than` (seconds), only hits older than that."""
        if older_than is None:
            return self._write(
                lambda c: c.execute("DELETE FROM entries WHERE state = 'dead'").rowcount
            )
        cutoff = self._now(now) - older_than
        sql = "DELETE FROM entries WHERE state = 'dead' AND created_at < ?"
        return self._write(lambda conn: conn.execute(sql, (cutoff,)).rowcount)

    def retry_unattributed(self, ids: Sequence[str] | None = None) -> int:
        """Make unattributed hits due again; None means every unattributed hit.

        For an operator who checked in Matomo that these hits are missing: Matomo may have
        stored some of them, and each one it did is counted twice. Attempts are reset and the
        max_age clock restarts (as if enqueued now), so a hit set aside long ago is sent rather
        than expired at once. A hit once sent without an answer stays sent_unconfirmed.
        """
        return self._requeue("unattributed", ids)

    def _requeue(self, state: str, ids: Sequence[str] | None) -> int:
        """Dead or unattributed hits back to due now, attempts reset, max_age clock restarted."""
        sql = f"""UPDATE entries SET state = {REQUEUED_STATE}, attempts = 0,
                next_attempt_at = :now, enqueued_at = :now, reason = NULL
            WHERE state = :state"""
        now = self._clock()
        if ids is None:
            return self._write(
                lambda conn: conn.execute(sql, {"now": now, "state": state}).rowcount
            )
        rows = [{"now": now, "state": state, "id": entry_id} for (entry_id,) in id_list(ids)]
        return self._update(sql + " AND id = :id", rows)

    def purge_unattributed(
        self, *, older_than: float | None = None, now: float | None = None
    ) -> int:
        """Delete unattributed hits; with `older_than` (seconds), only hits older than that.

        Matomo may have stored them, so their keys are remembered like delivered ones for the
        dedup window: re-running the import that held them does not send them again.
        """
        where = "state = 'unattributed'"
        args: dict[str, float] = {}
        if older_than is not None:
            where += " AND created_at < :cutoff"
            args["cutoff"] = self._now(now) - older_than

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(
                f"""INSERT INTO delivered (key, delivered_at, sent_unconfirmed)
                    SELECT key, :delivered, 0 FROM entries WHERE {where}
                    ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at""",
                {**args, "delivered": self._clock()},
            )
            return conn.execute(f"DELETE FROM entries WHERE {where}", args).rowcount

        return self._write(run)

    # -- ids people type --

    def match_ids(self, prefixes: Sequence[str], *, state: EntryState | str) -> list[str]:
        """Whole ids of the entries in `state` that `prefixes` (ids or unique prefixes) name.

        Raises UnknownEntryError or AmbiguousEntryError (naming every offending prefix) rather
        than skipping any: an operator's typo must not look like success.
        """
        wanted = EntryState(state).value
        return self._read(lambda conn: lookup.match(conn, list(prefixes), state=wanted))

    def short_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """Each id's shortest prefix (at least 8 characters) that names no other entry."""
        return self._read(lambda conn: lookup.shortest_unique(conn, list(ids)))

    # -- reading --

    def entries(
        self, *, states: Collection[EntryState] | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Entries in the given states (all when None), oldest first."""
        where, args = state_filter(states)
        sql = f"SELECT {ENTRY_COLUMNS} FROM entries {where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._read(functools.partial(fetch_all, sql=sql, args=args))
        return [entry_from_row(row) for row in rows]

    def iter_entries(self, *, states: Collection[EntryState] | None = None) -> Iterator[Entry]:
        """Stream entries oldest first, a page at a time, for exports of any size.

        Each page is its own short read, so a slow consumer never holds the file; entries that
        change state meanwhile may be seen in their new state or missed.
        """
        where, args = state_filter(states)
        joiner = "AND" if where else "WHERE"
        sql = (
            f"SELECT {ENTRY_COLUMNS} FROM entries {where} {joiner} id > ? "
            f"ORDER BY id LIMIT {_PAGE_SIZE}"
        )
        after = ""
        while True:
            rows = self._read(functools.partial(fetch_all, sql=sql, args=[*args, after]))
            for row in rows:
                yield entry_from_row(row)
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1][0]

    def mark(self) -> int:
        """A watermark: entries journaled after this call have a larger rowid (see `tally`)."""
        sql = "SELECT COALESCE(MAX(rowid), 0) FROM entries"
        return int(self._read(lambda conn: conn.execute(sql).fetchone()[0]))

    def tally(self, mark: int) -> dict[tuple[bool, str], int]:
        """(journaled after `mark`, state) -> how many entries: counted by SQLite, so an import
        of a million lines does not hold a million ids in memory. Hits awaiting a lookup are
        counted under "awaiting_lookup" rather than their state."""
        sql = """SELECT rowid > ?, CASE WHEN verify THEN 'awaiting_lookup' ELSE state END,
                        COUNT(*) FROM entries GROUP BY 1, 2"""
        rows = self._read(lambda conn: conn.execute(sql, (mark,)).fetchall())
        return {(bool(after), str(state)): int(count) for after, state, count in rows}

    def has_key(self, key: str) -> bool:
        """True when `key` is in the journal or was delivered within the dedup window."""
        cutoff = self._clock() - self._dedup_window
        sql = """SELECT EXISTS (SELECT 1 FROM entries WHERE key = ?1)
                     OR EXISTS (SELECT 1 FROM delivered WHERE key = ?1 AND delivered_at >= ?2)"""
        return bool(self._read(lambda conn: conn.execute(sql, (key, cutoff)).fetchone()[0]))

    def find(self, key: str) -> Entry | None:
        """The entry journaled under idempotency key `key`, or None."""
        sql = f"SELECT {ENTRY_COLUMNS} FROM entries WHERE key = ?"
        row = self._read(lambda conn: conn.execute(sql, (key,)).fetchone())
        return None if row is None else entry_from_row(row)

    def remember_delivered(self, keys: Sequence[str]) -> int:
        """Remember keys of hits delivered without being journaled (a direct `track`).

        Within the dedup window they are then duplicates, like keys of acknowledged entries.
        Returns how many keys were written.
        """
        if isinstance(keys, str):
            raise TypeError("pass a sequence of keys, not a single string")
        sql = """INSERT INTO delivered (key, delivered_at, sent_unconfirmed) VALUES (?, ?, 0)
                 ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at"""
        now = self._clock()
        rows = [(key, now) for key in keys]
        return self._update(sql, rows)

    def stats(self, *, now: float | None = None) -> JournalStats:
        """Counts, ages and sizes for `queue status` and the health checks."""
        at = self._now(now)
        return self._read(
            functools.partial(read_stats, path=self.path, at=at, dedup_window=self._dedup_window)
        )

    # -- flush records --

    def record_flush(self, result: Mapping[str, Any]) -> None:
        """Keep the outcome of a flush (JSON-able values) with the time; the last 20 are kept."""
        blob = json.dumps(dict(result), default=str, sort_keys=True)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO flushes (recorded_at, result) VALUES (?, ?)", (self._clock(), blob)
            )
            conn.execute(
                "DELETE FROM flushes WHERE id <= (SELECT max(id) FROM flushes) - ?",
                (FLUSH_HISTORY,),
            )

        self._write(run)

    def last_flush(self) -> dict[str, Any] | None:
        """The last recorded flush result plus its `recorded_at` time, or None."""
        records = self._read(lambda conn: last_flushes(conn, 1))
        return records[0] if records else None

    def flush_history(self, *, limit: int = FLUSH_HISTORY) -> list[dict[str, Any]]:
        """The recorded flush results, newest first, each with its `recorded_at` time."""
        return self._read(lambda conn: last_flushes(conn, limit))
