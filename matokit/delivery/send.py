"""Send-or-journal for `track`: one hit now as a bulk of one, journaled when it cannot be."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from matokit.delivery.matomo import admin_sites, maybe_stored, old_hit_refusal
from matokit.delivery.outcomes import TrackOutcome, TrackState
from matokit.delivery.records import hit_key, new_hit, short_error
from matokit.errors import MatokitError, MatomoError, StorageError
from matokit.hits import Hit
from matokit.journal import EntryState
from matokit.policy import Action, decide

if TYPE_CHECKING:
    from matokit.delivery.ports import Journaling, Sending

log = logging.getLogger("matokit.delivery")


def queue_hit(delivery: Journaling, hit: Hit, *, key: str | None = None) -> TrackOutcome:
    """Only journal `hit` (`track --queue`): queued, or duplicate when its key is known."""
    key = key or hit_key(hit)
    added = delivery.journal.enqueue_one(new_hit(hit, key))
    if not added:
        return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
    return TrackOutcome(key, TrackState.QUEUED, "journaled; `matokit queue flush` sends it")


def send_hit(delivery: Sending, hit: Hit, *, key: str | None = None) -> TrackOutcome:
    """Send `hit` now as a bulk of one; journal it when it cannot be delivered now.

    Rejected by Matomo: not journaled (re-sending cannot help). Refused token or a
    retryable failure: journaled, with the error in the outcome.
    """
    keyed = hit.key is not None
    key = key or hit_key(hit)
    if keyed and delivery.journal.has_key(key):
        return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
    try:
        delivery.pause.check()  # Matomo asked for a pause: queue at once, send nothing
        client = delivery.client()
        refusal = old_hit_refusal(
            delivery.clock() - hit.time,
            hit.site_id,
            has_token=delivery.has_token,
            admin=lambda: admin_sites(client),
        )
        if refusal is not None:
            raise refusal  # no token: a ConfigError for the user; no access: journaled
        result = client.track([hit])
    except MatomoError as exc:
        if decide(exc, attempt=1).action is Action.DEAD_LETTER:
            return TrackOutcome(key, TrackState.REJECTED, exc.message, exc)
        return _journal_failed(delivery, hit, key, exc)
    outcome = result.outcomes[0]
    if outcome == "delivered":
        if keyed:
            _remember_delivered(delivery, key)
        return TrackOutcome(key, TrackState.DELIVERED)
    if outcome == "rejected":
        reason = "Matomo refused the hit (counted invalid in its bulk answer)"
        return TrackOutcome(key, TrackState.REJECTED, reason)
    # Counts that do not add up: it may or may not be stored; re-sending could double it.
    note = result.note or "Matomo's answer did not account for the hit"
    return TrackOutcome(key, TrackState.UNCONFIRMED, note)


def _journal_failed(delivery: Journaling, hit: Hit, key: str, error: MatokitError) -> TrackOutcome:
    maybe = isinstance(error, MatomoError) and maybe_stored(error)
    try:
        added = delivery.journal.enqueue_one(new_hit(hit, key))
        if added and maybe:
            _mark_unconfirmed(delivery, key, error)
    except StorageError as exc:
        raise StorageError(
            f"{exc.message}. The hit was NOT delivered ({error.message}) and NOT queued.",
            path=exc.path,
            hint=exc.hint,
        ) from exc
    if not added:
        return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
    return TrackOutcome(key, TrackState.QUEUED, error.message, error, maybe_stored=maybe)


def _mark_unconfirmed(delivery: Journaling, key: str, error: MatokitError) -> None:
    journal = delivery.journal
    entry = journal.find(key)
    if entry is not None and entry.state is EntryState.PENDING:
        journal.reschedule(
            [entry.id],
            error=short_error(error),
            next_attempt_at=delivery.clock(),
            sent_unconfirmed=True,
        )


def _remember_delivered(delivery: Journaling, key: str) -> None:
    # A failure to remember is not a failure to deliver: the hit is in Matomo.
    try:
        delivery.journal.remember_delivered([key])
    except StorageError as exc:
        log.warning("delivered, but could not remember the idempotency key: %s", exc)
