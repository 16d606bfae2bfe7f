"""Entry ids as people type them: unique prefixes (like git's short hashes) both ways.

`match` turns what an operator typed into whole ids, refusing (never skipping) a prefix that
names no entry or several; `shortest_unique` gives the shortest prefix, at least `SHORT_ID`
characters long, that names one entry among all entries of the journal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from matokit.errors import AmbiguousEntryError, UnknownEntryError

SHORT_ID: Final = 8  # shortest id shown in tables, like git's 7-character short hashes
MIN_PREFIX: Final = 4  # shortest prefix accepted, so one stray character retries nothing
ABOVE_ID: Final = "~"  # sorts after every Crockford base32 character
_WHAT: Final = {"dead": "dead letter", "unattributed": "unattributed hit"}
_SHOWN: Final = 3  # candidates named for an ambiguous prefix


# (prefix, at most how many) -> (id, state) of the entries whose id starts with it, in id order.
StartingWith = Callable[[str, int], Sequence[tuple[str, str]]]


def match(conn: sqlite3.Connection, prefixes: Sequence[str], *, state: str) -> list[str]:
    """The whole ids of the entries in `state` named by `prefixes` (ids or unique prefixes).

    A prefix is looked up among all entries, so it means the same entry whichever command is
    given it. Raises UnknownEntryError for prefixes naming no entry, or an entry in another
    state, and AmbiguousEntryError for prefixes naming several; each message names them all.
    """
    return match_with(
        lambda prefix, limit: _starting_with(conn, prefix, limit=limit), prefixes, state=state
    )


def match_with(starting_with: StartingWith, prefixes: Sequence[str], *, state: str) -> list[str]:
    """`match` over any journal: `starting_with` finds the entries a prefix names."""
    what = _WHAT.get(state, f"{state} entry")
    found: list[str] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for typed in prefixes:
        prefix = typed.strip().upper()
        if len(prefix) < MIN_PREFIX:
            unknown.append(f"id prefix {typed!r} is shorter than {MIN_PREFIX} characters")
            continue
        rows = list(starting_with(prefix, _SHOWN + 1))
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
    before = "SELECT max(id) FROM entries WHERE id < ?"
    after = "SELECT min(id) FROM entries WHERE id > ?"

    def neighbours(entry_id: str) -> tuple[str | None, str | None]:
        return (
            conn.execute(before, (entry_id,)).fetchone()[0],
            conn.execute(after, (entry_id,)).fetchone()[0],
        )

    return shortest_with({entry_id: neighbours(entry_id) for entry_id in ids})


def shortest_with(neighbours: Mapping[str, tuple[str | None, str | None]]) -> dict[str, str]:
    """`shortest_unique` over any journal, from each id's neighbours among all entries: (the
    largest id below it, the smallest id above it), None where there is none."""
    shorts: dict[str, str] = {}
    for entry_id, around in neighbours.items():
        length = SHORT_ID
        for neighbour in around:
            if neighbour:
                length = max(length, _common(entry_id, neighbour) + 1)
        shorts[entry_id] = entry_id[:length]
    return shorts


def _starting_with(conn: sqlite3.Connection, prefix: str, *, limit: int) -> list[tuple[str, str]]:
    # A range on the primary key: one index seek however large the journal.
    sql = "SELECT id, state FROM entries WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
    return [(row[0], row[1]) for row in conn.execute(sql, (prefix, prefix + ABOVE_ID, limit))]


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
