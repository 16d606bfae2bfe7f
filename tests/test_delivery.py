"""Delivery logic with a fake client and a real journal: send-or-journal, import, flush.

The `delivery` fixture runs each test on both journal backends (SQLite and Redis); tests of the
flush lock use the SQLite one (`sqlite_delivery`): the lock is not the journal's.
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from matokit import hits
from matokit.client import TrackResult, bulk_outcomes
from matokit.delivery import (
    AT_RISK_AGE,
    Delivery,
    FlushOptions,
    TrackState,
    import_key,
)
from matokit.delivery.matomo import NoAdminAccess, NoTokenForOldHit, old_hit_refusal
from matokit.errors import (
    AuthenticationError,
    ConfigError,
    DataError,
    FlushInProgressError,
    LockedOutError,
    PermissionDeniedError,
    RateLimitedError,
    RejectedHitError,
    ServerPausedError,
    TokenCoolDownError,
    UnavailableError,
)
from matokit.hits import Hit
from matokit.journal import EntryState, NewHit
from matokit.locking import LOCK_NAME, flush_lock
from matokit.redisstore.connection import RedisTarget
from matokit.stopping import Interrupted, StopRequest
from tests.journals import StoreOpener, journal_written

T0 = 1_800_000_000.0
DAY = 86400.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Answer = dict[str, Any] | BaseException | Callable[[Sequence[Hit]], TrackResult]


class FakeClient:
    """Answers like Matomo's bulk endpoint: hits whose url contains "bad" are invalid.

    `superuser` decides whether answers carry invalid_indices; `answers` are consumed first
    (a dict answer, an exception to raise, or a function of the hits).
    """

    def __init__(self, *, superuser: bool = True, admin: Sequence[int] = (1,)) -> None:
        self.superuser = superuser
        self.admin = list(admin)
        self.sent: list[list[Hit]] = []
        self.calls: list[str] = []
        self.answers: deque[Answer] = deque()
        self.call_error: BaseException | None = None

    def track(self, batch: Sequence[Hit]) -> TrackResult:
        self.sent.append(list(batch))
        if self.answers:
            answer = self.answers.popleft()
            if isinstance(answer, BaseException):
                raise answer
            if callable(answer):
                return answer(batch)
            return bulk_outcomes(len(batch), answer)
        bad = [i for i, h in enumerate(batch) if "bad" in h.params.get("url", "")]
        body: dict[str, Any] = {
            "status": "success",
            "tracked": len(batch) - len(bad),
            "invalid": len(bad),
        }
        if self.superuser:
            body["invalid_indices"] = bad
        return bulk_outcomes(len(batch), body)

    def call(self, method: str, /, **params: Any) -> Any:
        self.calls.append(method)
        if self.call_error is not None:
            raise self.call_error
        assert method == "SitesManager.getSitesIdWithAdminAccess"
        return self.admin

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.sent]

    @property
    def urls(self) -> list[str]:
        return [h.params["url"] for b in self.sent for h in b]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "default" / "journal.sqlite"


def make(
    path: Path,
    clock: FakeClock,
    client: FakeClient,
    *,
    token: bool = True,
    redis: RedisTarget | None = None,
) -> Delivery:
    return Delivery(
        journal_path=path,
        client_factory=lambda: client,
        has_token=token,
        clock=clock,
        rng=lambda: 0.5,
        redis=redis,
    )


@pytest.fixture
def delivery(
    path: Path, clock: FakeClock, client: FakeClient, redis_target: RedisTarget | None
) -> Iterator[Delivery]:
    """The delivery service on the journal backend under test (SQLite, then Redis)."""
    with make(path, clock, client, redis=redis_target) as service:
        yield service


@pytest.fixture
def sqlite_delivery(path: Path, clock: FakeClock, client: FakeClient) -> Iterator[Delivery]:
    with make(path, clock, client) as service:
        yield service


def pv(n: int | str, *, site: int = 1, at: float | None = None, key: str | None = None) -> Hit:
    return hits.pageview(site, url=f"https://example.org/{n}", at=at, key=key, clock=lambda: T0)


def queue_pages(
    delivery: Delivery, count: int, *, site: int = 1, at: float | None = None, prefix: str = "p"
) -> None:
    for i in range(count):
        delivery.queue(pv(f"{prefix}{i}", site=site, at=at))


def states(delivery: Delivery) -> dict[str, str]:
    return {e.params["url"].rsplit("/", 1)[1]: str(e.state) for e in delivery.journal.entries()}


# --- track: queue and send -----------------------------------------------------------------


def test_queue_journals_the_hit_and_a_repeated_key_is_a_duplicate(delivery: Delivery) -> None:
    first = delivery.queue(pv(1, key="order-7"))
    again = delivery.queue(pv(1, key="order-7"))
    assert first.state is TrackState.QUEUED
    assert again.state is TrackState.DUPLICATE
    assert again.key == first.key
    assert len(delivery.journal.entries()) == 1


def test_queue_without_key_never_merges_identical_hits(delivery: Delivery) -> None:
    delivery.queue(pv(1))
    delivery.queue(pv(1))
    assert len(delivery.journal.entries()) == 2


def test_send_delivers_without_creating_a_journal(
    delivery: Delivery, client: FakeClient, path: Path, redis_target: RedisTarget | None
) -> None:
    outcome = delivery.send(pv(1))
    assert outcome.state is TrackState.DELIVERED
    assert client.sizes == [1]
    assert not journal_written(path, redis_target)


def test_send_with_key_is_remembered_and_a_retry_sends_nothing(
    delivery: Delivery, client: FakeClient
) -> None:
    assert delivery.send(pv(1, key="k1")).state is TrackState.DELIVERED
    retry = delivery.send(pv(1, key="k1"))
    assert retry.state is TrackState.DUPLICATE
    assert client.sizes == [1]
    assert delivery.journal.entries() == []


def test_send_queues_the_hit_when_matomo_is_unavailable(
    delivery: Delivery, client: FakeClient
) -> None:
    client.answers.append(UnavailableError("down", maybe_stored=False))
    outcome = delivery.send(pv(1))
    assert outcome.state is TrackState.QUEUED
    assert isinstance(outcome.error, UnavailableError)
    (entry,) = delivery.journal.entries()
    assert entry.state is EntryState.PENDING


def test_send_marks_a_possibly_stored_hit_sent_unconfirmed(
    delivery: Delivery, client: FakeClient
) -> None:
    client.answers.append(UnavailableError("reset after sending", maybe_stored=True))
    outcome = delivery.send(pv(1))
    assert outcome.state is TrackState.QUEUED and outcome.maybe_stored
    (entry,) = delivery.journal.entries()
    assert (entry.state, entry.sent_unconfirmed) == (EntryState.SENT_UNCONFIRMED, 1)


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("Unable to authenticate"),
        TokenCoolDownError("cooling down", rejected_at=T0 - 5, until=T0 + 595),
        LockedOutError("Too many failed logins"),
        RateLimitedError("429", retry_after=30),
    ],
)
def test_send_queues_the_hit_on_token_and_rate_limit_failures(
    delivery: Delivery, client: FakeClient, error: Exception
) -> None:
    client.answers.append(error)
    outcome = delivery.send(pv(1))
    assert outcome.state is TrackState.QUEUED
    assert outcome.error is error
    assert len(delivery.journal.entries()) == 1


def test_send_does_not_queue_a_hit_matomo_rejects(
    delivery: Delivery, client: FakeClient, path: Path, redis_target: RedisTarget | None
) -> None:
    outcome = delivery.send(pv("bad"))
    assert outcome.state is TrackState.REJECTED
    assert "refused" in (outcome.message or "")
    assert not journal_written(path, redis_target)
    client.answers.append(RejectedHitError("HTTP 400"))
    assert delivery.send(pv(2)).state is TrackState.REJECTED


def test_send_of_an_old_hit_checks_admin_access_first(
    delivery: Delivery, client: FakeClient
) -> None:
    old = pv(1, at=T0 - 2 * DAY)
    assert delivery.send(old).state is TrackState.DELIVERED
    assert client.calls == ["SitesManager.getSitesIdWithAdminAccess"]
    client.admin = [2]
    refused = delivery.send(pv(2, at=T0 - 2 * DAY))
    assert refused.state is TrackState.QUEUED
    assert "no admin access on site 1" in refused.error.message  # type: ignore[union-attr]
    assert client.sizes == [1]


def test_send_of_an_old_hit_with_an_invalid_token_sends_no_hit(
    delivery: Delivery, client: FakeClient
) -> None:
    client.call_error = AuthenticationError("Unable to authenticate with the provided token")
    outcome = delivery.send(pv(1, at=T0 - 2 * DAY))
    assert outcome.state is TrackState.QUEUED
    assert isinstance(outcome.error, AuthenticationError)
    assert client.sent == []


def test_send_of_an_old_hit_without_token_is_a_config_error(
    path: Path, clock: FakeClock, client: FakeClient, redis_target: RedisTarget | None
) -> None:
    with (
        make(path, clock, client, token=False, redis=redis_target) as service,
        pytest.raises(ConfigError),
    ):
        service.send(pv(1, at=T0 - 2 * DAY))
    assert client.sent == []


# --- flush ---------------------------------------------------------------------------------


def flush(delivery: Delivery, **options: Any) -> Any:
    return delivery.flush(FlushOptions(**options))


def test_flush_delivers_everything_in_full_batches_with_a_superuser_token(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 250)
    result = flush(delivery, batch_size=100)
    # Site 1 is not yet known to accept hits: its first hit goes alone.
    assert client.sizes == [1, 99, 100, 50]
    assert (result.delivered, result.requests, result.remaining_queued) == (250, 4, 0)
    assert delivery.journal.entries() == []
    assert delivery.journal.last_flush()["delivered"] == 250  # type: ignore[index]


def test_one_lane_sends_one_bulk_at_a_time_each_acknowledged_before_the_next(
    delivery: Delivery, client: FakeClient, redis_target: RedisTarget | None
) -> None:
    """One lane: one request in flight, and a bulk's hits are acknowledged before the next
    bulk goes (a kill -9 leaves at most one bulk uncertain). On Redis the next batch is
    claimed while a bulk is in flight (`remote`); on SQLite nothing else is claimed then."""
    queue_pages(delivery, 41)
    sent: list[set[str]] = []
    ahead: list[int] = []  # per bulk: hits claimed beyond it while it was in flight
    busy = threading.Lock()

    def answer(batch: Sequence[Hit]) -> TrackResult:
        assert busy.acquire(blocking=False), "two bulks in flight at once"
        try:
            urls = {h.params["url"] for h in batch}
            for earlier in sent:  # every hit sent before is acknowledged (deleted) by now
                assert not earlier & {e.params["url"] for e in delivery.journal.entries()}
            deadline = time.monotonic() + 5
            while True:
                inflight = delivery.journal.entries(states=[EntryState.INFLIGHT])
                beyond = len([e for e in inflight if e.params["url"] not in urls])
                if redis_target is None or beyond or len(sent) < 2:
                    break
                if not delivery.journal.entries(states=[EntryState.PENDING]):
                    break  # every hit left is in this bulk
                assert time.monotonic() < deadline, "no batch claimed ahead"
                time.sleep(0.01)
            sent.append(urls)
            ahead.append(beyond)
            body = {"status": "success", "tracked": len(batch), "invalid": 0, "invalid_indices": []}
            return bulk_outcomes(len(batch), body)
        finally:
            busy.release()

    client.answers.extend([answer] * 10)
    result = flush(delivery, batch_size=5, concurrency=1)
    assert (result.delivered, result.remaining_queued) == (41, 0)
    assert client.sizes == [1, 4] + [5] * 7 + [1]  # the site's first hit alone, then bulks
    assert delivery.journal.entries() == []
    if redis_target is None:
        assert ahead[1:] == [0] * 9  # (the first hit went alone, the rest of its claim waited)
    else:  # claimed while the bulk before it was sent: the last bulks have nothing after them
        assert all(ahead[2:6])


def test_flush_sends_hits_in_time_order(delivery: Delivery, client: FakeClient) -> None:
    delivery.queue(pv("late", at=T0 - 10))
    delivery.queue(pv("early", at=T0 - 100))
    flush(delivery)
    assert client.urls == ["https://example.org/early", "https://example.org/late"]


def test_flush_without_superuser_sends_risky_hits_alone(
    delivery: Delivery, client: FakeClient
) -> None:
    client.superuser = False
    queue_pages(delivery, 3, at=T0 - AT_RISK_AGE - 60, prefix="old")
    queue_pages(delivery, 5, prefix="fresh")
    queue_pages(delivery, 4, site=2, prefix="other")
    flush(delivery, batch_size=100)
    # 3 hits near 24 h alone (site 1 is then known), site 2's first alone, the rest at once.
    assert client.sizes == [1, 1, 1, 1, 8]


def test_flush_learns_superuser_from_the_answer_and_stops_splitting(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 3, at=T0 - AT_RISK_AGE - 60, prefix="old")
    queue_pages(delivery, 5, prefix="fresh")
    flush(delivery)
    assert client.sizes == [1, 7]


def test_flush_sets_aside_a_batch_matomo_partly_refused_without_saying_which(
    delivery: Delivery, client: FakeClient
) -> None:
    client.superuser = False
    queue_pages(delivery, 1, prefix="first")
    for i in range(4):
        delivery.queue(pv(f"bad{i}" if i == 2 else f"ok{i}"))
    result = flush(delivery)
    assert client.sizes == [1, 4]
    assert result.unattributed == 4
    assert result.warnings and "unattributed" in result.warnings[0]
    assert set(states(delivery).values()) == {"unattributed"}
    again = flush(delivery)
    assert again.requests == 0  # unattributed hits are never re-sent


def test_flush_kills_the_hits_matomo_names_and_acks_the_others(
    delivery: Delivery, client: FakeClient
) -> None:
    for name in ("a", "bad", "b"):
        delivery.queue(pv(name))
    result = flush(delivery)
    assert (result.delivered, result.rejected) == (2, 1)
    (dead,) = delivery.journal.entries()
    assert dead.state is EntryState.DEAD
    assert "refused" in (dead.reason or "")


def test_flush_stops_on_503_and_reschedules_with_retry_after(
    delivery: Delivery, client: FakeClient, clock: FakeClock
) -> None:
    queue_pages(delivery, 10)
    client.answers.append(UnavailableError("503", retry_after=120, maybe_stored=False))
    result = flush(delivery, batch_size=5)
    assert client.sizes == [1]
    assert result.stopped_reason == "unavailable"
    assert result.rescheduled == 1 and result.released == 4
    entries = delivery.journal.entries()
    assert len(entries) == 10
    waiting = [e for e in entries if e.next_attempt_at > clock.now]
    assert len(waiting) == 1 and waiting[0].next_attempt_at >= clock.now + 120
    assert all(e.state is EntryState.PENDING for e in entries)


def test_flush_stops_on_429(delivery: Delivery, client: FakeClient) -> None:
    queue_pages(delivery, 3)
    client.answers.extend([{"status": "success", "tracked": 1, "invalid": 0}])
    client.answers.append(RateLimitedError("429", retry_after=10))
    result = flush(delivery)
    assert result.stopped_reason == "rate_limited"
    assert client.sizes == [1, 2]
    assert result.remaining_queued == 2


def test_flush_during_matomo_pause_sends_and_claims_nothing(
    delivery: Delivery, client: FakeClient, clock: FakeClock
) -> None:
    queue_pages(delivery, 3)
    delivery.pause.record(30, status=429)
    clock.now += 10
    result = flush(delivery, include_not_due=True)
    assert client.sent == [] and client.calls == []
    assert result.stopped_reason == "rate_limited" and result.requests == 0
    assert isinstance(result.error, ServerPausedError)
    assert result.retry_after == 20 and result.paused_until == T0 + 30
    assert result.record().to_json()["paused_until"] == T0 + 30
    entries = delivery.journal.entries()
    assert [(e.state, e.attempts) for e in entries] == [(EntryState.PENDING, 0)] * 3
    clock.now += 20
    assert flush(delivery).delivered == 3


def test_flush_releases_a_batch_when_another_process_paused_matomo_meanwhile(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 4)
    client.answers.append({"status": "success", "tracked": 1, "invalid": 0})
    client.answers.append(ServerPausedError("paused", until=T0 + 30, retry_after=30))
    result = flush(delivery)
    assert result.stopped_reason == "rate_limited"
    assert result.delivered == 1 and result.requests == 1 and result.rescheduled == 0
    assert [(e.state, e.attempts) for e in delivery.journal.entries()] == [
        (EntryState.PENDING, 0)
    ] * 3


def test_send_during_matomo_pause_queues_without_sending(
    delivery: Delivery, client: FakeClient
) -> None:
    delivery.pause.record(30, status=503)
    outcome = delivery.send(pv(1))
    assert outcome.state is TrackState.QUEUED
    assert isinstance(outcome.error, ServerPausedError)
    assert client.sent == []
    assert len(delivery.journal.entries()) == 1


def test_flush_marks_a_batch_lost_after_sending_sent_unconfirmed(
    delivery: Delivery, client: FakeClient, clock: FakeClock
) -> None:
    queue_pages(delivery, 2)
    client.answers.append(UnavailableError("read timeout", maybe_stored=True))
    result = flush(delivery)
    assert result.sent_unconfirmed == 1
    assert "twice" in " ".join(result.warnings)
    clock.now += 3600
    flush(delivery)
    assert delivery.journal.entries() == []
    assert delivery.journal.stats().delivered_unconfirmed == 1


def test_flush_stops_at_the_first_authentication_failure(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 5)
    client.answers.append(AuthenticationError("Unable to authenticate"))
    result = flush(delivery, batch_size=2)
    assert client.sizes == [1]
    assert result.record().to_json()["auth_failed"] and result.stopped_reason == "auth_failed"
    entries = delivery.journal.entries()
    assert [(e.state, e.attempts) for e in entries] == [(EntryState.PENDING, 0)] * 5
    assert delivery.journal.last_flush()["auth_failed"] is True  # type: ignore[index]


def test_flush_checks_the_token_once_before_replaying_old_hits(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 4, at=T0 - 2 * DAY)
    flush(delivery, batch_size=2)
    assert client.calls == ["SitesManager.getSitesIdWithAdminAccess"]
    assert delivery.journal.entries() == []


def test_flush_with_an_invalid_token_leaves_old_hits_pending(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 3, at=T0 - 2 * DAY)
    client.call_error = AuthenticationError("Unable to authenticate with the provided token")
    result = flush(delivery)
    assert result.stopped_reason.token_refused
    assert client.sent == []
    assert set(states(delivery).values()) == {"pending"}


def test_flush_makes_old_hits_dead_when_the_token_lacks_admin_access(
    delivery: Delivery, client: FakeClient
) -> None:
    client.admin = [2]
    queue_pages(delivery, 2, at=T0 - 2 * DAY, prefix="old")
    queue_pages(delivery, 2, prefix="new")
    result = flush(delivery)
    assert result.delivered == 2 and result.dead == 2
    dead = delivery.journal.entries(states=[EntryState.DEAD])
    assert all("no admin access on site 1" in (e.reason or "") for e in dead)


@pytest.mark.parametrize(
    ("age", "site", "has_token", "refusal"),
    [
        (DAY - 3600, 2, False, None),  # recent: no token, no admin check needed
        (2 * DAY, 1, True, None),  # admin on site 1
        (2 * DAY, 2, True, NoAdminAccess),
        (2 * DAY, 2, False, NoTokenForOldHit),
    ],
)
def test_old_hit_rule_is_one_decision(
    age: float, site: int, has_token: bool, refusal: type[Exception] | None
) -> None:
    asked: list[int] = []

    def admin() -> frozenset[int]:
        asked.append(site)
        return frozenset({1})

    found = old_hit_refusal(age, site, has_token=has_token, admin=admin)
    assert type(found) is (refusal or type(None))
    assert asked == ([site] if has_token and age >= DAY else [])


def test_old_hit_refusals_are_matokit_errors() -> None:
    assert issubclass(NoAdminAccess, PermissionDeniedError)
    assert issubclass(NoTokenForOldHit, ConfigError)
    assert NoAdminAccess(3).hint and "site 3" in NoAdminAccess(3).message


def test_delivery_operations_take_narrow_protocols_not_the_service() -> None:
    """send, flush and import need a few of Delivery's attributes, and never import it."""
    import ast
    import inspect

    from matokit.delivery import flush as flushing
    from matokit.delivery import importer, importhelper, send

    for module in (send, flushing, importer, importhelper):
        tree = ast.parse(inspect.getsource(module))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "matokit.delivery.service" not in imported, module.__name__


def test_flush_without_token_makes_old_hits_dead_saying_so(
    path: Path, clock: FakeClock, client: FakeClient, redis_target: RedisTarget | None
) -> None:
    with make(path, clock, client, token=False, redis=redis_target) as service:
        queue_pages(service, 1, at=T0 - 2 * DAY)
        result = flush(service)
        assert result.dead == 1 and client.calls == []
        (entry,) = service.journal.entries()
        assert "no token is configured" in (entry.reason or "")


def test_flush_gives_up_after_max_attempts(
    delivery: Delivery, client: FakeClient, clock: FakeClock
) -> None:
    queue_pages(delivery, 1)
    for _ in range(3):
        client.answers.append(UnavailableError("connection refused"))
        flush(delivery, max_attempts=3)
        clock.now += 3600
    (entry,) = delivery.journal.entries()
    assert entry.state is EntryState.DEAD
    assert "gave up after 3 attempts" in (entry.reason or "")


def test_flush_turns_hits_older_than_max_age_into_dead_letters(
    delivery: Delivery, client: FakeClient, clock: FakeClock
) -> None:
    queue_pages(delivery, 1)
    clock.now += 8 * DAY
    result = flush(delivery, max_age=7 * DAY)
    assert result.dead == 1 and client.sent == []
    assert "max_age" in (delivery.journal.entries()[0].reason or "")


def test_flush_recovers_the_batch_of_a_dead_flusher_at_once(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 3)
    delivery.journal.claim("killed-flusher", limit=2, lease_seconds=3600)
    result = flush(delivery)
    assert result.recovered == 2
    assert result.delivered == 3
    assert delivery.journal.stats().delivered_unconfirmed == 2


def test_flush_all_includes_hits_not_yet_due(delivery: Delivery, client: FakeClient) -> None:
    queue_pages(delivery, 1)
    client.answers.append(UnavailableError("503", retry_after=600))
    flush(delivery)
    assert flush(delivery).requests == 0
    result = flush(delivery, include_not_due=True)
    assert result.delivered == 1


def test_flush_honours_max_events_and_max_time(
    delivery: Delivery, client: FakeClient, clock: FakeClock
) -> None:
    queue_pages(delivery, 30)
    limited = flush(delivery, batch_size=10, max_events=15)
    assert (limited.delivered, limited.stopped_reason) == (15, "max_events")
    assert limited.remaining_due == 15

    def slow(batch: Sequence[Hit]) -> TrackResult:
        clock.now += 10
        return bulk_outcomes(len(batch), {"tracked": len(batch), "invalid": 0})

    client.answers.extend([slow] * 5)
    timed = flush(delivery, batch_size=5, max_time=15)
    assert timed.stopped_reason == "max_time"
    assert timed.delivered == 5


def test_flush_finds_the_bad_hit_of_a_batch_refused_whole(
    delivery: Delivery, client: FakeClient
) -> None:
    for name in ("a", "b", "bad", "c"):
        delivery.queue(pv(name))

    def require_auth(batch: Sequence[Hit]) -> TrackResult:
        if any("bad" in h.params["url"] for h in batch):
            raise RejectedHitError("HTTP 400: nothing stored")
        return bulk_outcomes(len(batch), {"tracked": len(batch), "invalid": 0})

    client.answers.extend([require_auth] * 10)
    result = flush(delivery)
    assert (result.delivered, result.rejected) == (3, 1)
    assert sorted(client.urls).count("https://example.org/a") == 1  # nothing sent twice


def test_flush_of_an_empty_journal_records_nothing_due(delivery: Delivery) -> None:
    result = flush(delivery)
    assert result.stopped_reason == "nothing_due"
    assert result.requests == 0


def test_flush_locked_refuses_a_second_flusher(sqlite_delivery: Delivery, path: Path) -> None:
    queue_pages(sqlite_delivery, 1)
    with flush_lock(path.parent / LOCK_NAME, wait=False), pytest.raises(FlushInProgressError):
        sqlite_delivery.flush_locked(FlushOptions())


# --- import --------------------------------------------------------------------------------


def jsonl(*records: Any) -> io.BytesIO:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


LINES = (
    {"type": "pageview", "url": "https://example.org/a", "at": T0 - 60},
    {"type": "event", "category": "c", "action": "a", "id": "ev-1"},
    "{not json",
    {"type": "event", "category": "c"},
    "",
    {"params": {"url": "https://example.org/raw", "action_name": "Raw"}},
)


def test_import_journals_valid_lines_and_reports_invalid_ones_with_numbers(
    delivery: Delivery,
) -> None:
    invalid: list[tuple[int, str]] = []
    result = delivery.import_lines(
        jsonl(*LINES), site_id=1, on_invalid=lambda n, m: invalid.append((n, m))
    )
    assert (result.read, result.invalid, result.added) == (5, 2, 3)
    assert [n for n, _ in invalid] == [3, 4]
    assert "action" in invalid[1][1]
    assert len(delivery.journal.entries()) == 3


def test_import_reads_utf8_lines_drops_a_bom_and_names_a_line_that_is_not_utf8(
    delivery: Delivery,
) -> None:
    event = json.dumps({"type": "event", "category": "Café", "action": "a", "id": "bom"})
    source = io.BytesIO(
        b"\xef\xbb\xbf" + event.encode() + b"\n" + b'{"type": "event", "category": "\xe9"}\n'
    )
    invalid: list[tuple[int, str]] = []
    result = delivery.import_lines(
        source, site_id=1, on_invalid=lambda n, m: invalid.append((n, m))
    )
    assert (result.read, result.invalid, result.added) == (2, 1, 1)
    assert invalid == [(2, "not a JSON object: not UTF-8")]
    (entry,) = delivery.journal.entries()
    assert entry.params["e_c"] == "Café"


def test_import_lines_returns_the_complete_result(delivery: Delivery, client: FakeClient) -> None:
    queue_pages(delivery, 2, prefix="older")
    due: list[int] = []
    sent: list[int] = []
    result = delivery.import_lines(
        jsonl(*LINES),
        site_id=1,
        flush=FlushOptions(),
        on_flush_start=due.append,
        on_sent=sent.append,
    )
    assert result.flush is not None and result.flush.delivered == 5
    assert (due, sum(sent)) == ([5], 5)
    summary = result.summary()
    assert (summary["journaled"], summary["sent"], summary["queued"]) == (3, 3, 0)
    assert summary["older"] == {
        "sent": 2,
        "dead": 0,
        "unattributed": 0,
        "recovered": 0,
        "queued": 0,
    }


def test_import_lines_leaves_the_hits_to_a_running_flush(
    sqlite_delivery: Delivery, client: FakeClient, path: Path
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with flush_lock(path.parent / LOCK_NAME, wait=False):
        result = sqlite_delivery.import_lines(jsonl(*LINES), site_id=1, flush=FlushOptions())
    assert result.flush is None and result.flush_busy and client.sent == []
    assert (result.added, result.queued) == (3, 3)


def test_import_lines_without_flush_options_only_journals(
    delivery: Delivery, client: FakeClient
) -> None:
    result = delivery.import_lines(jsonl(*LINES), site_id=1, flush=None)
    assert (result.flush, result.flush_busy, client.sent) == (None, None, [])
    assert (result.added, result.queued) == (3, 3)


def test_reimport_of_the_same_lines_adds_nothing(delivery: Delivery, clock: FakeClock) -> None:
    delivery.import_lines(jsonl(*LINES), site_id=1)
    clock.now += 5  # untimed lines are timed "now": their key must not depend on it
    again = delivery.import_lines(jsonl(*LINES), site_id=1)
    assert (again.added, again.duplicates) == (0, 3)


def test_reimport_after_delivery_adds_nothing(delivery: Delivery, client: FakeClient) -> None:
    delivery.import_lines(jsonl(*LINES), site_id=1)
    flush(delivery)
    again = delivery.import_lines(jsonl(*LINES), site_id=1)
    assert again.added == 0
    assert flush(delivery).requests == 0


@pytest.mark.parametrize("seekable", [True, False])
def test_strict_import_journals_nothing_when_a_line_is_invalid(
    delivery: Delivery, path: Path, seekable: bool
) -> None:
    source = jsonl(*LINES)
    if not seekable:
        source.seekable = lambda: False  # type: ignore[method-assign]
    with pytest.raises(DataError, match="2 of 5 lines are invalid"):
        delivery.import_lines(source, site_id=1, strict=True)
    assert delivery.journal.entries() == []


@pytest.mark.parametrize("seekable", [True, False])
def test_strict_import_of_valid_lines_reads_the_source_twice(
    delivery: Delivery, seekable: bool
) -> None:
    source = jsonl(LINES[0], LINES[1])
    if not seekable:
        source.seekable = lambda: False  # type: ignore[method-assign]
    result = delivery.import_lines(source, site_id=1, strict=True)
    assert (result.read, result.invalid, result.added) == (2, 0, 2)


def test_import_streams_in_bounded_chunks(delivery: Delivery) -> None:
    count = 12_000

    def lines() -> Iterator[bytes]:
        for i in range(count):
            yield json.dumps({"type": "event", "category": "c", "action": str(i)}).encode()

    class Stream(io.RawIOBase):
        def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
            return lines()

    result = delivery.import_lines(Stream(), site_id=1)  # type: ignore[arg-type]
    assert result.added == count


def test_import_key_is_the_id_or_the_content() -> None:
    record = {"type": "event", "category": "c", "action": "a"}
    first = hits.hit_from_record(record, site_id=1, now=T0)
    later = hits.hit_from_record(record, site_id=1, now=T0 + 99)
    assert import_key(first, record) == import_key(later, record)
    timed = {**record, "at": T0 - 5}
    assert import_key(hits.hit_from_record(timed, site_id=1, now=T0), timed) != import_key(
        first, record
    )
    keyed = {**record, "id": "x"}
    other = {**record, "action": "b", "id": "x"}
    assert import_key(hits.hit_from_record(keyed, site_id=1, now=T0), keyed) == import_key(
        hits.hit_from_record(other, site_id=1, now=T0), other
    )


# --- the journal additions delivery relies on ---------------------------------------------------


def test_journal_find_and_remember_delivered(store_opener: StoreOpener, clock: FakeClock) -> None:
    with store_opener(clock=clock) as journal:
        journal.enqueue_one(NewHit("k", {"idsite": "1"}, T0))
        found = journal.find("k")
        assert found is not None and found.key == "k"
        assert journal.find("nope") is None
        assert journal.remember_delivered(["d1", "d2"]) == 2
        assert journal.has_key("d1")
        assert journal.enqueue_one(NewHit("d1", {"idsite": "1"}, T0)) is False
        with pytest.raises(TypeError):
            journal.remember_delivered("d3")
        clock.now += 8 * DAY
        assert not journal.has_key("d1")


def test_a_large_file_is_split_with_a_helper_process_and_line_numbers_stay_right(
    delivery: Delivery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matokit.delivery.importhelper as module

    monkeypatch.setattr(module, "PARALLEL_MIN_BYTES", 0)
    records = [
        {"type": "event", "category": "c", "action": f"a{i}", "at": T0 - i} for i in range(3000)
    ]
    text = [json.dumps(r) for r in records]
    text[10] = "{broken"
    text[2500] = json.dumps({"type": "event", "category": "c"})
    source = tmp_path / "big.jsonl"
    source.write_text("\n".join(text) + "\n")
    invalid: list[int] = []
    progress: list[int] = []
    with open(source, "rb") as stream:
        result = delivery.import_lines(
            stream,
            site_id=1,
            on_invalid=lambda n, m: invalid.append(n),
            on_progress=progress.append,
        )
    assert (result.read, result.invalid, result.added, result.duplicates) == (3000, 2, 2998, 0)
    assert sorted(invalid) == [11, 2501]
    assert progress[-1] == source.stat().st_size
    assert delivery.journal.stats().queued == 2998
    with open(source, "rb") as stream:
        again = delivery.import_lines(stream, site_id=1)
    assert (again.added, again.duplicates) == (0, 2998)


def test_small_or_piped_sources_are_not_split(tmp_path: Path) -> None:
    from matokit.delivery.importhelper import split_point as _split_point

    small = tmp_path / "small.jsonl"
    small.write_text('{"a": 1}\n' * 10)
    with open(small, "rb") as stream:
        assert _split_point(stream) is None
    assert _split_point(io.BytesIO(b"x\n" * 10)) is None


def test_journal_enqueue_takes_a_chunk_size(store_opener: StoreOpener, clock: FakeClock) -> None:
    with store_opener(clock=clock) as journal:
        hits_ = [NewHit(f"c{i}", {"idsite": "1"}, T0) for i in range(25)]
        assert journal.enqueue(hits_, chunk_size=10).added == 25
        with pytest.raises(ValueError):
            journal.enqueue(hits_, chunk_size=0)


# --- a graceful stop (the first SIGINT/SIGTERM) ---------------------------------------------


def test_a_stop_asked_during_a_request_lets_it_finish_and_sends_no_other(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 250)
    stop = StopRequest()

    def answer_then_stop(batch: Sequence[Hit]) -> TrackResult:
        stop.on_signal(signal.SIGTERM)  # the first signal only asks: the request completes
        return bulk_outcomes(len(batch), {"status": "success", "tracked": len(batch), "invalid": 0})

    client.answers.append(answer_then_stop)
    result = delivery.flush(FlushOptions(batch_size=100), stop=stop)
    assert (client.sizes, result.delivered, result.stopped_reason) == ([1], 1, "interrupted")
    counts = delivery.journal.stats().counts
    assert counts.get(EntryState.PENDING) == 249
    assert not counts.get(EntryState.INFLIGHT) and not counts.get(EntryState.SENT_UNCONFIRMED)
    assert delivery.journal.last_flush()["stopped_reason"] == "interrupted"  # type: ignore[index]


def test_a_stop_asked_before_the_flush_sends_nothing(
    delivery: Delivery, client: FakeClient
) -> None:
    queue_pages(delivery, 3)
    stop = StopRequest()
    stop.request(signal.SIGINT)
    result = delivery.flush(FlushOptions(), stop=stop)
    assert (client.sent, result.stopped_reason, result.remaining_due) == ([], "interrupted", 3)


def test_a_stop_while_waiting_for_the_flush_lock_interrupts_at_once(
    sqlite_delivery: Delivery, path: Path
) -> None:
    queue_pages(sqlite_delivery, 1)
    stop = StopRequest()
    stop.request(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised:
        sqlite_delivery.flush_locked(FlushOptions(), wait=True, stop=stop)
    assert raised.value.signum == signal.SIGTERM


def test_a_second_signal_stops_at_once() -> None:
    stop = StopRequest()
    stop.on_signal(signal.SIGINT)
    assert stop.requested
    with pytest.raises(Interrupted) as raised:
        stop.on_signal(signal.SIGTERM)
    assert (stop.signum, raised.value.signum) == (signal.SIGINT, signal.SIGTERM)


def test_a_stop_during_an_import_ends_it_after_the_chunk_being_committed(
    delivery: Delivery,
) -> None:
    records = [
        {"type": "event", "category": "c", "action": "a", "id": f"s{i}"} for i in range(2500)
    ]
    source = Pipe(jsonl(*records).getvalue())
    stop = StopRequest()
    result = delivery.import_lines(
        source, site_id=1, on_progress=lambda _: stop.request(signal.SIGINT), stop=stop
    )
    assert result.interrupted
    assert result.added == delivery.journal.stats().queued == 1000  # one pipe chunk


class Pipe(io.BytesIO):
    """A source that cannot seek, read like stdin from a pipe."""

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("profile", "overrides", "expected"),
    [
        ("", {}, FlushOptions(exactly_once="auto", concurrency=None)),
        (
            "batch_size = 7\nmax_attempts = 3\nmax_age = '2h'\n",
            {},
            FlushOptions(
                batch_size=7,
                max_attempts=3,
                max_age=7200.0,
                exactly_once="auto",
                concurrency=None,
            ),
        ),
        (
            "batch_size = 7\nexactly_once = 'on'\nsettle_time = '1m'\n",
            {"batch_size": 50, "max_time": 30.0, "include_not_due": True},
            FlushOptions(
                batch_size=50,
                max_time=30.0,
                include_not_due=True,
                exactly_once="on",
                settle=60.0,
                concurrency=None,
            ),
        ),
        (
            "batch_size = 7\nqueuedtracking = true\nexactly_once = 'off'\nconcurrency = 4\n",
            {"batch_size": None, "max_events": None},
            FlushOptions(batch_size=7, settle=1800.0, concurrency=4),
        ),
    ],
)
def test_flush_options_from_settings(
    tmp_path: Path, profile: str, overrides: dict[str, Any], expected: FlushOptions
) -> None:
    from matokit.config import resolve

    config = tmp_path / "config.toml"
    config.write_text("[profiles.default]\n" + profile)
    config.chmod(0o600)
    settings = resolve(env={"MATOKIT_CONFIG": str(config)}, cwd=tmp_path)
    assert FlushOptions.from_settings(settings, **overrides) == expected
