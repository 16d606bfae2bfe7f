"""Reading the journal's counts, ages and flush records in one consistent snapshot."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from matokit.journal.queries import QUEUED_SQL
from matokit.journal.reconciling import DIMENSION_TTL
from matokit.journal.records import QUEUED_STATES, EntryState, JournalStats
from matokit.sizes import database_size


def read_stats(
    conn: sqlite3.Connection, *, path: Path, at: float, dedup_window: float
) -> JournalStats:
    """The JournalStats of the journal at `path` as of time `at`; run inside a read transaction."""
    counts = dict.fromkeys(EntryState, 0)
    unconfirmed_total = 0
    for state, count, unconfirmed in conn.execute(
        "SELECT state, count(*), sum(sent_unconfirmed) FROM entries GROUP BY state"
    ):
        counts[EntryState(state)] = count
        unconfirmed_total += unconfirmed
    # Ids sort by the hit's millisecond, so each state's first id is its oldest hit.
    oldest_values = [
        row[0]
        for state in QUEUED_STATES
        for row in conn.execute(
            "SELECT created_at FROM entries WHERE state = ? ORDER BY id LIMIT 1", (state,)
        )
    ]
    due, next_at = conn.execute(
        f"""SELECT coalesce(sum(t <= ?), 0), min(t) FROM (
              SELECT CASE WHEN state = 'inflight' THEN lease_expires_at
                          ELSE next_attempt_at END AS t
              FROM entries WHERE state IN {QUEUED_SQL} AND verify = 0)""",
        (at,),
    ).fetchone()
    awaiting, lookups_due, next_lookup = conn.execute(
        """SELECT count(*), coalesce(sum(next_attempt_at <= ?), 0), min(next_attempt_at)
           FROM entries WHERE verify = 1""",
        (at,),
    ).fetchone()
    reasons: dict[str, dict[str, int]] = {"unattributed": {}, "dead": {}}
    for state, reason, count in conn.execute(
        """SELECT state, coalesce(reason, ''), count(*) FROM entries
           WHERE state IN ('unattributed', 'dead') GROUP BY state, reason"""
    ):
        reasons[state][reason] = count
    delivered, delivered_unconfirmed, confirmed = conn.execute(
        """SELECT count(*), coalesce(sum(sent_unconfirmed > 0), 0), coalesce(sum(confirmed), 0)
           FROM delivered WHERE delivered_at >= ?""",
        (at - dedup_window,),
    ).fetchone()
    dimensions: dict[int, int | None] = {}
    unavailable: dict[int, str] = {}
    for site, dimension, reason, since in conn.execute(
        "SELECT site, dimension, unavailable, unavailable_at FROM key_dimensions"
    ):
        dimensions[int(site)] = dimension
        if since is not None and at - since < DIMENSION_TTL:
            unavailable[int(site)] = reason or "lookups refused"
    oldest = min(oldest_values, default=None)
    flushes = last_flushes(conn, 1)
    return JournalStats(
        path=path,
        counts=counts,
        due=due,
        oldest_created_at=oldest,
        oldest_age=None if oldest is None else max(at - oldest, 0.0),
        next_attempt_at=next_at,
        sent_unconfirmed_total=unconfirmed_total,
        delivered_unconfirmed=delivered_unconfirmed,
        unattributed_by_reason=reasons["unattributed"],
        dead_by_reason=reasons["dead"],
        delivered_keys=delivered,
        file_size=database_size(path),
        last_flush=flushes[0] if flushes else None,
        awaiting_lookup=awaiting,
        lookups_due=lookups_due,
        next_lookup_at=next_lookup,
        confirmed_by_lookup=confirmed,
        key_dimensions=dimensions,
        lookups_unavailable=unavailable,
    )


def last_flushes(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The last `limit` recorded flush results, newest first, each with its `recorded_at`."""
    rows = conn.execute(
        "SELECT recorded_at, result FROM flushes ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [{"recorded_at": recorded_at, **json.loads(blob)} for recorded_at, blob in rows]
