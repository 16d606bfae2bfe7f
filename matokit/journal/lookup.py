"""Entry ids as people type them: unique prefixes (like git's short hashes) both ways.

`match` turns what an operator typed into whole ids, refusing (never skipping) a prefix that
names no entry or several; `shortest_unique` gives the shortest prefix, at least `SHORT_ID`
characters long, that names one entry among all entries of the journal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from matokit.errors import AmbiguousEntryError, UnknownEntryError

SHORT_ID: Final = 8  # shortest id shown in tables, like git's 7-character short hashes
MIN_PREFIX: Final = 4  # shortest prefix accepted, so one stray character retries nothing
_ABOVE_ID: Final = "~"  # sorts after every Crockford base32 character
_WHAT: Final = {"dead": "dead letter", "unattributed": "unattributed hit"}
_SHOWN: Final = 3  # candidates named for an ambiguous prefix


def match(conn: sqlite3.Connection, prefixes: Sequence[str], *, state: str) -> list[str]:
    """The whole ids of the entries in `state` named by `prefixes` (ids or unique prefixes).

    A prefix is looked up among all entries, so it means the same entry whichever command is
    given it. Raises UnknownEntryError for prefixes naming no entry, or an entry in another
    state, and AmbiguousEntryError for prefixes naming several; each message names them all.
    """
    what = _WHAT.get(state, f"{state} entry")
    found: list[str] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for typed in prefixes:
        prefix = typed.strip().upper()
        if len(prefix) < MIN_PREFIX:
            unknown.append(f"id prefix {typed!r} is shorter than {MIN_PREFIX} characters")
            continue
        rows = _starting_with(conn, prefix, limit=_SHOWN + 1)
        if len(rows) > 1:
            names = ", ".join(row[0] for row in rows[:_SHOWN])
            more = ", ..." if len(rows) > _SHOWN else ""
            ambiguous.append(f"{typed} (matches {names}{more})")
        elif not rows:
            unknown.append(f"no {what} has id {typed}")
        elif rows[0][1] != state:
            article = "an" if what[0] in "aeiou" else "a"
            unknown.append(f"{rows[0][0]} is {rows[0][1]}, not {article} {what}")
        elif rows[0][0] not in found:
            found.append(rows[0][0])
    if unknown:
        raise UnknownEntryError(
            _sentence(unknown + [f"ambiguous: {a}" for a in ambiguous]) + "; nothing was changed.",
            hint=_list_hint(state),
        )
    if ambiguous:
        raise AmbiguousEntryError(
            f"Ambiguous id prefix: {'; '.join(ambiguous)}; nothing was changed.",
            hint="Type more characters of the id. " + _list_hint(state),
        )
    return found


def shortest_unique(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
    """For each id, its shortest prefix (at least SHORT_ID long) naming no other entry."""
    shorts: dict[str, str] = {}
    before = "SELECT max(id) FROM entries WHERE id < ?"
    after = "SELECT min(id) FROM entries WHERE id > ?"
    for entry_id in ids:
        length = SHORT_ID
        for sql in (before, after):
            neighbour = conn.execute(sql, (entry_id,)).fetchone()[0]
            if neighbour:
                length = max(length, _common(entry_id, neighbour) + 1)
        shorts[entry_id] = entry_id[:length]
    return shorts


def _starting_with(conn: sqlite3.Connection, prefix: str, *, limit: int) -> list[tuple[str, str]]:
    # A range on the primary key: one index seek however large the journal.
    sql = "SELECT id, state FROM entries WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
    return [(row[0], row[1]) for row in conn.execute(sql, (prefix, prefix + _ABOVE_ID, limit))]


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _sentence(parts: Sequence[str]) -> str:
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def _list_hint(state: str) -> str:
    flag = "--dead" if state == "dead" else f"--{state}"
    return f"`matokit queue list {flag}` shows their ids; `--format json` shows them whole."


def unknown_without_journal(prefixes: Sequence[str], *, state: str) -> UnknownEntryError:
    """The error for ids given when the profile has no journal at all."""
    what = _WHAT.get(state, f"{state} entry")
    names = ", ".join(prefixes)
    return UnknownEntryError(
        f"No {what} has id {names}: this profile has no journal yet; nothing was changed.",
        hint=_list_hint(state),
    )
