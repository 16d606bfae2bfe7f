"""Send-or-journal for `track`: one hit now as a bulk of one, journaled when it cannot be.

A journal that cannot be used (a damaged file, Redis down) never stops `track` from trying
Matomo; when Matomo fails too, the hit leaves in a `HitNotKeptError` (exit 74) that carries it
as one JSON line, which the command prints on stderr: a hit is never silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from matokit.delivery.matomo import admin_sites, maybe_stored, old_hit_refusal
from matokit.delivery.outcomes import TrackOutcome, TrackState
from matokit.delivery.records import hit_key, new_hit, short_error, unsent_line
from matokit.errors import HitNotKeptError, MatokitError, MatomoError, StorageError, UsageError
from matokit.exactlyonce.lookup import stampable
from matokit.exactlyonce.sites import KeySites
from matokit.hits import Hit
from matokit.journal import EntryState
from matokit.policy import Action, decide

if TYPE_CHECKING:
    from matokit.delivery.ports import Journaling, Sending

log = logging.getLogger("matokit.delivery")


def queue_hit(delivery: Journaling, hit: Hit, *, key: str | None = None) -> TrackOutcome:
    """Only journal `hit` (`track --queue`): queued, or duplicate when its key is known."""
    key = key or hit_key(hit)
    try:
        added = delivery.journal.enqueue_one(new_hit(hit, key))
    except StorageError as exc:
        raise _not_kept(hit, key, exc, "NOT queued") from exc
    if not added:
        return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
    return TrackOutcome(key, TrackState.QUEUED, "journaled; `matokit queue flush` sends it")


@dataclass
class _Send:
    """What `track` knows of its one send: the key dimension it carried, and when it began."""

    dimension: int | None = None
    sent_at: float | None = None
    lookups: bool = False  # an uncertain send is looked up rather than re-sent


def send_hit(delivery: Sending, hit: Hit, *, key: str | None = None) -> TrackOutcome:
    """Send `hit` now as a bulk of one; journal it when it cannot be delivered now.

    Rejected by Matomo: not journaled (re-sending cannot help). Refused token or a
    retryable failure: journaled, with the error in the outcome. With exactly-once, the hit
    carries its key, and an uncertain send is journaled to be looked up before any re-send.
    """
    keyed = hit.key is not None
    key = key or hit_key(hit)
    if keyed and _known(delivery, key):
        return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
    send = _Send()
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
        outgoing = _stamp(delivery, client, hit, key, send)
        send.sent_at = delivery.clock()
        result = client.track([outgoing])
    except MatomoError as exc:
        if decide(exc, attempt=1).action is Action.DEAD_LETTER:
            return TrackOutcome(key, TrackState.REJECTED, exc.message, exc)
        return _journal_failed(delivery, hit, key, exc, send)
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
    if send.lookups and send.dimension is not None and send.sent_at is not None:
        try:
            journaled = _journal_uncertain(delivery, hit, key, note, send)
        except StorageError as exc:
            # Not journaled, so not looked up: reported as unconfirmed, as without lookups.
            log.warning("cannot journal the uncertain hit for a lookup: %s", exc)
            journaled = None
        if journaled is not None:
            return journaled
    return TrackOutcome(key, TrackState.UNCONFIRMED, note)


def _known(delivery: Sending, key: str) -> bool:
    """Whether the journal already holds or delivered `key`; an unusable journal says no (the
    hit is sent: a possible duplicate is better than a hit lost)."""
    try:
        return delivery.journal.has_key(key)
    except StorageError as exc:
        log.warning("cannot check the idempotency key in the journal; sending anyway: %s", exc)
        return False


def _stamp(delivery: Sending, client: object, hit: Hit, key: str, send: _Send) -> Hit:
    """`hit` with its key in the site's key dimension, when exactly-once applies to it."""
    sites = KeySites(
        lambda: delivery.journal,
        lambda: client,
        mode=delivery.exactly_once,
        has_token=delivery.has_token,
        clock=delivery.clock,
    )
    dimension = sites.require(hit.site_id)  # KeyDimensionRequired under `on`: exit 78
    if dimension is None or not stampable(hit.params):
        return hit  # goals and orders record no action: they cannot carry a key
    own = f"dimension{dimension}"
    if own in hit.params:
        raise UsageError(
            f"{own} is MatoKit's idempotency key dimension (matokit_key) on site "
            f"{hit.site_id}: a hit cannot set it itself.",
            hint=f"Use another custom dimension, or set exactly_once = off to send {own}.",
        )
    send.dimension = dimension
    send.lookups = sites.lookups_work(hit.site_id)
    return replace(hit, params={**hit.params, own: key})


def _journal_uncertain(
    delivery: Sending, hit: Hit, key: str, error: str, send: _Send
) -> TrackOutcome | None:
    """Journal a hit whose send is uncertain to be looked up once settled; None if its key
    is already known (then nothing is journaled)."""
    added = delivery.journal.enqueue_uncertain(
        new_hit(hit, key),
        dimension=int(send.dimension or 0),
        sent_at=float(send.sent_at or delivery.clock()),
        settle=delivery.settle,
        error=error,
    )
    if not added:
        return None
    message = (
        f"{error}; journaled: a flush looks it up in Matomo once settled, sends it only if missing"
    )
    return TrackOutcome(key, TrackState.QUEUED, message, maybe_stored=True)


def _journal_failed(
    delivery: Sending, hit: Hit, key: str, error: MatokitError, send: _Send
) -> TrackOutcome:
    maybe = isinstance(error, MatomoError) and maybe_stored(error)
    try:
        if maybe and send.lookups and send.sent_at is not None:
            checked = _journal_uncertain(delivery, hit, key, short_error(error), send)
            if checked is not None:
                return TrackOutcome(key, TrackState.QUEUED, error.message, error, maybe_stored=True)
            return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
        added = delivery.journal.enqueue_one(new_hit(hit, key))
        if added and maybe:
            _mark_unconfirmed(delivery, key, error)
    except StorageError as exc:
        sent = "perhaps stored by Matomo" if maybe else "NOT delivered"
        raise _not_kept(hit, key, exc, f"{sent} ({error.message}) and NOT queued") from exc
    if not added:
        return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
    return TrackOutcome(key, TrackState.QUEUED, error.message, error, maybe_stored=maybe)


def _not_kept(hit: Hit, key: str, exc: StorageError, what: str) -> HitNotKeptError:
    return HitNotKeptError(
        f"{exc.message}. The hit was {what}; it is printed on stderr as one JSON line: keep it "
        "and replay it later with `matokit track import`.",
        hit_line=unsent_line(hit, key),
        path=exc.path,
        hint=exc.hint,
    )


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
