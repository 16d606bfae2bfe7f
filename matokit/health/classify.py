"""The verdict for an error raised while checking: (status, one-line summary, hint), and what
an error of the shared version call says about Matomo and the token (`api_facts`)."""

from __future__ import annotations

from matokit.errors import (
    AuthenticationError,
    LockedOutError,
    MatokitError,
    MatomoError,
    NoMatomoError,
    ProtocolError,
    RateLimitedError,
    ServerPausedError,
    TokenCoolDownError,
    UnavailableError,
)
from matokit.health.model import MetricValue, Status
from matokit.health.text import line
from matokit.times import utc_text

LOCKOUT_HINT = (
    "An admin must run `./console login:unblock-blocked-ips` on the Matomo server; first fix "
    "every cron job and monitor on this host that may be sending a stale token."
)
INTERNAL_ERROR_HINT = "This is a bug in MatoKit; rerun with debug logging and report it."


def classify_error(exc: BaseException) -> tuple[Status, str, str | None]:
    """(status, one-line summary, hint) for an error raised while checking."""
    hint = getattr(exc, "hint", None)
    if isinstance(exc, TokenCoolDownError):
        return (
            Status.CRITICAL,
            f"token rejected at {utc_text(exc.rejected_at)}; not sent again until "
            f"{utc_text(exc.until)} (lockout protection)",
            hint,
        )
    if isinstance(exc, LockedOutError):
        return (
            Status.CRITICAL,
            "Matomo blocks this host after too many failed logins",
            LOCKOUT_HINT,
        )
    if isinstance(exc, AuthenticationError):
        return Status.CRITICAL, line(f"token rejected: {exc.message}"), hint
    if isinstance(exc, UnavailableError) and _is_timeout(exc):
        method = exc.method or "the request"
        return Status.UNKNOWN, line(f"timed out waiting for {method}: {exc.message}"), hint
    if isinstance(exc, ServerPausedError):
        return Status.WARNING, line(f"tracking paused: {exc.message}"), hint
    if isinstance(exc, RateLimitedError):
        after = f"; retry after {exc.retry_after:g} s" if exc.retry_after else ""
        return Status.WARNING, line(f"rate limited: {exc.message}{after}"), hint
    if isinstance(exc, ProtocolError):
        return (
            Status.CRITICAL,
            line(f"not Matomo's answer (a proxy's error page?): {exc.message}"),
            hint,
        )
    if isinstance(exc, MatokitError):
        return Status.CRITICAL, line(exc.message), hint
    return (
        Status.UNKNOWN,
        line(f"internal error: {exc.__class__.__name__}: {exc}"),
        INTERNAL_ERROR_HINT,
    )


def api_facts(exc: BaseException) -> dict[str, MetricValue]:
    """The api check's `reachable` and `token_accepted` after the version call raised `exc`:
    1 or 0 when the error tells, None when it does not (the token in its cool-down was not
    sent, so Matomo was not asked; a configuration problem; a bug)."""
    reachable: MetricValue = None
    accepted: MetricValue = None
    if isinstance(exc, UnavailableError | ProtocolError | NoMatomoError):
        reachable = 0  # refused, reset, TLS, 5xx, maintenance, time-out, not Matomo's answer
    elif isinstance(exc, TokenCoolDownError):
        accepted = 0
    elif isinstance(exc, AuthenticationError | LockedOutError):
        reachable, accepted = 1, 0
    elif isinstance(exc, MatomoError):
        reachable = 1  # Matomo answered with an error of its own (a 429, a permission)
    return {"reachable": reachable, "token_accepted": accepted}


def _is_timeout(exc: BaseException) -> bool:
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.Timeout | TimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False
