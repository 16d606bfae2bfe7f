"""The SQL the journal runs most, and the conversions between rows and records."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from matokit.journal.records import Entry, EntryState, entry_of
from matokit.journal.schema import ENTRY_COLUMNS

T = TypeVar("T")

# A hit once sent with its answer lost stays flagged: Matomo may hold a copy whatever follows.
REQUEUED_STATE: Final = "CASE WHEN sent_unconfirmed > 0 THEN 'sent_unconfirmed' ELSE 'pending' END"
QUEUED_SQL: Final = "('pending', 'inflight', 'sent_unconfirmed')"

INSERT_SQL: Final = """
    INSERT INTO entries (id, key, params, created_at, enqueued_at, next_attempt_at, state)
    SELECT ?1, ?2, ?3, ?4, ?5, ?5, 'pending'
    WHERE NOT EXISTS (SELECT 1 FROM delivered WHERE key = ?2 AND delivered_at >= ?6)
    ON CONFLICT (key) DO NOTHING
"""

# Each branch walks the (state, id) index and stops after :limit rows, so a claim stays cheap
# however many entries wait behind the due ones. A lease found expired means its flusher died
# or hung, possibly mid-send: that send is counted as unconfirmed. Hits waiting for a lookup
# (`verify`) are never claimed: only reconciliation decides whether they are sent again.
# With :stamp, each claimed hit that records an action (no `idgoal`: goals and orders record
# none) takes its site's key dimension from `key_dimensions`, and
# `sent_at` says when this send began (a lookup waits for it to settle).
CLAIM_SQL: Final = f"""
    UPDATE entries SET
        state = 'inflight',
        lease_owner = :owner,
        lease_expires_at = :expires,
        attempts = attempts + 1,
        sent_unconfirmed = sent_unconfirmed + (state = 'inflight'),
        last_error = CASE WHEN state = 'inflight'
            THEN 'lease of ' || coalesce(lease_owner, '?') || ' expired' ELSE last_error END,
        sent_at = :now,
        dimension = CASE WHEN :stamp AND json_extract(entries.params, '$.idgoal') IS NULL THEN (
            SELECT k.dimension FROM key_dimensions AS k
            WHERE k.site = CAST(json_extract(entries.params, '$.idsite') AS INTEGER)
        ) END
    WHERE id IN (
        SELECT id FROM (SELECT id FROM entries WHERE state = 'pending'
                        AND next_attempt_at <= :now AND verify = 0 ORDER BY id LIMIT :limit)
        UNION ALL
        SELECT id FROM (SELECT id FROM entries WHERE state = 'sent_unconfirmed'
                        AND next_attempt_at <= :now AND verify = 0 ORDER BY id LIMIT :limit)
        UNION ALL
        SELECT id FROM (SELECT id FROM entries WHERE state = 'inflight'
                        AND lease_expires_at <= :now AND dimension IS NULL
                        ORDER BY id LIMIT :limit)
        ORDER BY id LIMIT :limit
    )
    RETURNING {ENTRY_COLUMNS}
"""

_encode_params = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def params_json(params: Mapping[str, str]) -> str:
    """The stored form of a hit's parameters: compact JSON, never holding a token."""
    # The token is added at send time; a journal never holds it, even if a caller slips.
    if type(params) is not dict or "token_auth" in params:
        params = {k: v for k, v in params.items() if k != "token_auth"}
    return _encode_params(params)


_decode_json = json.JSONDecoder().raw_decode


def params_of(text: str) -> dict[str, str]:
    """A hit's parameters from their stored form (`params_json`). `raw_decode` skips the
    checks `json.loads` makes of its argument (half of its 4.5 µs here); what it reads must
    still be the whole text."""
    params, end = _decode_json(text)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return params  # type: ignore[no-any-return]


def entry_from_row(row: Sequence[Any]) -> Entry:
    """The Entry for a row selected as ENTRY_COLUMNS."""
    return entry_of(
        (
            row[0],
            row[1],
            params_of(row[2]),
            row[3],
            row[4],
            row[5],
            row[6],
            EntryState(row[7]),
            row[8],
            row[9],
            row[10],
            row[11],
            row[12],
            row[13],
            row[14],
            bool(row[15]),
            bool(row[16]),
        )
    )


def fetch_all(conn: sqlite3.Connection, *, sql: str, args: Sequence[Any]) -> list[Any]:
    """Every row of `sql` run with `args`."""
    return conn.execute(sql, args).fetchall()


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last may be shorter), read lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def id_list(ids: Iterable[str]) -> list[tuple[str]]:
    """Entry ids as one-column rows for executemany; a lone string is refused."""
    if isinstance(ids, str):
        raise TypeError("pass a sequence of entry ids, not a single string")
    return [(entry_id,) for entry_id in ids]


def state_filter(states: Iterable[EntryState] | None) -> tuple[str, list[Any]]:
    """A WHERE clause and its arguments selecting `states` (every state when None)."""
    if states is None:
        return "", []
    values = [EntryState(state).value for state in states]
    if not values:
        return "WHERE 0", []
    return f"WHERE state IN ({', '.join('?' * len(values))})", values
