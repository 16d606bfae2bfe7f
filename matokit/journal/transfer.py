"""Copying the SQLite journal's state to and from another journal (`queue migrate`).

Each operation is one transaction and idempotent (see `matokit.journal.contract.Transferable`):
entries are written as given only under keys the file does not hold, deliveries and site
records keep the later of two, flush records are merged by time, and entries are deleted
only as they were read.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from matokit.journal.connection import JournalConnection
from matokit.journal.contract import FLUSH_HISTORY
from matokit.journal.queries import fetch_all, params_json
from matokit.journal.reconciling import SiteRecord
from matokit.journal.records import Adopted, DeliveredKey, Entry
from matokit.journal.schema import ENTRY_COLUMNS

_PAGE: Final = 1000
_PLACEHOLDERS: Final = ", ".join("?" * len(ENTRY_COLUMNS.split(",")))
_INSERT: Final = f"INSERT INTO entries ({ENTRY_COLUMNS}) VALUES ({_PLACEHOLDERS})"


def entry_row(entry: Entry) -> tuple[Any, ...]:
    """An entry as the values of ENTRY_COLUMNS."""
    return (
        entry.id,
        entry.key,
        params_json(entry.params),
        entry.created_at,
        entry.enqueued_at,
        entry.attempts,
        entry.next_attempt_at,
        entry.state.value,
        entry.last_error,
        entry.lease_owner,
        entry.lease_expires_at,
        entry.reason,
        entry.sent_unconfirmed,
        entry.dimension,
        entry.sent_at,
        int(entry.verify),
        int(entry.alone),
    )


def _existing(conn: sqlite3.Connection, sql: str, values: Sequence[str], *more: Any) -> set[str]:
    """The `values` a `... IN ({})` query finds, asked a page of values at a time."""
    found: set[str] = set()
    for start in range(0, len(values), _PAGE):
        part = values[start : start + _PAGE]
        marks = ", ".join("?" * len(part))
        found.update(row[0] for row in conn.execute(sql.format(marks), (*part, *more)))
    return found


class Transferring(JournalConnection):
    """The `Transferable` side of the SQLite journal."""

    def delivered_keys(self) -> Iterator[DeliveredKey]:
        """Every delivery remembered within the dedup window, a page at a time."""
        sql = """SELECT key, delivered_at, sent_unconfirmed, confirmed FROM delivered
                 WHERE key > ? AND delivered_at >= ? ORDER BY key LIMIT ?"""
        after = ""
        cutoff = self._clock() - self._dedup_window
        while True:
            rows = self._read(functools.partial(fetch_all, sql=sql, args=(after, cutoff, _PAGE)))
            for key, at, unconfirmed, confirmed in rows:
                yield DeliveredKey(key, at, int(unconfirmed), bool(confirmed))
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def adopt_entries(self, entries: Sequence[Entry]) -> Adopted:
        """Write `entries` as given in one transaction, skipping keys held (see Transferable)."""
        if not entries:
            return Adopted(0, 0, 0, frozenset())

        def run(conn: sqlite3.Connection) -> Adopted:
            keys = [entry.key for entry in entries]
            present = _existing(conn, "SELECT key FROM entries WHERE key IN ({})", keys)
            cutoff = self._clock() - self._dedup_window
            delivered = (
                _existing(
                    conn,
                    "SELECT key FROM delivered WHERE key IN ({}) AND delivered_at >= ?",
                    keys,
                    cutoff,
                )
                - present
            )
            new = {e.key: e for e in entries if e.key not in present and e.key not in delivered}
            rows = [entry_row(entry) for entry in new.values()]
            taken = _existing(conn, "SELECT id FROM entries WHERE id IN ({})", [r[0] for r in rows])
            for index, row in enumerate(rows):
                if row[0] in taken:  # another hit's id: a fresh one of the same millisecond
                    rows[index] = (self._fresh_id(conn, new[row[1]].created_at), *row[1:])
            conn.executemany(_INSERT, rows)
            return Adopted(len(rows), len(present), len(delivered), frozenset(keys))

        return self._write(run)

    def _fresh_id(self, conn: sqlite3.Connection, created_at: float) -> str:
        while True:
            candidate = self._ids(created_at)
            if not conn.execute("SELECT 1 FROM entries WHERE id = ?", (candidate,)).fetchone():
                return candidate

    def adopt_delivered(self, records: Sequence[DeliveredKey]) -> int:
        """Remember deliveries as given, the later of two winning; how many keys were new."""
        if not records:
            return 0
        rows = [(r.key, r.delivered_at, r.sent_unconfirmed, int(r.confirmed)) for r in records]

        def run(conn: sqlite3.Connection) -> int:
            (before,) = conn.execute("SELECT count(*) FROM delivered").fetchone()
            conn.executemany(
                """INSERT INTO delivered (key, delivered_at, sent_unconfirmed, confirmed)
                   VALUES (?, ?, ?, ?)
                   ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at,
                       sent_unconfirmed = excluded.sent_unconfirmed,
                       confirmed = excluded.confirmed
                   WHERE excluded.delivered_at > delivered.delivered_at""",
                rows,
            )
            (after,) = conn.execute("SELECT count(*) FROM delivered").fetchone()
            return int(after - before)

        return self._write(run)

    def adopt_flushes(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Merge flush records by time, keeping the last FLUSH_HISTORY; how many were added."""
        incoming = []
        for record in records:
            fields = dict(record)
            at = float(fields.pop("recorded_at"))
            incoming.append((at, json.dumps(fields, default=str, sort_keys=True)))
        if not incoming:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            kept = conn.execute("SELECT recorded_at, result FROM flushes").fetchall()
            known = {(float(at), blob) for at, blob in kept}
            new = [row for row in dict.fromkeys(incoming) if row not in known]
            if not new:
                return 0
            merged = sorted(known | set(new))[-FLUSH_HISTORY:]
            conn.execute("DELETE FROM flushes")
            conn.executemany("INSERT INTO flushes (recorded_at, result) VALUES (?, ?)", merged)
            return len(set(new) & set(merged))

        return self._write(run)

    def adopt_sites(self, records: Sequence[SiteRecord]) -> int:
        """Remember sites' key dimensions where this journal's record is older or absent."""
        rows = [
            (r.site, r.dimension, r.checked_at, r.unavailable, r.unavailable_at) for r in records
        ]
        sql = """INSERT INTO key_dimensions (site, dimension, checked_at, unavailable,
                     unavailable_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (site) DO UPDATE SET dimension = excluded.dimension,
                     checked_at = excluded.checked_at, unavailable = excluded.unavailable,
                     unavailable_at = excluded.unavailable_at
                 WHERE excluded.checked_at > key_dimensions.checked_at"""
        return self._update(sql, rows)

    def discard(self, entries: Sequence[Entry]) -> int:
        """Delete entries still as given (same id, key, state and attempts); how many went."""
        sql = "DELETE FROM entries WHERE id = ? AND key = ? AND state = ? AND attempts = ?"
        return self._update(sql, [(e.id, e.key, e.state.value, e.attempts) for e in entries])
