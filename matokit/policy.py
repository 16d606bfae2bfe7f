"""Retry, backoff, Retry-After, rate-limit and error-classification decisions.

`decide` is the one retry decision: flush and send both act on what it says.

Everything here is pure: time, sleeping and randomness are parameters, so the decisions are
tested as tables. No I/O, no HTTP library imports.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

from matokit.errors import (
    AuthenticationError,
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
    UnavailableError,
)
from matokit.flushrecord import StopReason

# --- Retry-After and backoff -----------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date).

    A date in the past or a negative number gives 0; a missing or unparsable value gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" dates: RFC 9110 dates are always GMT
        return None
    return max(0.0, moment.timestamp() - now)


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    retry_after: float | None = None,
    rng: Callable[[], float],
) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry).

    Exponential backoff with full jitter (a uniform pick in [0, min(cap, base * 2**(attempt-1))]),
    but never less than what the server asked for with Retry-After.
    """
    exponent = min(max(attempt, 1) - 1, 62)  # 2**62 * base is far beyond any cap
    ceiling = min(cap, base * (2.0**exponent))
    delay = rng() * ceiling
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


# --- what a failed tracking request means for its hits ----------------------------------------


class Action(StrEnum):
    """What becomes of hits whose tracking request failed."""

    RETRY = "retry"  # keep them queued, due again after a backoff (at least Retry-After)
    RELEASE = "release"  # put them back untouched: nothing was sent, or the token must be fixed
    DEAD_LETTER = "dead_letter"  # Matomo refused the hit itself, or it ran out of attempts


@dataclass(frozen=True)
class Decision:
    """An `Action` and why: `stop` is the reason the flush ends (None: it goes on)."""

    action: Action
    stop: StopReason | None


def decide(error: MatomoError, *, attempt: int, max_attempts: int | None = None) -> Decision:
    """What to do with hits whose request failed with `error` on their `attempt`-th try.

    A refused hit is dead (re-sending cannot help) and the flush goes on without it. A refused
    token, a missing permission or method, or Matomo's pause leave the hits untouched and stop:
    retrying an invalid token is exactly what gets a host locked out. Anything else is retried
    later, until `max_attempts` (None: no limit, the journal starts counting) makes it dead;
    either way the flush stops, so a failing Matomo is not hammered.
    """
    if isinstance(error, RejectedHitError):  # PayloadTooLargeError too
        return Decision(Action.DEAD_LETTER, None)  # (a bulk of several is split before this)
    reason = stop_reason(error)
    if isinstance(error, _RELEASED):
        return Decision(Action.RELEASE, reason)
    if max_attempts is not None and attempt >= max_attempts:
        return Decision(Action.DEAD_LETTER, reason)
    return Decision(Action.RETRY, reason)


# Nothing was sent (the pause), or re-sending cannot succeed until someone fixes the token,
# its access or the URL: the hits keep their attempts.
_RELEASED: tuple[type[MatomoError], ...] = (
    ServerPausedError,
    AuthenticationError,
    LockedOutError,
    PermissionDeniedError,
    NotFoundError,
)


def stop_reason(error: MatomoError) -> StopReason:
    """Why a flush stops on `error` (its `stopped_reason`)."""
    for error_class, reason in _STOP_REASONS:
        if isinstance(error, error_class):
            return reason
    return StopReason.ERROR


# First match wins (ServerPausedError is a RateLimitedError, TokenCoolDownError an
# AuthenticationError).
_STOP_REASONS: tuple[tuple[type[MatomoError], StopReason], ...] = (
    (LockedOutError, StopReason.LOCKED_OUT),
    (AuthenticationError, StopReason.AUTH_FAILED),
    (PermissionDeniedError, StopReason.PERMISSION_DENIED),
    (RateLimitedError, StopReason.RATE_LIMITED),
    (UnavailableError, StopReason.UNAVAILABLE),
    (ProtocolError, StopReason.PROTOCOL_ERROR),
)


# --- client-side rate limit ------------------------------------------------------------------


class TokenBucket:
    """A client-side rate limit: at most `rate` requests per second, bursts of up to `rate`.

    `rate=None` means unlimited. After a 429/503 `on_throttled()` halves the current rate (down
    to `floor`); each success then adds back a tenth of the configured rate (additive increase).
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        floor: float = 0.1,
    ) -> None:
        if rate is not None and (not math.isfinite(rate) or rate <= 0):
            raise ValueError(f"rate must be a positive number of requests per second: {rate!r}")
        self.configured = rate
        self.rate = rate
        self.floor = min(floor, rate) if rate is not None else floor
        self._clock = clock
        self._sleep = sleep
        self._capacity = max(1.0, rate) if rate is not None else 1.0
        self._tokens = self._capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        if self.rate is None:
            return 0.0
        with self._lock:
            self._refill()
            waited = 0.0
            if self._tokens < 1.0:
                waited = (1.0 - self._tokens) / self.rate
                self._sleep(waited)
                self._refill()
                self._tokens = max(self._tokens, 1.0)  # a sleep may undershoot the clock
            self._tokens -= 1.0
            return waited

    def on_throttled(self) -> None:
        """Matomo or a proxy said "too many requests": halve the rate and drain the burst."""
        if self.rate is None:
            return
        with self._lock:
            self.rate = max(self.floor, self.rate / 2.0)
            self._capacity = max(1.0, self.rate)
            self._tokens = min(self._tokens, 0.0)

    def on_success(self) -> None:
        """A request went through: recover a tenth of the configured rate, up to it."""
        if self.rate is None or self.configured is None:
            return
        with self._lock:
            self.rate = min(self.configured, self.rate + self.configured / 10.0)
            self._capacity = max(1.0, self.rate)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)  # a clock that steps back refills nothing
        self._stamp = now
        assert self.rate is not None
        self._tokens = min(self._capacity, self._tokens + elapsed * self.rate)


# --- what Matomo's error messages mean ----------------------------------------------------------

# First match wins: the lockout message can come with any status, and 401s differ by message.
# Each rule: the error class and the phrases that must ALL appear (any one group matching).
_MESSAGE_RULES: tuple[tuple[type[MatomoError], tuple[tuple[str, ...], ...]], ...] = (
    (LockedOutError, (("too many failed logins",),)),
    (AuthenticationError, (("unable to authenticate",),)),
    (PermissionDeniedError, (("you can't access this resource",), ("you can\u2019t access",))),
    (UnavailableError, (("sqlstate",), ("mysql server has gone away",))),
    (NotFoundError, (("the plugin ", "was not found"), ("the method ", "does not exist"))),
    (
        InvalidRequestError,
        (
            ("please specify a value",),
            ("an unexpected website",),
            ("date format",),
            ("the period ", "is not supported"),
        ),
    ),
)


def classify_api_error(status: int | None, message: str) -> type[MatomoError]:
    """The error class for a Reporting API failure, from Matomo's message and the HTTP status.

    Matomo's status is not reliable (parameter errors come with 200, a lockout with 500), so
    the message decides first; the status only classifies messages this table does not know.
    """
    text = message.casefold()
    for error_class, groups in _MESSAGE_RULES:
        if any(all(phrase in text for phrase in group) for group in groups):
            return error_class
    return classify_status(status)


def classify_status(status: int | None) -> type[MatomoError]:
    """The error class for an HTTP status alone (a proxy's answer, an unknown message)."""
    if status is None or 200 <= status < 300:
        return InvalidRequestError  # an error inside a 200: Matomo refused the parameters
    if status == 429:
        return RateLimitedError
    if status in (401, 403, 407):
        # Not AuthenticationError: that one blocks the token, and an unexplained 401/403 is
        # usually a proxy or a missing permission, not an invalid token.
        return PermissionDeniedError
    if status in (404, 405, 410):
        return NoMatomoError  # not Matomo's answer: Matomo reports unknown methods in its JSON
    if status >= 500:
        return UnavailableError
    if 300 <= status < 400:
        return ProtocolError
    return InvalidRequestError


_HINTS: dict[type[MatomoError], str] = {
    LockedOutError: (
        "Matomo blocked this IP after repeated invalid tokens: an admin must run "
        "`./console login:unblock-blocked-ips` on the Matomo server; then fix the token "
        "(MATOMO_TOKEN or the token file) before anything retries."
    ),
    AuthenticationError: (
        "The token is invalid or expired: create a new one in Matomo (Administration > "
        "Personal > Security > Auth tokens) and update MATOMO_TOKEN or the token file."
    ),
    PermissionDeniedError: (
        "The token is valid but its user lacks this access: grant it in Matomo or use a "
        "token of a user who has it (no token set? set MATOMO_TOKEN or --token-file)."
    ),
    NoMatomoError: (
        "Check MATOMO_URL / --url: it must be Matomo's base URL (where index.php and "
        "matomo.php are)."
    ),
    NotFoundError: (
        "Check the method name and that its plugin is activated "
        "(`matokit api API.getReportMetadata idSite=1` lists the reports)."
    ),
    InvalidRequestError: "Check idSite, date, period and the other parameters.",
    RateLimitedError: "Matomo or a proxy is rate limiting: lower rate_limit in the profile.",
    UnavailableError: "Matomo or its database is failing or unreachable: try again later.",
    ProtocolError: "Something between MatoKit and Matomo (a proxy?) answered: check the URL.",
}


def hint_for(error_class: type[MatomoError]) -> str | None:
    """How to fix an error of this class, as one sentence for stderr."""
    for klass in error_class.__mro__:
        if klass in _HINTS:
            return _HINTS[klass]
    return None
