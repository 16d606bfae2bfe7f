"""The Redis journal's values as text: entry records, site records, flush records, floats.

An entry's record is its fields joined by \\x1f in the order of `journal_lua.RECORD_FIELDS`,
the idempotency key last (so it may hold any character). Text fields are "" for None and
"=" + text otherwise, a \\x1f in a text escaped as \\x1e1 (and \\x1e as \\x1e0), so any text
comes back as it was. Floats travel as Python's repr, which Redis and Lua read back as the same
double.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from matokit.journal.queries import id_list, params_of
from matokit.journal.reconciling import SiteRecord
from matokit.journal.records import Entry, EntryState, NewHit, entry_of
from matokit.redisstore.journal_lua import ID_LENGTH, RECORD_FIELDS, SEPARATOR

_US: Final = SEPARATOR
_SPLITS: Final = len(RECORD_FIELDS) - 1
_ESCAPED: Final = re.compile("\x1e([01])")


def number(value: float) -> str:
    """A float as Redis and Lua read it back exactly."""
    return repr(float(value))


def text(value: str | None) -> str:
    """A text field: "" for None, else "=" and the escaped text."""
    if value is None:
        return ""
    return "=" + clean(value)


def clean(value: str) -> str:
    """A text as stored (passed to a script, which adds the "="): the separator escaped."""
    if "\x1e" in value or _US in value:
        return value.replace("\x1e", "\x1e0").replace(_US, "\x1e1")
    return value


def unclean(value: str) -> str:
    """A stored text as it was given."""
    if "\x1e" in value:
        return _ESCAPED.sub(lambda m: "\x1e" if m[1] == "0" else _US, value)
    return value


def _text(field: str) -> str | None:
    return unclean(field[1:]) if field else None


def _float(field: str) -> float | None:
    return float(field) if field else None


def pending_record(hit: NewHit, params: str, now: str) -> str:
    """The record of a hit journaled due now, without its seq (the script prepends it)."""
    created = number(hit.created_at)
    return _US.join(
        (created, now, "0", now, "pending", "", "", "", "", "0", "", "", "0", "0", params, hit.key)
    )


def uncertain_record(
    hit: NewHit, params: str, now: str, *, dimension: int, sent_at: float, settle: float, error: str
) -> str:
    """The record of a hit whose one send is uncertain: awaiting its lookup once settled."""
    return _US.join(
        (
            number(hit.created_at),
            now,
            "1",
            number(sent_at + settle),
            "sent_unconfirmed",
            text(error),
            "",
            "",
            "",
            "1",
            str(int(dimension)),
            number(sent_at),
            "1",
            "0",
            params,
            hit.key,
        )
    )


_STATES: Final = {state.value: state for state in EntryState}


def entry(entry_id: str, record: str) -> Entry:
    """The Entry stored as `record` under `entry_id`."""
    return _entry(entry_id, record, {})


def _entry(entry_id: str, record: str, times: dict[str, float]) -> Entry:
    """`entry`, its shared times read once: the hits of one claim mostly share when they were
    journaled, when they were due and when their lease ends (`times` maps text to float)."""
    (
        _seq, created, enqueued, attempts, next_at, state, error, owner, expires, reason,
        unconfirmed, dimension, sent_at, verify, alone, params, key,
    ) = record.split(_US, _SPLITS)  # fmt: skip
    return entry_of(
        (
            entry_id,
            key,
            params_of(params),
            float(created),
            _time(enqueued, times),
            int(attempts),
            _time(next_at, times),
            _STATES[state],
            _text(error) if error else None,
            _text(owner) if owner else None,
            _time(expires, times) if expires else None,
            _text(reason) if reason else None,
            int(unconfirmed),
            int(dimension) if dimension else None,
            float(sent_at) if sent_at else None,
            verify == "1",
            alone == "1",
        )
    )


def _time(text: str, times: dict[str, float]) -> float:
    """`float(text)`, read once per text in `times`."""
    value = times.get(text)
    if value is None:
        value = times[text] = float(text)
    return value


def entries(blob: bytes | str) -> list[Entry]:
    """The entries of a script's answer ("<length>:<id><record>" after one another; the
    length in bytes, of the id and the record), in id order."""
    data = blob.encode() if isinstance(blob, str) else blob
    text = blob if isinstance(blob, str) else data.decode()
    ascii_only = len(text) == len(data)  # then text and bytes share offsets: one decode
    times: dict[str, float] = {}
    found: list[Entry] = []
    pos, size = 0, len(data)
    while pos < size:
        colon = data.index(b":", pos)
        start = colon + 1
        end = start + int(data[pos:colon])
        middle = start + ID_LENGTH
        if ascii_only:
            found.append(_entry(text[start:middle], text[middle:end], times))
        else:
            found.append(_entry(data[start:middle].decode(), data[middle:end].decode(), times))
        pos = end
    found.sort(key=lambda e: e.id)
    return found


def joined_ids(ids: Sequence[str]) -> str:
    """Entry ids as one script argument (ids are ID_LENGTH long; one argument per id costs
    the client 2 µs each to send). An id of another length names no entry: left out, as an
    unknown id is skipped."""
    return "".join([i for (i,) in id_list(ids) if len(i) == ID_LENGTH])


def site_record(site: bytes | str, record: bytes | str) -> SiteRecord:
    """A site's remembered key dimension from its record (dimension, checked, why, since)."""
    if isinstance(record, bytes):
        record = record.decode()
    dimension, checked, unavailable, since = record.split(_US, 3)
    return SiteRecord(
        site=int(site),
        dimension=int(dimension) if dimension else None,
        checked_at=float(checked),
        unavailable=_text(unavailable),
        unavailable_at=_float(since),
    )


def flush_record(recorded_at: float, result: str) -> str:
    """A flush record: when, then the result's JSON."""
    return number(recorded_at) + _US + result


def flush_result(record: bytes | str) -> dict[str, Any]:
    """A recorded flush result with its `recorded_at` time."""
    if isinstance(record, bytes):
        record = record.decode()
    recorded_at, blob = record.split(_US, 1)
    return {"recorded_at": float(recorded_at), **json.loads(blob)}


def text_of(value: bytes | str) -> str:
    """A Redis answer as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
