"""The flush engine: deliver the journal's due hits in attributable batches.

One flusher per profile (the caller holds the flush lock). Hits are claimed oldest first under
a lease; old hits need an admin token (checked once per flush); hits whose refusal could not
be attributed are sent alone; a whole-batch failure backs off and stops the flush; a refused
token stops it with the hits untouched; `max_attempts` and `max_age` end in dead letters.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Final, TypeVar

from matokit.delivery.groupack import GroupAck
from matokit.delivery.lanes import AUTO_EPOCH, LaneWidth, lane_key, next_bulk
from matokit.delivery.matomo import (
    AT_RISK_AGE,
    OLD_HIT_AGE,
    NoAdminAccess,
    TrackingClient,
    admin_sites,
    maybe_stored,
    old_hit_refusal,
)
from matokit.delivery.outcomes import FlushOptions, FlushResult, Progress
from matokit.delivery.records import entry_hit, entry_site, entry_time, short_error
from matokit.durations import format_duration
from matokit.errors import (
    ConfigError,
    MatokitError,
    MatomoError,
    RateLimitedError,
    RolledBackError,
    ServerPausedError,
    StorageError,
    UnavailableError,
)
from matokit.exactlyonce.lookup import stampable
from matokit.exactlyonce.reconcile import HOLD_DELAY, reconcile
from matokit.exactlyonce.sites import ON, KeyDimensionRequired, KeySites
from matokit.flushrecord import StopReason
from matokit.journal import Entry, EntryState
from matokit.policy import Action, backoff_delay, decide, stop_reason

if TYPE_CHECKING:
    from matokit.client import TrackResult
    from matokit.delivery.ports import Flushing
    from matokit.stopping import StopRequest

T = TypeVar("T")
K = TypeVar("K")

BACKOFF_BASE: Final = 2.0
BACKOFF_CAP: Final = 300.0
# A Retry-After beyond this is capped, so `queue flush --all` can always reach every hit.
MAX_DELAY: Final = 3600.0
# Lookup rounds after the journal ran dry: hits found missing are sent in the same flush.
RECONCILE_ROUNDS: Final = 3
# A bulk Matomo rolled back (a deadlock between lanes) is sent again at once, this many times.
ROLLBACK_RETRIES: Final = 3
ROLLBACK_DELAY: Final = 0.2


def flush(
    delivery: Flushing,
    options: FlushOptions,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
    stop: StopRequest | None = None,
) -> FlushResult:
    """Deliver due hits (all with `include_not_due`) and record the flush in the journal.

    Once `stop` is requested no new request is sent: the one in flight is answered and
    recorded, and the flush ends with `stopped_reason` "interrupted".
    """
    flusher = _Flusher(delivery, options, on_progress=on_progress, stop=stop)
    result = flusher.run(on_start=on_start)
    with contextlib.suppress(StorageError):
        delivery.journal.record_flush(result.record().to_json())
    return result


def reconcile_only(
    delivery: Flushing,
    options: FlushOptions,
    *,
    wait: float | None = None,
    stop: StopRequest | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FlushResult:
    """`queue reconcile`: look up the settled uncertain hits, send nothing (the caller holds
    the flush lock). Hits found missing become due for the next flush.

    With `wait` (seconds), it also waits for hits still settling and looks them up, until none
    awaits a lookup or `wait` has passed (then `stopped_reason` is "max_time").
    """
    flusher = _Flusher(delivery, options, on_progress=None, stop=stop)
    return flusher.reconcile_only(wait=wait, sleep=sleep)


class _Stop(Exception):
    """Ends a flush early: `reason` goes in the record, `error` says what happened."""

    def __init__(self, reason: StopReason, error: MatokitError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class _Flusher:
    """One flush: claim, send, apply outcomes, until nothing is due or a stop condition."""

    def __init__(
        self,
        delivery: Flushing,
        options: FlushOptions,
        *,
        on_progress: Progress | None,
        stop: StopRequest | None = None,
    ) -> None:
        self.d = delivery
        self.stop = stop
        self.journal = delivery.journal
        self.options = options
        self.clock = delivery.clock
        self.on_progress = on_progress
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.result = FlushResult(started_at=self.clock())
        self.superuser: bool | None = None
        self.admin_sites: frozenset[int] | None = None
        self.seen_sites: set[int] = set()
        self.sites = KeySites(
            lambda: self.journal,
            self._client,
            mode=options.exactly_once,
            has_token=delivery.has_token,
            clock=self.clock,
        )
        self.deadline = (
            None if options.max_time is None else self.result.started_at + options.max_time
        )
        self.verified = 0  # uncertain sends of this flush set aside for a lookup
        self.fell_back = 0  # hits re-sent at least once because lookups cannot work
        # Lanes (several bulks in flight): the width, one lock for every journal update and
        # count, the first stop any lane met (the others stop before their next request), and
        # whether Matomo showed strain in this window (429/503, timeout, rollback).
        self.lanes = LaneWidth(fixed=options.concurrency)
        self._lock = threading.RLock()
        self._halt: _Stop | None = None
        self._strained = False
        self._acks = GroupAck(self.journal.ack)  # lanes answered at once: one journal write
        # One batch at a time: the hits a batch delivered are acknowledged by the next claim,
        # in the same journal write (nothing is sent in between; see `_ack_deferred`).
        self._defer_acks = False
        self._deferred: list[str] = []

    # -- the loop

    def run(self, *, on_start: Callable[[int], None] | None = None) -> FlushResult:
        """Flush until nothing is due or a stop condition; the result says which."""
        result = self.result
        self._recover_orphans()
        if self.options.include_not_due:
            self._make_all_due()
        try:
            self._reconcile()
            due = self.journal.stats(now=self.clock()).due
            if on_start is not None:
                on_start(due)
            if due == 0:
                result.stopped_reason = StopReason.NOTHING_DUE
            if due:
                self._check_pause()
                self._claim_and_send()
        except _Stop as stop:
            self._record_stop(stop)
        finally:
            result.finished_at = self.clock()
        self._record_remaining()
        return result

    def reconcile_only(self, *, wait: float | None, sleep: Callable[[float], None]) -> FlushResult:
        """Recover orphans and look up what has settled; with `wait`, until nothing awaits."""
        result = self.result
        self._recover_orphans()
        deadline = None if wait is None else result.started_at + wait
        try:
            while True:
                self._reconcile()
                awaiting, first = self.journal.awaiting_lookup()
                if not awaiting or first is None or deadline is None:
                    break
                if first > deadline:
                    raise _Stop(StopReason.MAX_TIME)
                while self.clock() < first:
                    self._check_stop()
                    sleep(min(0.25, max(first - self.clock(), 0.0)))
        except _Stop as stop:
            self._record_stop(stop)
        finally:
            result.finished_at = self.clock()
        self._record_remaining()
        return result

    def _check_pause(self) -> None:
        """Matomo asked every process of the profile to wait (Retry-After): send nothing."""
        pause = self.d.pause.current()
        if pause is not None:
            raise _Stop(StopReason.RATE_LIMITED, pause.error(self.clock()))

    def _claim_and_send(self) -> None:
        """Claim batches and send them until none is left; `_Stop` ends it early."""
        try:
            self._claim_and_send_loop()
        finally:
            self._ack_deferred()

    def _claim_and_send_loop(self) -> None:
        options = self.options
        deadline = self.deadline
        budget = options.max_events
        rounds = RECONCILE_ROUNDS
        while True:
            self._check_stop()
            if deadline is not None and self.clock() >= deadline:
                raise _Stop(StopReason.MAX_TIME)
            # The flush's first request goes alone, one hit (a refused token is sent once, not
            # N times); then the lanes.
            width = self.lanes.width if self.result.requests else 1
            window = options.batch_size * width
            if not self.result.requests and self.lanes.width > 1:
                window = 1
            limit = window if budget is None else min(window, budget)
            if limit <= 0:
                raise _Stop(StopReason.MAX_EVENTS)
            entries = self.journal.claim(
                self.owner,
                limit=limit,
                lease_seconds=options.lease_seconds,
                stamp=self.sites.enabled,
                ack=list(self._deferred),
            )
            self._deferred.clear()
            if not entries:
                # Sends of this flush that settled meanwhile: look them up, send the missing.
                rounds -= 1
                if rounds >= 0 and self._reconcile():
                    continue
                return
            if budget is not None:
                budget -= len(entries)
            # One lane sends bulk after bulk; on a journal in a server (Redis), it claims the
            # next batch while a bulk is in flight (the claim's wait overlaps the send), as
            # the lanes do. On SQLite, claiming is this process's own work: there the next
            # claim carries the last bulk's acknowledgements, one write per bulk.
            if width == 1 and not (self.journal.remote and self.result.requests):
                self._defer_acks = True
                try:
                    self._batch(entries)
                finally:
                    self._defer_acks = False
            else:
                budget = self._pipeline(entries, width, budget)

    def _ack_deferred(self) -> None:
        """Acknowledge deferred deliveries now (before another request, at the end)."""
        if self._deferred:
            self.journal.ack(self._deferred)
            self._deferred.clear()

    def _record_stop(self, stop: _Stop) -> None:
        result = self.result
        result.stopped_reason = stop.reason
        result.error = stop.error

    def _record_remaining(self) -> None:
        """What is left in the journal, and warnings for hits that may count twice or never."""
        result = self.result
        after = self.journal.stats(now=self.clock())
        result.remaining_queued = after.queued
        result.remaining_due = after.due
        result.next_attempt_at = after.next_attempt_at
        pause = self.d.pause.current()
        result.paused_until = pause.until if pause is not None else None
        result.awaiting_lookup = after.awaiting_lookup
        result.next_lookup_at = after.next_lookup_at
        if self.sites.enabled:
            with contextlib.suppress(StorageError):
                result.lookups_unavailable = self.sites.unavailable()
        result.warnings.extend(self._exactly_once_warnings())
        if result.unattributed:
            result.warnings.append(
                f"{result.unattributed} hit(s) set aside as unattributed: Matomo refused part "
                "of their batch without saying which (only superuser tokens get "
                "invalid_indices); they are not re-sent, to avoid counting the others twice"
            )
        unchecked = result.sent_unconfirmed - self.verified
        if unchecked > 0:
            result.warnings.append(
                f"{unchecked} hit(s) sent without an answer: Matomo may have "
                "stored them, so their re-send may count them twice"
            )

    def _exactly_once_warnings(self) -> list[str]:
        """What exactly-once could not do in this flush, and what waits for a lookup."""
        result = self.result
        notes: list[str] = []
        for site, reason in sorted(result.lookups_unavailable.items()):
            then = (
                "their hits wait (exactly_once = on)"
                if self.sites.mode == ON
                else "they are re-sent and may count twice"
            )
            notes.append(
                f"exactly-once is unavailable on site {site}: Matomo refused the lookups "
                f"({reason}); after an uncertain send {then}"
            )
        if self.fell_back:
            notes.append(
                f"{self.fell_back} hit(s) whose send was uncertain could not be looked up: "
                "re-sent, they may count twice"
            )
        if result.held:
            notes.append(
                f"{result.held} hit(s) held: exactly_once = on and their site has no usable "
                "matokit_key dimension (`matokit setup exactly-once --site ID` creates it)"
            )
        if result.awaiting_lookup:
            notes.append(
                f"{result.awaiting_lookup} hit(s) await a lookup in Matomo (their send was "
                "uncertain): a flush after they settle confirms or re-sends them, never both"
            )
        return notes

    def _recover_orphans(self) -> None:
        """Inflight hits while we hold the flush lock belong to a flusher that died."""
        orphans = self.journal.entries(states=[EntryState.INFLIGHT])
        if not orphans:
            return
        now = self.clock()
        for owner, group in _group_by(orphans, lambda e: e.lease_owner or "?").items():
            error = f"flusher {owner} stopped before recording an answer (it may have sent it)"
            checked = self._lookup_first(group)
            if checked:
                self.journal.await_lookup(
                    [e.id for e in checked], error=error, settle=self.options.settle
                )
            self.journal.reschedule(
                [e.id for e in group if e not in checked],
                error=error,
                next_attempt_at=now,
                sent_unconfirmed=True,
            )
        self.result.recovered = len(orphans)

    def _lookup_first(self, entries: list[Entry]) -> list[Entry]:
        """The hits whose uncertain send is to be looked up before any re-send: sent with
        their key, to a site where lookups work."""
        if not self.sites.enabled:
            return []
        return [e for e in entries if e.dimension is not None and self.sites.lookups_work(e.site)]

    def _reconcile(self) -> bool:
        """Look up settled uncertain hits; True when some were found missing (due again)."""
        if not self.sites.enabled:
            return False
        if self.journal.stats(now=self.clock()).lookups_due:
            self._check_pause()
        done = reconcile(
            self.journal,
            self._client,
            self.sites,
            clock=self.clock,
            max_age=self.options.max_age,
            deadline=self.deadline,
            stop=self.stop,
        )
        result = self.result
        result.requests += done.requests
        result.looked_up += done.looked_up
        result.confirmed += done.confirmed
        result.missing += done.missing
        result.lookup_failed += done.failed
        result.held += done.held
        result.dead += done.dead
        self.fell_back += done.fell_back
        if done.stop_flush and done.error is not None:
            raise _Stop(stop_reason(done.error), done.error)
        return done.missing > 0

    def _make_all_due(self) -> None:
        now = self.clock()
        waiting = [
            e
            for e in self.journal.iter_entries(
                states=[EntryState.PENDING, EntryState.SENT_UNCONFIRMED]
            )
            if e.next_attempt_at > now
        ]
        for error, group in _group_by(waiting, lambda e: e.last_error or "").items():
            self.journal.reschedule([e.id for e in group], error=error, next_attempt_at=now)

    def _batch(self, entries: list[Entry]) -> None:
        """Send one claimed batch: dead letters first, then risky hits alone, then the rest."""
        live = self._prepare(entries)
        self._lane(live, retry_rollbacks=False)

    def _prepare(self, entries: list[Entry]) -> list[Entry]:
        """Dead letters for expired and refused old hits, keys stamped: what is to be sent."""
        now = self.clock()
        live = self._expire(entries, now)
        try:
            live = self._check_old(live, now)
            return self._stamp(live)
        except BaseException:
            with contextlib.suppress(StorageError):
                self._release(live)
            raise

    def _lane(self, live: list[Entry], *, retry_rollbacks: bool) -> None:
        """Send hits in order, at most one request at a time: risky ones alone, the rest in
        bulks of `batch_size` and `max_payload_bytes`."""
        now = self.clock()
        options = self.options
        try:
            while live:
                risky = [e for e in live if self._risky(e, now)]
                if risky:
                    group = risky[:1]
                else:
                    group = next_bulk(
                        live,
                        _params,
                        max_count=options.batch_size,
                        max_bytes=options.max_payload_bytes,
                    )
                if group == live[: len(group)]:  # a bulk is the head of what is left
                    live = live[len(group) :]
                else:
                    sending = {e.id for e in group}
                    live = [e for e in live if e.id not in sending]
                self._send(group, retry_rollbacks=retry_rollbacks)
        except BaseException:
            # Hits not yet handed to a request go back untouched; a request cut short (Ctrl-C)
            # leaves its own hits inflight, recovered by the next flush as maybe sent.
            with contextlib.suppress(StorageError):
                self._release(live)
            raise

    def _pipeline(self, entries: list[Entry], width: int, budget: int | None) -> int | None:
        """Send on `width` lanes at once, claiming more while they send: each lane has its own
        queue (its share of the visitors, in order) and one request in flight. Returns what
        is left of the `max_events` budget.

        Under `auto` it runs an epoch of AUTO_EPOCH windows, then measures and resizes. The
        first stop any lane meets stops them all (each finishes the request in flight); hits
        still queued go back to the journal untouched.
        """
        options = self.options
        window = options.batch_size * width
        # A bulk rolled back by a deadlock between lanes goes again; one fixed lane sends as
        # a one-lane flush always has (a rollback is a failure, retried by the backoff).
        retry_rollbacks = self.lanes.auto or width > 1
        queues: list[deque[Entry]] = [deque() for _ in range(width)]
        cond = threading.Condition()
        producing = [True]
        errors: list[BaseException] = []
        pending: list[_Stop] = []  # a stop met by the producer (max_time, max_events)

        owner: dict[str, int] = {}  # identity -> lane, for the whole run: a visit stays in one
        load = [0] * width  # hits given to each lane so far: a new identity goes to the least

        def feed(batch: list[Entry]) -> None:
            live = self._prepare(batch)
            with cond:
                for entry in live:
                    key = lane_key(entry.params)
                    lane = owner.get(key)
                    if lane is None:
                        lane = owner[key] = load.index(min(load))
                    load[lane] += 1
                    queues[lane].append(entry)
                cond.notify_all()

        def halted() -> bool:
            return self._stopping() or bool(errors)

        def run(index: int) -> None:
            queue = queues[index]
            while True:
                with cond:
                    while not queue and producing[0] and not halted():
                        cond.wait(0.1)
                    if halted() or not queue:
                        return
                    chunk = [queue.popleft() for _ in range(min(len(queue), options.batch_size))]
                    cond.notify_all()
                try:
                    self._lane(chunk, retry_rollbacks=retry_rollbacks)
                except _Stop as stop:
                    with self._lock:
                        if self._halt is None:
                            self._halt = stop
                    with cond:
                        cond.notify_all()
                    return
                except BaseException as exc:  # a storage failure or a bug: re-raised below
                    with cond:
                        errors.append(exc)
                        cond.notify_all()
                    return

        feed(entries)
        threads = [
            threading.Thread(target=run, args=(i,), name=f"matokit-lane-{i}", daemon=True)
            for i in range(width)
        ]
        with self._lock:
            self.result.concurrency = max(self.result.concurrency, width)
        delivered = self.result.delivered + self.result.confirmed
        started = time.monotonic()
        self._strained = False
        for thread in threads:
            thread.start()
        windows = 1
        try:
            while not halted():
                with cond:  # keep a window claimed ahead, so no lane waits for a claim
                    while sum(map(len, queues)) >= 2 * window and not halted():
                        cond.wait(0.1)
                if halted() or (self.lanes.auto and windows >= AUTO_EPOCH):
                    break
                if self.deadline is not None and self.clock() >= self.deadline:
                    pending.append(_Stop(StopReason.MAX_TIME))
                    break
                limit = window if budget is None else min(window, budget)
                if limit <= 0:
                    pending.append(_Stop(StopReason.MAX_EVENTS))
                    break
                more = self.journal.claim(
                    self.owner,
                    limit=limit,
                    lease_seconds=options.lease_seconds,
                    stamp=self.sites.enabled,
                )
                if not more:
                    break
                if budget is not None:
                    budget -= len(more)
                feed(more)
                windows += 1
        finally:
            with cond:
                producing[0] = False
                cond.notify_all()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
            unsent = [entry for queue in queues for entry in queue]
            with contextlib.suppress(StorageError):
                self._release(unsent)
        if errors:
            raise errors[0]
        if self._halt is not None:
            halt, self._halt = self._halt, None
            raise halt
        if pending:
            raise pending[0]
        self.lanes.observe(
            self.result.delivered + self.result.confirmed - delivered,
            time.monotonic() - started,
            strained=self._strained,
        )
        return budget

    def _stamp(self, entries: list[Entry]) -> list[Entry]:
        """Give each hit its site's key dimension (asking Matomo when the remembered map is
        a day old); under exactly_once = on, hold the hits of sites without one."""
        if not self.sites.enabled:
            return entries
        keep: list[Entry] = []
        for site, group in _group_by(entries, lambda e: e.site).items():
            try:
                dimension = self.sites.dimension(site)
            except MatomoError as exc:
                raise _Stop(stop_reason(exc), exc) from exc
            if dimension is None and self.sites.mode == ON:
                required = KeyDimensionRequired(site, self.sites.why(site))
                error = f"{required.message} {required.hint}"
                held = self.journal.hold(
                    [e.id for e in group], error=error, until=self.clock() + HOLD_DELAY
                )
                with self._lock:
                    self.result.held += held
                continue
            wanted = {e.id: dimension if stampable(e.params) else None for e in group}
            changed = [e for e in group if e.dimension != wanted[e.id]]
            for value in {wanted[e.id] for e in changed}:
                self.journal.set_dimension([e.id for e in changed if wanted[e.id] == value], value)
            if changed:
                group = [replace(e, dimension=wanted[e.id]) for e in group]
            own = f"dimension{dimension}"
            reason = (
                f"the hit sets {own} itself, which is MatoKit's idempotency key dimension "
                f"(matokit_key) on site {site}: remove that parameter"
            )
            clash = [e for e in group if wanted[e.id] is not None and own in e.params]
            self._kill([(e, reason) for e in clash])
            keep += [e for e in group if e not in clash]
        return sorted(keep, key=lambda e: e.id)

    def _expire(self, entries: list[Entry], now: float) -> list[Entry]:
        max_age = self.options.max_age
        limit = format_duration(max_age)
        self._kill_each(
            [e for e in entries if now - e.enqueued_at > max_age],
            lambda e: f"not delivered within max_age ({limit}); last error: {e.last_error}",
        )
        return [e for e in entries if now - e.enqueued_at <= max_age]

    def _check_old(self, entries: list[Entry], now: float) -> list[Entry]:
        """Dead-letter the hits Matomo would not record (the 24 h rule); the rest go on."""
        refused: list[tuple[Entry, str]] = []
        try:
            for entry in entries:
                age = now - entry_time(entry)
                if age < OLD_HIT_AGE:  # the rule's first answer, without asking for the site
                    continue
                refusal = old_hit_refusal(
                    age,
                    entry_site(entry),
                    has_token=self.d.has_token,
                    admin=self._admin_sites,
                )
                if refusal is not None:
                    refused.append((entry, _old_hit_reason(refusal)))
        except MatomoError as exc:
            raise _Stop(stop_reason(exc), exc) from exc
        self._kill(refused)
        dead = {e.id for e, _ in refused}
        return [e for e in entries if e.id not in dead]

    def _admin_sites(self) -> frozenset[int]:
        """The sites the token has admin access on, asked once per flush."""
        if self.admin_sites is None:
            self.admin_sites = admin_sites(self._client())
        return self.admin_sites

    def _risky(self, entry: Entry, now: float) -> bool:
        if entry.alone:  # its batch was refused in part without saying which hit
            return True
        if self.superuser:
            return False
        site = entry_site(entry)
        if entry.dimension is None and self._keyed_site(site):
            return True  # a goal or order cannot be looked up: keep its refusal attributable
        return site not in self.seen_sites or now - entry_time(entry) >= AT_RISK_AGE

    def _keyed_site(self, site: int) -> bool:
        """Whether `site`'s hits carry keys in this flush (its dimension is already known)."""
        return self.sites.enabled and self.sites.known_dimension(site) is not None

    def _client(self) -> TrackingClient:
        return self.d.client()

    # -- one request

    def _check_stop(self, unsent: list[Entry] | None = None) -> None:
        """Stop before the next request once asked to (or once another lane stopped):
        `unsent` goes back untouched."""
        if self.stop is not None and self.stop.requested:
            self._release(unsent or [])
            raise _Stop(StopReason.INTERRUPTED)
        halt = self._halt
        if halt is not None:
            self._release(unsent or [])
            raise _Stop(halt.reason, halt.error)

    def _send(self, group: list[Entry], *, retry_rollbacks: bool = False) -> None:
        """One request for `group`, its answer applied to the journal (under the lock: lanes
        send at once, but journal updates and counts are one at a time)."""
        self._ack_deferred()
        self._check_stop(group)
        hits = [entry_hit(e) for e in group]
        try:
            client = self._client()
        except ConfigError:
            self._release(group)
            raise
        with self._lock:
            self.result.requests += 1
            self.result.sent += len(group)
        rollbacks = 0
        while True:
            try:
                answer = client.track(hits)
                break
            except RolledBackError as exc:
                # Nothing was stored: sending it again cannot count a hit twice.
                with self._lock:
                    self.result.rollbacks += 1
                    self._strained = True
                rollbacks += 1
                if not retry_rollbacks or rollbacks > ROLLBACK_RETRIES or self._stopping():
                    with self._lock:
                        self._failed(group, exc)
                    return
                time.sleep(ROLLBACK_DELAY * rollbacks)
                with self._lock:
                    self.result.requests += 1
            except MatomoError as exc:
                with self._lock:
                    if isinstance(exc, RateLimitedError | UnavailableError):
                        self._strained = True
                    self._failed(group, exc)
                return
        self._apply(group, answer)
        if self.on_progress is not None:
            with self._lock:
                self.on_progress(len(group))

    def _stopping(self) -> bool:
        return self._halt is not None or (self.stop is not None and self.stop.requested)

    def _apply(self, group: list[Entry], answer: TrackResult) -> None:
        """Matomo's per-hit answer into the journal. Lanes call it at once: the journal
        serialises its own writes, the lock guards the counts and what the flush learned."""
        with self._lock:
            if answer.invalid_indices is not None:
                self.superuser = True
            elif answer.tracked + answer.invalid > 0 and self.superuser is None:
                self.superuser = False
        outcomes = answer.outcomes
        if len(outcomes) == len(group) and outcomes.count("delivered") == len(group):
            delivered, rejected, invalid, lost = group, [], [], []  # the usual answer
        else:
            by_outcome = _group_by(zip(group, outcomes, strict=True), lambda p: str(p[1]))
            delivered = [e for e, _ in by_outcome.get("delivered", [])]
            rejected = [e for e, _ in by_outcome.get("rejected", [])]
            invalid = [e for e, _ in by_outcome.get("batch_invalid", [])]
            lost = [e for e, _ in by_outcome.get("unconfirmed", [])]
        note = answer.note or "Matomo's answer did not account for these hits"
        for part, alone in ((invalid, True), (lost, False)):
            checked = self._lookup_first(part)
            if checked:
                self.journal.await_lookup(
                    [e.id for e in checked], error=note, settle=self.options.settle, alone=alone
                )
                with self._lock:
                    self.result.sent_unconfirmed += len(checked)
                    self.verified += len(checked)
        aside = [e for e in invalid + lost if e not in self._lookup_first(invalid + lost)]
        if delivered:
            if self._defer_acks:
                self._deferred.extend(e.id for e in delivered)
            else:
                self._acks.ack([e.id for e in delivered])
            with self._lock:
                self.result.delivered += len(delivered)
                self.seen_sites.update(entry_site(e) for e in delivered)
        if rejected:
            self._kill([(e, _rejected_reason(e, self.clock())) for e in rejected])
            with self._lock:
                self.result.rejected += len(rejected)
        if aside:
            self.journal.mark_unattributed([e.id for e in aside], reason=note[:500])
            with self._lock:
                self.result.unattributed += len(aside)

    # -- journal updates

    def _failed(self, group: list[Entry], exc: MatomoError) -> None:
        """Act on `decide` for each hit of a failed request, then stop the flush if it says so."""
        limit = self.options.max_attempts
        decisions = [decide(exc, attempt=e.attempts, max_attempts=limit) for e in group]
        reason = decisions[0].stop  # the error's, the same for every hit
        if reason is None:  # Matomo refused a hit: re-sending cannot help
            self._refused(group, exc)
            return
        if decisions[0].action is Action.RELEASE:
            self.result.sent -= len(group)
            if isinstance(exc, ServerPausedError):  # the client sent nothing
                self.result.requests -= 1
            self._release(group)
        else:
            actions = [(e, d.action) for e, d in zip(group, decisions, strict=True)]
            self._kill_each(
                [e for e, action in actions if action is Action.DEAD_LETTER],
                lambda e: f"gave up after {e.attempts} attempts (max_attempts); last error: {exc}",
            )
            self._reschedule([e for e, action in actions if action is Action.RETRY], exc)
        raise _Stop(reason, exc) from exc

    def _refused(self, group: list[Entry], exc: MatomoError) -> None:
        """The whole batch was refused and nothing stored: find the bad hit by halves."""
        self.result.sent -= len(group)
        if len(group) == 1:
            self._kill([(group[0], f"Matomo refused the hit: {exc.message}")])
            self.result.rejected += 1
            return
        middle = len(group) // 2
        try:
            self._send(group[:middle])
        except _Stop:
            self._release(group[middle:])
            raise
        self._send(group[middle:])

    def _reschedule(self, group: list[Entry], error: MatomoError) -> None:
        if not group:
            return
        unconfirmed = maybe_stored(error)
        if unconfirmed:
            checked = self._lookup_first(group)
            if checked:
                self.journal.await_lookup(
                    [e.id for e in checked], error=short_error(error), settle=self.options.settle
                )
                self.result.rescheduled += len(checked)
                self.result.sent_unconfirmed += len(checked)
                self.verified += len(checked)
                group = [e for e in group if e not in checked]
                if not group:
                    return
        attempt = max(e.attempts for e in group)
        retry_after = getattr(error, "retry_after", None)
        delay = backoff_delay(
            attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, retry_after=retry_after, rng=self.d.rng
        )
        self.journal.reschedule(
            [e.id for e in group],
            error=short_error(error),
            next_attempt_at=self.clock() + min(delay, MAX_DELAY),
            sent_unconfirmed=unconfirmed,
        )
        self.result.rescheduled += len(group)
        if unconfirmed:
            self.result.sent_unconfirmed += len(group)

    def _release(self, entries: list[Entry]) -> None:
        if entries:
            released = self.journal.release([e.id for e in entries])
            with self._lock:
                self.result.released += released

    def _kill_each(self, entries: list[Entry], reason: Callable[[Entry], str]) -> None:
        self._kill([(e, reason(e)) for e in entries])

    def _kill(self, items: list[tuple[Entry, str]]) -> None:
        if items:
            self.journal.kill([(e.id, reason[:1000]) for e, reason in items])
            with self._lock:
                self.result.dead += len(items)


def _old_hit_reason(refusal: MatokitError) -> str:
    """A dead letter's reason for an old hit: the refusal and how to replay it."""
    if isinstance(refusal, NoAdminAccess):
        fix = "use a token with admin access on the site"
    else:
        fix = "set a token with admin access on the site"
    return f"{refusal.message} ({fix}, then `matokit queue retry-dead`)"


def _rejected_reason(entry: Entry, now: float) -> str:
    reason = "Matomo refused this hit (counted invalid in its bulk answer)"
    if now - entry_time(entry) >= AT_RISK_AGE:
        reason += (
            "; its time is about 24 h old or older, which Matomo accepts only with a token "
            f"that has admin access on site {entry_site(entry)}"
        )
    return reason


def _params(entry: Entry) -> Mapping[str, str]:
    return entry.params


def _group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
