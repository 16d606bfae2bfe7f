"""Hits and journal records, both ways: keys, times and sites."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from matokit.hits import Hit, idempotency_key
from matokit.journal import Entry, NewHit
from matokit.redact import redact


def hit_key(hit: Hit) -> str:
    """The journal key of a hit built by `track`: from `--idempotency-key`, else unique."""
    if hit.key is not None:
        return idempotency_key(hit)
    return secrets.token_hex(16)


def import_key(hit: Hit, record: Mapping[str, Any]) -> str:
    """The key of an import line: its `id`, else its content (and its time, when it gave one).

    A line without `at`/`cdt` is timed at import, so its key leaves the time out: re-running
    the import then finds the same key instead of a "new" hit. Identical untimed lines without
    an `id` are therefore one hit; give them ids to keep them apart.
    """
    if hit.key is not None:
        return idempotency_key(hit)
    params = record.get("params")
    timed = record.get("at") is not None or (isinstance(params, Mapping) and "cdt" in params)
    if timed:
        return idempotency_key(hit)
    untimed = {k: v for k, v in hit.params.items() if k != "cdt"}
    return idempotency_key(replace(hit, params=untimed))


def unsent_line(hit: Hit, key: str) -> str:
    """`hit` as one redacted JSON line that `matokit track import` takes back: its parameters
    (with its time) and its key as `id`, so replaying the line twice still counts it once."""
    record = {"id": hit.key if hit.key is not None else key, "params": dict(hit.params)}
    # ASCII only: the line goes to stderr as is, so no terminal control can hide in it.
    return redact(json.dumps(record, ensure_ascii=True, separators=(",", ":")))


def hit_time(hit: Hit) -> float:
    """The hit's time for the journal (ids sort by it), to the millisecond when it is "now"."""
    cdt = hit.time
    return hit.created_at if int(hit.created_at) == cdt else float(cdt)


def new_hit(hit: Hit, key: str) -> NewHit:
    """The journal record of `hit` under `key`."""
    return NewHit(key=key, params=hit.params, created_at=hit_time(hit))


def entry_hit(entry: Entry) -> Hit:
    """The hit a journal entry holds, ready to send again: with its key in the site's key
    dimension when this send carries one (exactly-once)."""
    params = entry.params
    if entry.dimension is not None:
        params = {**params, f"dimension{entry.dimension}": entry.key}
    return Hit(params=params, created_at=entry.created_at)


def entry_time(entry: Entry) -> float:
    """When the entry's hit happened (its `cdt`), else when it was journaled."""
    return entry.hit_time


def entry_site(entry: Entry) -> int:
    """The entry's idSite (0 when it has none that is a number)."""
    return entry.site


def short_error(error: BaseException) -> str:
    """An error as the journal keeps it: its text, at most 500 characters."""
    return str(error)[:500]
