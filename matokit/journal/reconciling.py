"""The journal's side of exactly-once delivery: hits waiting for a lookup, and the key dimensions.

A send whose answer is uncertain (lost, garbled, cut by a kill, partly refused without saying
which hit) leaves its hits in `sent_unconfirmed` with `verify` set: they are never claimed for a
re-send. Once the send has settled, reconciliation asks Matomo for each key and resolves it here:
`confirm` (Matomo has it: delivered, not sent again), `lookup_missing` (it has not: send again),
`lookup_failed` (ask again later, never guess) or `give_up_lookup` (lookups impossible: the
at-least-once re-send of old, or `unattributed` for hits of a partly refused batch).

`sent_unconfirmed` counts the sends that may have stored an extra copy: each uncertain send
adds one, and a lookup that settles it takes it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from matokit.errors import StorageError
from matokit.journal.connection import JournalConnection
from matokit.journal.ids import IdCollision
from matokit.journal.queries import QUEUED_SQL, REQUEUED_STATE, entry_from_row, id_list
from matokit.journal.records import Entry, NewHit
from matokit.journal.schema import ENTRY_COLUMNS

# The site -> key dimension map is asked again after this long.
DIMENSION_TTL: Final = 86400.0

_MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class SiteRecord:
    """What the journal remembers of a site's `matokit_key` dimension.

    `dimension` is None when the site has no usable one; `unavailable` says why lookups failed
    there (Live off, no view access), since `unavailable_at`.
    """

    site: int
    dimension: int | None
    checked_at: float
    unavailable: str | None = None
    unavailable_at: float | None = None

    def fresh(self, now: float) -> bool:
        """Whether the record is recent enough to trust (a day)."""
        return now - self.checked_at < DIMENSION_TTL

    def lookups_unavailable(self, now: float) -> bool:
        """Whether lookups failed here within the last day (after that they are tried again)."""
        return self.unavailable_at is not None and now - self.unavailable_at < DIMENSION_TTL


class Reconciling(JournalConnection):
    """Hits whose last send is uncertain, and what lookups found; the site -> dimension map."""

    # -- uncertain sends --

    def await_lookup(
        self, ids: Sequence[str], *, error: str, settle: float, alone: bool = False
    ) -> int:
        """Set hits aside until Matomo is asked for them: `settle` seconds after their send.

        They stay `sent_unconfirmed` (one more uncertain send counted) and no flush re-sends
        them; with `alone`, their re-send (if Matomo does not have them) goes one per request.
        """
        sql = f"""UPDATE entries SET state = 'sent_unconfirmed',
                sent_unconfirmed = sent_unconfirmed + 1, verify = 1,
                alone = max(alone, :alone), last_error = :error,
                next_attempt_at = coalesce(sent_at, :now) + :settle,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = :id AND state IN {QUEUED_SQL}"""
        common = {
            "alone": int(alone),
            "error": error[:_MAX_ERROR_LENGTH],
            "now": self._clock(),
            "settle": settle,
        }
        return self._update(sql, [{**common, "id": entry_id} for (entry_id,) in id_list(ids)])

    def enqueue_uncertain(
        self, hit: NewHit, *, dimension: int, sent_at: float, settle: float, error: str
    ) -> bool:
        """Journal a hit whose one send (`track`) is uncertain, awaiting its lookup, in one
        transaction; False when its key is already known."""

        def run(conn: sqlite3.Connection) -> bool:
            from matokit.journal.queries import INSERT_SQL, params_json

            now = self._clock()
            row = (
                self._ids(hit.created_at),
                hit.key,
                params_json(hit.params),
                float(hit.created_at),
                now,
                now - self._dedup_window,
            )
            try:
                inserted = conn.execute(INSERT_SQL, row).rowcount
            except sqlite3.IntegrityError as exc:
                if "entries.id" in str(exc):
                    raise IdCollision from exc
                raise
            if inserted != 1:
                return False
            conn.execute(
                """UPDATE entries SET state = 'sent_unconfirmed', sent_unconfirmed = 1,
                       verify = 1, attempts = 1, dimension = ?, sent_at = ?, last_error = ?,
                       next_attempt_at = ?
                   WHERE key = ?""",
                (dimension, sent_at, error[:_MAX_ERROR_LENGTH], sent_at + settle, hit.key),
            )
            return True

        for _ in range(3):
            try:
                return self._write(run)
            except IdCollision:
                self._ids.reseed()
        raise StorageError(
            f"could not find an unused id for a hit in {self.path}", path=str(self.path)
        )

    def due_lookups(self, *, now: float | None = None, limit: int = 1000) -> list[Entry]:
        """Hits awaiting a lookup whose send has settled, oldest first."""
        sql = f"""SELECT {ENTRY_COLUMNS} FROM entries
                  WHERE verify = 1 AND next_attempt_at <= ? AND state = 'sent_unconfirmed'
                  ORDER BY id LIMIT ?"""
        at = self._now(now)
        rows = self._read(lambda conn: conn.execute(sql, (at, limit)).fetchall())
        return [entry_from_row(row) for row in rows]

    def awaiting_lookup(self) -> tuple[int, float | None]:
        """How many hits await a lookup, and when the next of them is due."""
        sql = "SELECT count(*), min(next_attempt_at) FROM entries WHERE verify = 1"
        count, first = self._read(lambda conn: conn.execute(sql).fetchone())
        return int(count), first

    # -- what a lookup found --

    def confirm(self, ids: Sequence[str]) -> int:
        """Matomo has these hits: delivered (by lookup), not sent again; how many."""
        id_rows = id_list(ids)

        def run(conn: sqlite3.Connection) -> int:
            now = self._clock()
            conn.executemany(
                """INSERT INTO delivered (key, delivered_at, sent_unconfirmed, confirmed)
                   SELECT key, ?, max(sent_unconfirmed - 1, 0), 1 FROM entries
                   WHERE id = ? AND verify = 1
                   ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at,
                       sent_unconfirmed = excluded.sent_unconfirmed, confirmed = 1""",
                [(now, entry_id) for (entry_id,) in id_rows],
            )
            return conn.executemany(
                "DELETE FROM entries WHERE id = ? AND verify = 1", id_rows
            ).rowcount

        return self._write(run) if id_rows else 0

    def lookup_missing(self, ids: Sequence[str]) -> int:
        """Matomo does not have these hits: due again now, their uncertain send settled."""
        sql = """UPDATE entries SET verify = 0,
                sent_unconfirmed = max(sent_unconfirmed - 1, 0),
                state = CASE WHEN sent_unconfirmed - 1 > 0 THEN 'sent_unconfirmed'
                    ELSE 'pending' END,
                next_attempt_at = :now,
                last_error = 'not in Matomo (looked up by key): sent again'
            WHERE id = :id AND verify = 1"""
        now = self._clock()
        return self._update(sql, [{"now": now, "id": entry_id} for (entry_id,) in id_list(ids)])

    def lookup_failed(self, ids: Sequence[str], *, error: str, next_attempt_at: float) -> int:
        """The lookup could not be made: ask again at `next_attempt_at`; nothing is guessed."""
        sql = """UPDATE entries SET last_error = ?, next_attempt_at = ?
            WHERE id = ? AND verify = 1"""
        text = error[:_MAX_ERROR_LENGTH]
        return self._update(
            sql, [(text, next_attempt_at, entry_id) for (entry_id,) in id_list(ids)]
        )

    def give_up_lookup(self, ids: Sequence[str], *, error: str) -> int:
        """Lookups are impossible: fall back to at-least-once (due again now), except hits of
        a partly refused batch, which become `unattributed` as without exactly-once."""
        sql = """UPDATE entries SET verify = 0, last_error = :error,
                state = CASE WHEN alone THEN 'unattributed' ELSE 'sent_unconfirmed' END,
                reason = CASE WHEN alone THEN :reason ELSE reason END,
                next_attempt_at = :now
            WHERE id = :id AND verify = 1"""
        common = {
            "error": error[:_MAX_ERROR_LENGTH],
            "reason": (
                "Matomo refused part of its batch without saying which hit, and it "
                f"cannot be looked up: {error}"
            )[:500],
            "now": self._clock(),
        }
        return self._update(sql, [{**common, "id": entry_id} for (entry_id,) in id_list(ids)])

    def hold(self, ids: Sequence[str], *, error: str, until: float) -> int:
        """Hand claimed hits back unsent, not due before `until` (attempt not counted)."""
        sql = f"""UPDATE entries SET attempts = max(attempts - 1, 0), state = {REQUEUED_STATE},
                last_error = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state = 'inflight'"""
        text = error[:_MAX_ERROR_LENGTH]
        return self._update(sql, [(text, until, entry_id) for (entry_id,) in id_list(ids)])

    def set_dimension(self, ids: Sequence[str], dimension: int | None) -> int:
        """Record the key dimension the next send of claimed hits carries (None: none)."""
        sql = "UPDATE entries SET dimension = ? WHERE id = ? AND state = 'inflight'"
        return self._update(sql, [(dimension, entry_id) for (entry_id,) in id_list(ids)])

    # -- the site -> dimension map --

    def remember_dimension(self, site: int, dimension_id: int | None) -> None:
        """Record `site`'s usable `matokit_key` dimension (None: it has none), as of now.

        It also forgets an earlier "lookups unavailable" there: they are tried again.
        """
        sql = """INSERT INTO key_dimensions (site, dimension, checked_at) VALUES (?, ?, ?)
                 ON CONFLICT (site) DO UPDATE SET checked_at = excluded.checked_at,
                     dimension = excluded.dimension, unavailable = NULL, unavailable_at = NULL"""
        now = self._clock()
        self._write(lambda conn: conn.execute(sql, (site, dimension_id, now)))

    def mark_lookups_unavailable(self, site: int, reason: str) -> None:
        """Matomo refused lookups on `site` (Live off, no view access): remember why, a day."""
        sql = """INSERT INTO key_dimensions (site, dimension, checked_at, unavailable,
                     unavailable_at) VALUES (?, NULL, ?, ?, ?)
                 ON CONFLICT (site) DO UPDATE SET unavailable = excluded.unavailable,
                     unavailable_at = excluded.unavailable_at"""
        now = self._clock()
        self._write(lambda conn: conn.execute(sql, (site, now, reason[:500], now)))

    def site_dimensions(self) -> dict[int, SiteRecord]:
        """Every site's remembered key dimension record."""
        sql = """SELECT site, dimension, checked_at, unavailable, unavailable_at
                 FROM key_dimensions ORDER BY site"""
        rows = self._read(lambda conn: conn.execute(sql).fetchall())
        return {int(row[0]): SiteRecord(*row) for row in rows}
