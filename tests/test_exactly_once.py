"""Exactly-once delivery with a real journal and an in-memory Matomo that stores keys.

`KeyMatomo` keeps every stored hit with its `dimensionN` value, answers the bulk tracking
endpoint, `CustomDimensions.getConfiguredCustomDimensions`, and `Live.getLastVisitsDetails`
lookups in `bulk()`; `faults` make one send fail after (or before) storing. The end-to-end
proof against the project's Matomo-compatible server is in tests/e2e/test_exactly_once.py.
Every test using the `delivery` fixture runs on both journal backends (SQLite and Redis).
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from matokit import hits
from matokit.client import TrackResult, bulk_outcomes
from matokit.delivery import Delivery, FlushOptions
from matokit.errors import (
    AuthenticationError,
    InvalidRequestError,
    MatomoError,
    PermissionDeniedError,
    ProtocolError,
    UnavailableError,
)
from matokit.exactlyonce.lookup import LOOKUP_METHOD, Verdict, lookup_params, verdict
from matokit.hits import Hit
from matokit.journal import EntryState, Journal
from matokit.redisstore.connection import RedisTarget
from tests.journals import StoreOpener

T0 = 1_800_000_000.0
SETTLE = 300.0
DIM = 4
_SEGMENT = re.compile(r"^dimension(\d+)==([0-9a-f]{32})$")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class KeyMatomo:
    """Stores hits (with their key dimension) and answers lookups like Matomo."""

    def __init__(self, *, dimension: int | None = DIM, superuser: bool = True) -> None:
        self.dimension = dimension
        self.superuser = superuser
        self.stored: list[dict[str, str]] = []
        self.faults: deque[str] = deque()  # per track(): "after", "before", "garbled", "lose1"
        self.live: str | None = None  # an error message for every Live lookup
        self.lookup_error: MatomoError | None = None  # raised by the whole bulk request
        self.requests: Counter[str] = Counter()
        self.lookups = 0

    # -- tracking
    def track(self, batch: Sequence[Hit]) -> TrackResult:
        self.requests["track"] += 1
        fault = self.faults.popleft() if self.faults else None
        if fault == "before":
            raise UnavailableError("connection reset", maybe_stored=True)
        bad = [i for i, h in enumerate(batch) if "bad" in h.params.get("url", "")]
        keep = [h for i, h in enumerate(batch) if i not in bad]
        if fault == "lose1":
            keep = keep[:-1]
        self.stored.extend(dict(h.params) for h in keep)
        if fault == "after":
            raise UnavailableError("read timed out", maybe_stored=True)
        if fault == "garbled":
            raise ProtocolError("garbled answer", status=200)
        body: dict[str, Any] = {"status": "success", "tracked": len(keep), "invalid": len(bad)}
        if self.superuser:
            body["invalid_indices"] = bad
        return bulk_outcomes(len(batch), body)

    # -- reporting
    def call(self, method: str, /, **params: Any) -> Any:
        self.requests[method] += 1
        if method == "SitesManager.getSitesIdWithAdminAccess":
            return [1, 2]
        assert method == "CustomDimensions.getConfiguredCustomDimensions"
        if self.dimension is None:
            return []
        return [
            {
                "idcustomdimension": str(self.dimension),
                "idsite": str(params["idSite"]),
                "name": "matokit_key",
                "index": "1",
                "scope": "action",
                "active": True,
                "extractions": [],
                "case_sensitive": True,
            }
        ]

    def bulk(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        self.requests["bulk"] += 1
        if self.lookup_error is not None:
            raise self.lookup_error
        answers: list[Any] = []
        for method, params in calls:
            assert method == LOOKUP_METHOD
            assert params["doNotFetchActions"] == 1 and params["filter_limit"] == 1
            self.lookups += 1
            if self.live is not None:
                answers.append(InvalidRequestError(self.live))
                continue
            match = _SEGMENT.match(str(params["segment"]))
            assert match, params["segment"]
            name, key = f"dimension{match[1]}", match[2]
            found = any(h.get(name) == key for h in self.stored)
            answers.append([{"idVisit": 1}] if found else [])
        return answers

    def copies(self) -> Counter[str]:
        """How many times each URL is stored."""
        return Counter(h["url"] for h in self.stored)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def matomo() -> KeyMatomo:
    return KeyMatomo()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def delivery(
    path: Path, clock: Clock, matomo: KeyMatomo, redis_target: RedisTarget | None
) -> Iterator[Delivery]:
    service = Delivery(
        journal_path=path,
        client_factory=lambda: matomo,  # type: ignore[arg-type,return-value]
        has_token=True,
        clock=clock,
        rng=lambda: 0.5,
        exactly_once="auto",
        settle=SETTLE,
        redis=redis_target,
    )
    with service:
        yield service


def queue(delivery: Delivery, count: int, *, site: int = 1, prefix: str = "p") -> None:
    for n in range(count):
        hit = hits.pageview(site, url=f"https://example.org/{prefix}{n}", clock=lambda: T0)
        assert delivery.queue(hit).state == "queued"


def flush(delivery: Delivery, mode: str = "auto", **options: Any) -> Any:
    return delivery.flush(FlushOptions(exactly_once=mode, settle=SETTLE, **options))


def settle(clock: Clock) -> None:
    clock.now += SETTLE + 1


def no_duplicates(matomo: KeyMatomo, count: int, prefix: str = "p") -> None:
    copies = matomo.copies()
    assert {url: n for url, n in copies.items() if n != 1} == {}
    assert len(copies) == count
    assert set(copies) == {f"https://example.org/{prefix}{n}" for n in range(count)}


# --- stamping -------------------------------------------------------------------------------


def test_every_hit_carries_its_key_in_the_site_dimension(
    delivery: Delivery, matomo: KeyMatomo
) -> None:
    queue(delivery, 5)
    keys = {e.key for e in delivery.journal.entries()}
    result = flush(delivery)
    assert result.delivered == 5
    assert {h[f"dimension{DIM}"] for h in matomo.stored} == keys
    # The map is asked once and remembered in the journal for a day.
    assert matomo.requests["CustomDimensions.getConfiguredCustomDimensions"] == 1
    record = delivery.journal.site_dimensions()[1]
    assert (record.site, record.dimension) == (1, DIM)


def test_the_site_map_is_asked_again_after_a_day(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 1, prefix="a")
    flush(delivery)
    queue(delivery, 1, prefix="b")
    clock.now += 3600
    flush(delivery)
    assert matomo.requests["CustomDimensions.getConfiguredCustomDimensions"] == 1
    queue(delivery, 1, prefix="c")
    clock.now += 86400
    flush(delivery)
    assert matomo.requests["CustomDimensions.getConfiguredCustomDimensions"] == 2


def test_off_sends_no_key_and_asks_nothing(delivery: Delivery, matomo: KeyMatomo) -> None:
    queue(delivery, 3)
    flush(delivery, "off")
    assert all(f"dimension{DIM}" not in h for h in matomo.stored)
    assert matomo.requests["CustomDimensions.getConfiguredCustomDimensions"] == 0


def test_a_site_without_the_dimension_is_sent_as_before_under_auto(
    delivery: Delivery, matomo: KeyMatomo
) -> None:
    matomo.dimension = None
    queue(delivery, 3)
    result = flush(delivery)
    assert result.delivered == 3 and result.held == 0
    assert delivery.journal.site_dimensions()[1].dimension is None


def test_on_holds_hits_of_a_site_without_the_dimension(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    matomo.dimension = None
    queue(delivery, 3)
    result = flush(delivery, "on")
    assert (result.delivered, result.held, matomo.requests["track"]) == (0, 3, 0)
    assert any("exactly_once = on" in w for w in result.warnings)
    entries = delivery.journal.entries()
    assert {e.state for e in entries} == {EntryState.PENDING}
    assert all(e.attempts == 0 and "setup exactly-once" in (e.last_error or "") for e in entries)
    # Set up: the next flush after the hold sends them with their keys.
    delivery.journal.remember_dimension(1, DIM)
    matomo.dimension = DIM
    clock.now += 601
    assert flush(delivery, "on").delivered == 3
    no_duplicates(matomo, 3)


def test_a_hit_setting_the_key_dimension_itself_is_a_dead_letter(
    delivery: Delivery, matomo: KeyMatomo
) -> None:
    hit = hits.pageview(1, url="https://example.org/own", clock=lambda: T0)
    hit = Hit(params={**hit.params, f"dimension{DIM}": "mine"}, created_at=hit.created_at)
    delivery.queue(hit)
    result = flush(delivery)
    assert result.dead == 1 and matomo.stored == []
    (dead,) = delivery.journal.entries(states=[EntryState.DEAD])
    assert f"dimension{DIM}" in (dead.reason or "")


# --- uncertain sends ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["after", "garbled"])
def test_a_batch_stored_but_unanswered_is_confirmed_by_lookup_not_resent(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock, fault: str
) -> None:
    queue(delivery, 11)
    matomo.faults.extend([None, fault])  # type: ignore[list-item]
    first = flush(delivery, batch_size=11)  # the first hit goes alone (site not yet seen)
    assert first.awaiting_lookup == 10 and first.delivered == 1
    assert not any("may count them twice" in w for w in first.warnings)
    # Not settled yet: a flush neither looks them up nor sends them again.
    again = flush(delivery)
    assert (again.looked_up, again.sent) == (0, 0)
    settle(clock)
    done = flush(delivery)
    assert (done.looked_up, done.confirmed, done.missing, done.sent) == (10, 10, 0, 0)
    assert delivery.journal.entries() == []
    assert delivery.journal.stats().confirmed_by_lookup == 10
    no_duplicates(matomo, 11)


def test_a_batch_lost_before_storing_is_found_missing_and_sent_once(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 20)
    matomo.faults.extend([None, "before"])  # type: ignore[list-item]
    first = flush(delivery, batch_size=10)
    assert first.awaiting_lookup == 9  # the lone first hit went through; the flush stopped
    settle(clock)
    done = flush(delivery, batch_size=10)
    assert (done.missing, done.confirmed) == (9, 0)
    assert done.remaining_queued == 0
    no_duplicates(matomo, 20)
    assert delivery.journal.stats().delivered_unconfirmed == 0  # none may be stored twice


def test_kill_mid_send_leaves_orphans_that_are_looked_up(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock, tmp_path: Path
) -> None:
    queue(delivery, 6)
    journal = delivery.journal
    journal.remember_dimension(1, DIM)
    claimed = journal.claim("dead-flusher", limit=6, lease_seconds=600, stamp=True)
    assert {e.dimension for e in claimed} == {DIM}
    # The dead flusher had sent the first three with their keys.
    from matokit.delivery.records import entry_hit

    matomo.track([entry_hit(e) for e in claimed[:3]])
    result = flush(delivery)
    assert result.recovered == 6 and result.sent == 0 and result.awaiting_lookup == 6
    settle(clock)
    done = flush(delivery)
    assert (done.confirmed, done.missing) == (3, 3)
    no_duplicates(matomo, 6)


def test_unattributed_batches_are_resolved_by_lookup(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    matomo.superuser = False  # answers without invalid_indices
    for n in range(5):
        url = "https://example.org/bad" if n == 2 else f"https://example.org/p{n}"
        delivery.queue(hits.pageview(1, url=url, clock=lambda: T0))
    result = flush(delivery, batch_size=10)  # p0 alone proves the site, then a bulk of 4
    assert (result.delivered, result.unattributed, result.awaiting_lookup) == (1, 0, 4)
    settle(clock)
    done = flush(delivery, batch_size=10)
    assert (done.confirmed, done.missing) == (3, 1)
    # The missing one was sent alone and refused: a dead letter, nothing left for an operator.
    assert done.rejected == 1
    (dead,) = delivery.journal.entries()
    assert dead.state == EntryState.DEAD and dead.params["url"] == "https://example.org/bad"
    assert set(matomo.copies().values()) == {1} and len(matomo.copies()) == 4


def test_a_failed_lookup_is_asked_again_never_guessed(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 3)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery)
    settle(clock)
    matomo.lookup_error = UnavailableError("Matomo is down")
    failed = flush(delivery)
    assert (failed.lookup_failed, failed.confirmed, failed.missing) == (2, 0, 0)
    assert failed.awaiting_lookup == 2 and matomo.copies()["https://example.org/p1"] == 1
    matomo.lookup_error = None
    clock.now += 61
    done = flush(delivery)
    assert done.confirmed == 2
    no_duplicates(matomo, 3)


def test_a_refused_token_during_lookups_stops_the_flush(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 3)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery)
    queue(delivery, 2, prefix="n")
    settle(clock)
    matomo.lookup_error = AuthenticationError("Unable to authenticate")
    sent_before = matomo.requests["track"]
    result = flush(delivery)
    assert result.stopped_reason == "auth_failed"
    assert matomo.requests["track"] == sent_before  # the token is not sent again


@pytest.mark.parametrize(
    "message",
    [
        "Visits log is deactivated in website settings. A user with super user access can "
        "enable this feature in the website settings.",
        "The plugin Live is not enabled. You can activate the plugin on Settings > Plugins "
        "page in Matomo.",
    ],
)
def test_live_disabled_falls_back_to_at_least_once_loudly(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock, message: str
) -> None:
    queue(delivery, 3)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery)
    settle(clock)
    matomo.live = message
    result = flush(delivery)
    assert result.lookups_unavailable == {1: message}
    assert any("exactly-once is unavailable on site 1" in w for w in result.warnings)
    assert any("may count twice" in w for w in result.warnings)
    # Re-sent at least once: the bounded duplicates of old.
    assert matomo.copies()["https://example.org/p1"] == 2
    assert delivery.journal.entries() == []
    # Later uncertain sends to that site are re-sent at once for a day, not looked up.
    queue(delivery, 1, prefix="z")
    matomo.faults.append("after")
    later = flush(delivery)
    assert later.awaiting_lookup == 0
    assert any("may count them twice" in w for w in later.warnings)


def test_live_disabled_under_on_holds_the_hits(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 3)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery, "on")
    settle(clock)
    matomo.live = "Visits log is deactivated globally."
    result = flush(delivery, "on")
    assert result.held == 2 and result.awaiting_lookup == 2
    assert matomo.copies()["https://example.org/p1"] == 1


def test_no_view_access_for_lookups_falls_back(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 2)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery)
    settle(clock)
    original = matomo.bulk

    def refuse(calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        original(calls)
        return [PermissionDeniedError("requires 'view' access") for _ in calls]

    matomo.bulk = refuse  # type: ignore[method-assign]
    result = flush(delivery)
    assert 1 in result.lookups_unavailable and "view access" in result.lookups_unavailable[1]


def test_hits_awaiting_a_lookup_past_max_age_become_dead_letters(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 2)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery)
    clock.now += 8 * 86400
    matomo.lookup_error = UnavailableError("down")
    result = flush(delivery)
    assert result.dead == 1
    (dead,) = delivery.journal.entries(states=[EntryState.DEAD])
    assert "could not be asked" in (dead.reason or "")


def test_a_track_uncertain_send_is_journaled_for_a_lookup(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    matomo.faults.append("after")
    hit = hits.pageview(1, url="https://example.org/t", clock=lambda: T0)
    outcome = delivery.send(hit)
    assert outcome.state == "queued" and outcome.maybe_stored
    (entry,) = delivery.journal.entries()
    assert (entry.verify, entry.dimension, entry.state) == (True, DIM, "sent_unconfirmed")
    assert flush(delivery).sent == 0
    settle(clock)
    assert flush(delivery).confirmed == 1
    assert matomo.copies()["https://example.org/t"] == 1


def test_goals_and_orders_never_carry_a_key_and_are_never_looked_up(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    goal = hits.goal(1, goal_id="3", clock=lambda: T0)
    delivery.queue(goal)
    matomo.faults.append("after")  # the goal goes first, alone: stored, answer lost
    first = flush(delivery)
    assert first.awaiting_lookup == 0 and f"dimension{DIM}" not in matomo.stored[0]
    settle(clock)
    result = flush(delivery)
    # Matomo records no action for a goal, so a lookup could never find it: at-least-once
    # (Matomo itself counts a goal once per visit unless it allows several conversions).
    assert (result.looked_up, result.delivered) == (0, 1)
    assert any("may count them twice" in w for w in first.warnings)
    assert delivery.send(hits.goal(1, goal_id="4", clock=lambda: T0)).state == "delivered"
    assert f"dimension{DIM}" not in matomo.stored[-1]


def test_a_track_hit_carries_its_key(delivery: Delivery, matomo: KeyMatomo) -> None:
    hit = hits.pageview(1, url="https://example.org/t", clock=lambda: T0)
    outcome = delivery.send(hit)
    assert outcome.state == "delivered"
    assert matomo.stored[0][f"dimension{DIM}"] == outcome.key


# --- the lookup itself ----------------------------------------------------------------------


def test_lookup_params_cover_a_day_either_side_in_utc() -> None:
    params = lookup_params(site=3, dimension=7, key="a" * 32, since=T0, now=T0 + 3 * 86400)
    assert params == {
        "idSite": 3,
        "period": "range",
        "date": "2027-01-14,2027-01-19",
        "segment": f"dimension7=={'a' * 32}",
        "doNotFetchActions": 1,
        "filter_limit": 1,
        "showColumns": "idVisit",
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"idVisit": "5"}], Verdict.STORED),
        ([], Verdict.MISSING),
        ({"result": "success"}, Verdict.FAILED),
        (None, Verdict.FAILED),
        (UnavailableError("timeout"), Verdict.FAILED),
        (
            InvalidRequestError("Segment 'dimension9' is not a supported segment."),
            Verdict.UNAVAILABLE,
        ),
        (InvalidRequestError("Visits log is deactivated globally."), Verdict.UNAVAILABLE),
        (PermissionDeniedError("requires view access"), Verdict.UNAVAILABLE),
        (AuthenticationError("Unable to authenticate"), Verdict.FAILED),
    ],
)
def test_verdicts(answer: Any, expected: Verdict) -> None:
    assert verdict(answer) is expected


def test_journal_counts_an_uncertain_send_once_and_takes_it_back(
    store_opener: StoreOpener,
) -> None:
    clock = Clock()
    with store_opener(clock=clock) as journal:
        journal.remember_dimension(1, DIM)
        hit = hits.pageview(1, url="https://example.org/x", clock=lambda: T0)
        from matokit.delivery.records import new_hit

        journal.enqueue_one(new_hit(hit, "k" * 32))
        (entry,) = journal.claim("me", limit=1, lease_seconds=60, stamp=True)
        assert journal.await_lookup([entry.id], error="timeout", settle=SETTLE) == 1
        (waiting,) = journal.entries()
        assert (waiting.sent_unconfirmed, waiting.verify) == (1, True)
        assert waiting.next_attempt_at == entry.sent_at + SETTLE  # type: ignore[operator]
        assert journal.claim("me", limit=1, lease_seconds=60, now=T0 + 10 * SETTLE) == []
        assert journal.stats(now=T0).due == 0 and journal.stats(now=T0).awaiting_lookup == 1
        assert journal.due_lookups(now=T0) == []
        assert len(journal.due_lookups(now=T0 + SETTLE)) == 1
        assert journal.lookup_missing([entry.id]) == 1
        (again,) = journal.entries()
        assert (again.state, again.sent_unconfirmed, again.verify) == ("pending", 0, False)


def test_a_journal_of_schema_1_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from matokit.journal import APPLICATION_ID

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        f"""PRAGMA application_id = {APPLICATION_ID};
        CREATE TABLE entries (id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, params TEXT NOT NULL,
            created_at REAL NOT NULL, enqueued_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
            state TEXT NOT NULL, last_error TEXT, lease_owner TEXT, lease_expires_at REAL,
            reason TEXT, sent_unconfirmed INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX entries_state_id ON entries (state, id);
        CREATE TABLE delivered (key TEXT PRIMARY KEY, delivered_at REAL NOT NULL,
            sent_unconfirmed INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
        CREATE INDEX delivered_at ON delivered (delivered_at);
        CREATE TABLE flushes (id INTEGER PRIMARY KEY, recorded_at REAL NOT NULL,
            result TEXT NOT NULL);
        INSERT INTO entries VALUES ('01', 'kk', '{{"idsite":"1"}}', 1, 1, 0, 1, 'pending',
            NULL, NULL, NULL, NULL, 0);
        INSERT INTO delivered VALUES ('dd', 5, 0);
        PRAGMA user_version = 1;"""
    )
    conn.close()
    with Journal(path) as journal:
        (entry,) = journal.entries()
        assert (entry.key, entry.verify, entry.dimension) == ("kk", False, None)
        assert journal.has_key("kk")
        assert journal.site_dimensions() == {}


# --- queue reconcile ------------------------------------------------------------------------


def test_reconcile_alone_looks_up_and_sends_nothing(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    queue(delivery, 11)
    matomo.faults.extend([None, "before"])  # type: ignore[list-item]
    flush(delivery, batch_size=11)
    settle(clock)
    sent = matomo.requests["track"]
    result = delivery.reconcile_locked(FlushOptions(exactly_once="auto", settle=SETTLE))
    assert (result.looked_up, result.missing, matomo.requests["track"]) == (10, 10, sent)
    assert delivery.journal.stats().due == 10  # the next flush sends them


def test_reconcile_wait_waits_for_hits_to_settle(
    delivery: Delivery, matomo: KeyMatomo, clock: Clock
) -> None:
    from matokit.delivery.flush import reconcile_only

    queue(delivery, 3)
    matomo.faults.extend([None, "after"])  # type: ignore[list-item]
    flush(delivery)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    options = FlushOptions(exactly_once="auto", settle=SETTLE)
    result = reconcile_only(delivery, options, wait=SETTLE + 60, sleep=sleep)
    assert (result.confirmed, result.awaiting_lookup, result.stopped_reason) == (2, 0, "done")
    assert slept and max(slept) <= 0.25
    # Too short a wait: it says so instead of waiting past it.
    queue(delivery, 1, prefix="w")
    matomo.faults.append("after")
    flush(delivery)
    short = reconcile_only(delivery, options, wait=10, sleep=sleep)
    assert (short.stopped_reason, short.awaiting_lookup) == ("max_time", 1)
