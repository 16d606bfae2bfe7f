"""Reconciliation: ask Matomo for every settled uncertain hit, and act only on its answer.

Found -> delivered ("confirmed by lookup"), never sent again. Not found -> due again, sent by
the flush. Lookup failed -> asked again later; nothing is ever guessed. Lookups impossible on a
site (Live off, no view access, dimension gone) -> under `auto`, the at-least-once re-send of
old (loudly, in the result's warnings); under `on`, the hits wait. Hits that waited longer than
`max_age` become dead letters like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from matokit.durations import format_duration
from matokit.errors import AuthenticationError, LockedOutError, MatokitError, MatomoError
from matokit.exactlyonce.lookup import (
    LOOKUP_METHOD,
    LOOKUPS_PER_REQUEST,
    Verdict,
    lookup_params,
    unavailable_reason,
    verdict,
)
from matokit.exactlyonce.sites import ON

if TYPE_CHECKING:
    from matokit.exactlyonce.sites import KeySites
    from matokit.journal import Entry
    from matokit.journal.contract import JournalStore
    from matokit.stopping import StopRequest

# A failed lookup is asked again after this long; under `on`, unavailable lookups too.
RETRY_DELAY: Final = 60.0
HOLD_DELAY: Final = 600.0


@dataclass
class ReconcileResult:
    """What one reconciliation pass did."""

    looked_up: int = 0
    confirmed: int = 0  # Matomo had them: delivered without a re-send
    missing: int = 0  # Matomo did not: due again
    failed: int = 0  # no usable answer: asked again later
    fell_back: int = 0  # lookups impossible: re-sent at least once, or set aside
    held: int = 0  # lookups impossible under exactly_once = on: they wait
    dead: int = 0  # waited longer than max_age
    requests: int = 0
    unavailable: dict[int, str] = field(default_factory=dict)
    error: MatomoError | None = None  # a whole lookup request failed: the pass stopped

    @property
    def stop_flush(self) -> bool:
        """The token itself was refused: a flush must not go on sending it."""
        return isinstance(self.error, AuthenticationError | LockedOutError)


def reconcile(
    journal: JournalStore,
    client: Callable[[], Any],
    sites: KeySites,
    *,
    clock: Callable[[], float],
    max_age: float,
    deadline: float | None = None,
    stop: StopRequest | None = None,
) -> ReconcileResult:
    """Look up every settled hit awaiting it, a bulk request of up to 100 keys at a time."""
    result = ReconcileResult()
    while deadline is None or clock() < deadline:
        if stop is not None and stop.requested:
            break
        entries = journal.due_lookups(now=clock(), limit=LOOKUPS_PER_REQUEST)
        if not entries:
            break
        entries = _expire(journal, entries, clock(), max_age, result)
        entries = _unavailable(journal, entries, sites, result)
        if not entries:
            continue
        if not _lookup(journal, client, sites, entries, clock, result):
            break
    result.unavailable = sites.unavailable()
    return result


def _expire(
    journal: JournalStore, entries: list[Entry], now: float, max_age: float, result: ReconcileResult
) -> list[Entry]:
    old = [e for e in entries if now - e.enqueued_at > max_age]
    if old:
        limit = format_duration(max_age)
        journal.kill(
            [
                (
                    e.id,
                    f"not delivered within max_age ({limit}): its last send was uncertain and "
                    f"Matomo could not be asked whether it has it; last error: {e.last_error}",
                )
                for e in old
            ]
        )
        result.dead += len(old)
    return [e for e in entries if now - e.enqueued_at <= max_age]


def _unavailable(
    journal: JournalStore, entries: list[Entry], sites: KeySites, result: ReconcileResult
) -> list[Entry]:
    """Hits of sites where lookups are known not to work: fall back (auto) or wait (on)."""
    blocked = [e for e in entries if not sites.lookups_work(e.site)]
    if sites.mode == ON:
        blocked = [e for e in entries if e.site in sites.unavailable()]
    if not blocked:
        return entries
    _cannot_look_up(journal, blocked, sites, result, clock_now=None)
    ids = {e.id for e in blocked}
    return [e for e in entries if e.id not in ids]


def _cannot_look_up(
    journal: JournalStore,
    entries: list[Entry],
    sites: KeySites,
    result: ReconcileResult,
    *,
    clock_now: float | None,
) -> None:
    reasons = sites.unavailable()
    for entry in entries:
        reason = reasons.get(entry.site, "lookups are not available on this site")
        error = f"cannot look it up in Matomo: {reason}"
        if sites.mode == ON:
            now = clock_now if clock_now is not None else sites.clock()
            journal.lookup_failed([entry.id], error=error, next_attempt_at=now + HOLD_DELAY)
            result.held += 1
        else:
            journal.give_up_lookup([entry.id], error=error)
            result.fell_back += 1


def _lookup(
    journal: JournalStore,
    client: Callable[[], Any],
    sites: KeySites,
    entries: list[Entry],
    clock: Callable[[], float],
    result: ReconcileResult,
) -> bool:
    """One bulk request of lookups; False when the whole request failed (the pass stops)."""
    calls = [
        (
            LOOKUP_METHOD,
            lookup_params(
                site=e.site,
                dimension=int(e.dimension or 0),
                key=e.key,
                since=min(e.hit_time, e.sent_at or e.hit_time),
                now=clock(),
            ),
        )
        for e in entries
    ]
    result.requests += 1
    try:
        answers = client().bulk(calls)
    except MatomoError as exc:
        journal.lookup_failed(
            [e.id for e in entries], error=str(exc)[:500], next_attempt_at=clock() + RETRY_DELAY
        )
        result.failed += len(entries)
        result.error = exc
        return False
    result.looked_up += len(entries)
    by_verdict: dict[Verdict, list[tuple[Entry, Any]]] = {}
    for entry, answer in zip(entries, answers, strict=True):
        by_verdict.setdefault(verdict(answer), []).append((entry, answer))
    stored = [e for e, _ in by_verdict.get(Verdict.STORED, [])]
    missing = [e for e, _ in by_verdict.get(Verdict.MISSING, [])]
    result.confirmed += journal.confirm([e.id for e in stored])
    result.missing += journal.lookup_missing([e.id for e in missing])
    failed = by_verdict.get(Verdict.FAILED, [])
    for entry, answer in failed:
        error = answer if isinstance(answer, MatokitError) else "Matomo's answer was not a list"
        journal.lookup_failed(
            [entry.id], error=f"lookup failed: {error}", next_attempt_at=clock() + RETRY_DELAY
        )
    result.failed += len(failed)
    refused = by_verdict.get(Verdict.UNAVAILABLE, [])
    for entry, answer in refused:
        sites.mark_unavailable(entry.site, unavailable_reason(answer) or str(answer))
    if refused:
        _cannot_look_up(journal, [e for e, _ in refused], sites, result, clock_now=clock())
    return True
