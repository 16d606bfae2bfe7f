"""The MatokitError tree: every expected failure is one of these.

Core modules raise them; only `matokit.cli.exit` maps them to exit codes. Each error carries
a one-line message naming the problem and, where there is one, a `hint` naming the fix.
Messages must already be redacted: nothing here ever holds a token.
"""

from __future__ import annotations

from typing import TypedDict, Unpack


class MatokitError(Exception):
    """Base class of every error MatoKit expects and explains."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


# --- configuration and local input -------------------------------------------------------


class ConfigError(MatokitError):
    """The configuration is missing, invalid or unreadable (exit 78)."""


class InsecurePermissionsError(ConfigError):
    """A file holding a secret can be read by other users."""


class InsecureURLError(ConfigError):
    """The token would travel in clear over http:// to a non-loopback host."""


class MissingExtraError(ConfigError):
    """A command needs an optional extra that is not installed (`pip install 'matokit[agents]'`)."""


class UsageError(MatokitError):
    """A command-line argument has a bad value: a flag, a date, a report name (exit 2)."""


class WriteRefusedError(UsageError):
    """A Reporting API call would change Matomo and writes were not allowed (exit 2)."""


class DataError(MatokitError):
    """Input data was rejected: an invalid hit or import line (exit 65; 2 when the hit's
    fields came from the command line)."""


class UnknownEntryError(DataError):
    """An entry id (or id prefix) names no journal entry in the state the command works on."""


class AmbiguousEntryError(DataError):
    """An entry id prefix names several journal entries."""


class HitValidationError(DataError):
    """A tracking hit failed validation before anything was sent."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


# --- local storage -------------------------------------------------------------------------


class StorageError(MatokitError):
    """The journal, cache or data directory cannot be used (exit 74)."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class HitNotKeptError(StorageError):
    """`track` could neither deliver a hit nor journal it (exit 74). `hit_line` is the hit as
    one redacted JSON line that `matokit track import` accepts, for the caller to keep."""

    def __init__(
        self, message: str, *, hit_line: str, path: str | None = None, hint: str | None = None
    ):
        super().__init__(message, path=path, hint=hint)
        self.hit_line = hit_line


class JournalCorruptError(StorageError):
    """The journal file is not a valid MatoKit journal; it is left untouched."""


class FlushInProgressError(MatokitError):
    """Another `queue flush` holds this profile's flush lock."""


class FlushWaitTimeoutError(FlushInProgressError):
    """`queue flush --wait-timeout` ran out while another flush still held the lock."""


# --- Matomo answered (or failed to) --------------------------------------------------------


class MatomoError(MatokitError):
    """Matomo (or the network to it) failed a request.

    `method` is the API method or "tracking", `status` the HTTP status (None without a
    response), `url` the request URL with any token removed.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        status: int | None = None,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.method = method
        self.status = status
        self.url = url


class MatomoDetails(TypedDict, total=False):
    """The keyword arguments of `MatomoError`, passed through by its subclasses."""

    method: str | None
    status: int | None
    url: str | None
    hint: str | None


class AuthenticationError(MatomoError):
    """Matomo said "Unable to authenticate": the token is invalid or expired. Never retried."""


class TokenCoolDownError(AuthenticationError):
    """This token was rejected recently; it is not sent again until the cool-down ends."""

    def __init__(self, message: str, *, rejected_at: float, until: float, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.rejected_at = rejected_at
        self.until = until


class PermissionDeniedError(MatomoError):
    """The token is valid but lacks the access this request needs (or no token was sent)."""


class LockedOutError(MatomoError):
    """Matomo blocked this client IP after too many failed logins. Never retried."""


class NotFoundError(MatomoError):
    """Matomo does not know this plugin or API method."""


class NoMatomoError(NotFoundError):
    """HTTP 404/405/410 without Matomo's own error: no Matomo at the configured URL (exit 78)."""


class InvalidRequestError(MatomoError):
    """Matomo refused the request's parameters (site, date, period, missing parameter)."""


class RejectedHitError(MatomoError):
    """Matomo refused a tracking hit as invalid."""


class RateLimitedError(MatomoError):
    """Matomo or a proxy answered 429; `retry_after` is in seconds when it said."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, **kwargs: Unpack[MatomoDetails]
    ):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerPausedError(RateLimitedError):
    """Matomo asked (Retry-After on a 429 or 503) for no requests before `until`; none is sent."""

    def __init__(
        self, message: str, *, until: float, retry_after: float, **kwargs: Unpack[MatomoDetails]
    ):
        super().__init__(message, retry_after=retry_after, **kwargs)
        self.until = until


class UnavailableError(MatomoError):
    """Matomo is unreachable or failing: connection refused/reset, timeout, 5xx, maintenance."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        maybe_stored: bool = False,
        **kwargs: Unpack[MatomoDetails],
    ):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        # True when the request body was sent and the answer was lost (timeout or reset while
        # reading): Matomo may have stored the hits.
        self.maybe_stored = maybe_stored


class RolledBackError(UnavailableError):
    """Matomo failed a whole bulk and rolled it back (HTTP 5xx with `tracked: 0`, e.g. a
    database deadlock): nothing was stored, so re-sending it cannot count a hit twice."""


class PayloadTooLargeError(RejectedHitError):
    """The server (or a proxy) refused the request body as too large (HTTP 413); nothing was
    stored. A smaller bulk may pass."""


class ProtocolError(MatomoError):
    """Matomo's answer is not what Matomo sends (a proxy's HTML page, truncated JSON)."""
