"""Pure decisions as tables: Retry-After, backoff, rate limit, Matomo's error messages."""

from __future__ import annotations

import pytest

from matokit.delivery.matomo import NoAdminAccess
from matokit.errors import (
    AuthenticationError,
    DataError,
    InvalidRequestError,
    LockedOutError,
    MatomoError,
    NoMatomoError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RejectedHitError,
    ServerPausedError,
    TokenCoolDownError,
    UnavailableError,
)
from matokit.flushrecord import StopReason
from matokit.policy import (
    Action,
    Decision,
    TokenBucket,
    backoff_delay,
    classify_api_error,
    classify_status,
    decide,
    hint_for,
    parse_retry_after,
    stop_reason,
)

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT

RETRY_AFTER = [
    (None, None),
    ("", None),
    ("  ", None),
    ("120", 120.0),
    (" 5 ", 5.0),
    ("1.5", 1.5),
    ("0", 0.0),
    ("-3", 0.0),
    ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),
    ("Tue, 14 Nov 2023 22:10:00 GMT", 0.0),  # in the past
    ("soon", None),
    ("nan", None),
    ("inf", None),
    ("Tue, 99 Nov 2023 22:15:20 GMT", None),
]


@pytest.mark.parametrize(("value", "expected"), RETRY_AFTER)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


BACKOFF = [
    # attempt, jitter draw, retry_after, expected delay
    (1, 1.0, None, 1.0),
    (2, 1.0, None, 2.0),
    (3, 1.0, None, 4.0),
    (3, 0.5, None, 2.0),
    (3, 0.0, None, 0.0),
    (10, 1.0, None, 300.0),  # capped
    (10_000, 1.0, None, 300.0),  # no overflow
    (0, 1.0, None, 1.0),  # below 1 counts as the first retry
    (1, 0.1, 30.0, 30.0),  # never less than Retry-After
    (10, 1.0, 900.0, 900.0),  # Retry-After beyond the cap still wins
    (4, 0.5, 1.0, 4.0),  # jitter above Retry-After is kept
]


@pytest.mark.parametrize(("attempt", "draw", "retry_after", "expected"), BACKOFF)
def test_backoff_delay_is_full_jitter_capped_and_honours_retry_after(
    attempt: int, draw: float, retry_after: float | None, expected: float
) -> None:
    delay = backoff_delay(attempt, base=1.0, cap=300.0, retry_after=retry_after, rng=lambda: draw)
    assert delay == pytest.approx(expected)


# --- Matomo's messages (matomo-api.md's error table) ------------------------------------------

AUTH, PERM, INVALID = AuthenticationError, PermissionDeniedError, InvalidRequestError
API_ERRORS = [
    (401, "You can't access this resource as it requires view access", PERM),
    (401, "Unable to authenticate with the provided token. It is either invalid or expired.", AUTH),
    (401, "You can't access this resource as it requires a 'superuser' access.", PERM),
    (404, "The plugin Foo was not found.", NotFoundError),
    (400, "The method 'nope' does not exist or is not available in the module", NotFoundError),
    (400, "Please specify a value for 'idSite'.", INVALID),
    (200, "An unexpected website was found in the request: website id was set to '999'.", INVALID),
    (200, "Date format must be: YYYY-MM-DD, or 'today' or 'yesterday'", INVALID),
    (200, "The period 'x' is not supported. Try 'day', 'week', 'month' or 'year'", INVALID),
    (200, "Something new Matomo says inside a 200", INVALID),
    (None, "Unknown inline error", INVALID),
    (500, "SQLSTATE[HY000] [2002] Connection refused", UnavailableError),
    (500, "Too many failed logins. Please wait and try logging in again later.", LockedOutError),
    (200, "Too many failed logins. Please wait and try logging in again later.", LockedOutError),
    (429, "slow down", RateLimitedError),
    (503, "", UnavailableError),
    (502, "Bad Gateway", UnavailableError),
    (403, "Forbidden by proxy", PERM),
]


@pytest.mark.parametrize(("status", "message", "expected"), API_ERRORS)
def test_classify_api_error(status: int | None, message: str, expected: type[MatomoError]) -> None:
    assert classify_api_error(status, message) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, InvalidRequestError),
        (200, InvalidRequestError),
        (301, ProtocolError),
        (400, InvalidRequestError),
        (401, PermissionDeniedError),
        (404, NoMatomoError),  # no Matomo at the URL (Matomo names unknown methods)
        (410, NoMatomoError),
        (429, RateLimitedError),
        (500, UnavailableError),
        (503, UnavailableError),
    ],
)
def test_classify_status(status: int | None, expected: type[MatomoError]) -> None:
    assert classify_status(status) is expected


def test_lockout_hint_names_the_unblock_command() -> None:
    hint = hint_for(LockedOutError)
    assert hint is not None and "./console login:unblock-blocked-ips" in hint
    assert "token" in (hint_for(AuthenticationError) or "")


R, S, X = Action.RETRY, Action.RELEASE, Action.DEAD_LETTER
# error, attempt, max_attempts -> action, why the flush stops (None: it goes on)
DECISIONS = [
    (UnavailableError("x"), 1, 3, R, StopReason.UNAVAILABLE),
    (UnavailableError("x", maybe_stored=True), 2, 3, R, StopReason.UNAVAILABLE),
    (UnavailableError("x"), 3, 3, X, StopReason.UNAVAILABLE),
    (UnavailableError("x"), 50, None, R, StopReason.UNAVAILABLE),  # send: the journal counts
    (RateLimitedError("x", retry_after=5), 1, 3, R, StopReason.RATE_LIMITED),
    (RateLimitedError("x"), 3, 3, X, StopReason.RATE_LIMITED),
    (ServerPausedError("x", until=NOW, retry_after=5), 1, 3, S, StopReason.RATE_LIMITED),
    (ServerPausedError("x", until=NOW, retry_after=5), 9, 3, S, StopReason.RATE_LIMITED),
    (ProtocolError("x"), 1, 3, R, StopReason.PROTOCOL_ERROR),
    (InvalidRequestError("x"), 1, 3, R, StopReason.ERROR),
    (MatomoError("x"), 3, 3, X, StopReason.ERROR),
    (AuthenticationError("x"), 1, 3, S, StopReason.AUTH_FAILED),
    (AuthenticationError("x"), 3, 3, S, StopReason.AUTH_FAILED),  # never dead: fix the token
    (TokenCoolDownError("x", rejected_at=NOW, until=NOW), 1, 3, S, StopReason.AUTH_FAILED),
    (LockedOutError("x"), 1, 3, S, StopReason.LOCKED_OUT),
    (PermissionDeniedError("x"), 1, 3, S, StopReason.PERMISSION_DENIED),
    (NoAdminAccess(2), 1, 3, S, StopReason.PERMISSION_DENIED),
    (NotFoundError("x"), 1, 3, S, StopReason.ERROR),
    (RejectedHitError("x"), 1, 3, X, None),
    (RejectedHitError("x"), 1, None, X, None),
]


@pytest.mark.parametrize(("error", "attempt", "max_attempts", "action", "stop"), DECISIONS)
def test_decide_what_becomes_of_the_hits_of_a_failed_request(
    error: MatomoError,
    attempt: int,
    max_attempts: int | None,
    action: Action,
    stop: StopReason | None,
) -> None:
    assert decide(error, attempt=attempt, max_attempts=max_attempts) == Decision(action, stop)


def test_stop_reason_of_an_error_class_nobody_listed_is_error() -> None:
    assert stop_reason(MatomoError("x")) is StopReason.ERROR
    assert stop_reason(ServerPausedError("x", until=NOW, retry_after=1)) is StopReason.RATE_LIMITED


def test_rejected_hit_error_is_a_matomo_error() -> None:
    assert not issubclass(RejectedHitError, DataError)  # documented: a MatomoError, exit 65


# --- token bucket ------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_unlimited_bucket_never_sleeps() -> None:
    t = FakeTime()
    bucket = TokenBucket(None, clock=t.clock, sleep=t.sleep)
    for _ in range(1000):
        assert bucket.acquire() == 0.0
    bucket.on_throttled()
    bucket.on_success()
    assert t.slept == []


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(2.0, clock=t.clock, sleep=t.sleep)
    assert [bucket.acquire() for _ in range(2)] == [0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)
    assert bucket.acquire() == pytest.approx(0.5)
    t.now += 10  # idle time refills only up to the burst
    assert [bucket.acquire() for _ in range(2)] == [0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)


def test_slow_rate_waits_between_every_request() -> None:
    t = FakeTime()
    bucket = TokenBucket(0.5, clock=t.clock, sleep=t.sleep)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(2.0)


def test_throttling_halves_to_a_floor_and_success_recovers_gradually() -> None:
    t = FakeTime()
    bucket = TokenBucket(4.0, clock=t.clock, sleep=t.sleep, floor=0.5)
    bucket.on_throttled()
    assert bucket.rate == 2.0
    assert bucket.acquire() == pytest.approx(0.5), "a throttle drains the burst"
    for _ in range(10):
        bucket.on_throttled()
    assert bucket.rate == 0.5
    bucket.on_success()
    assert bucket.rate == pytest.approx(0.9)
    for _ in range(100):
        bucket.on_success()
    assert bucket.rate == 4.0


def test_bucket_survives_a_clock_stepping_back() -> None:
    t = FakeTime()
    bucket = TokenBucket(1.0, clock=t.clock, sleep=t.sleep)
    bucket.acquire()
    t.now -= 50
    assert bucket.acquire() == pytest.approx(1.0)


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf")])
def test_bucket_refuses_nonsense_rates(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate)
