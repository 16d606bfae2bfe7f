"""What delivery needs of Matomo and knows of its rules.

The client protocol, the 24 h rule for old hits and its admin-access check, and whether a
failed request may have stored its hits anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from matokit.errors import MatomoError, PermissionDeniedError, ProtocolError, UnavailableError
from matokit.hits import Hit

if TYPE_CHECKING:
    from matokit.client import TrackResult

# Matomo needs an admin token for hits older than this (24 h); a little margin for the trip.
OLD_HIT_AGE: Final = 86400.0 - 120.0
# Hits this old may cross the 24 h line before Matomo sees them: send them alone.
AT_RISK_AGE: Final = 23 * 3600.0
ADMIN_METHOD: Final = "SitesManager.getSitesIdWithAdminAccess"


class TrackingClient(Protocol):
    """What delivery needs of `MatomoClient` (tests pass fakes)."""

    def track(self, hits: Sequence[Hit]) -> TrackResult: ...

    def call(self, method: str, /, **params: Any) -> Any: ...


ClientFactory = Callable[[], TrackingClient]


class NoAdminAccess(Exception):
    """The token is valid but has no admin access on a site whose old hits need it."""

    def __init__(self, site: int) -> None:
        message = (
            f"The hit is older than 24 h and the token has no admin access on site {site}: "
            "Matomo records such hits only with an admin or superuser token."
        )
        super().__init__(message)
        self.site = site
        self.error = PermissionDeniedError(
            message, hint="Use a token with admin access on the site, then `matokit queue flush`."
        )


def admin_sites(client: TrackingClient) -> frozenset[int]:
    """Sites on which the token may replay hits older than 24 h (raises for a bad token)."""
    try:
        answer = client.call(ADMIN_METHOD)
    except PermissionDeniedError:
        return frozenset()
    sites: set[int] = set()
    if isinstance(answer, list):
        for value in answer:
            with contextlib.suppress(TypeError, ValueError):
                sites.add(int(value))
    return frozenset(sites)


def maybe_stored(exc: MatomoError) -> bool:
    """Whether Matomo may have stored a batch whose request failed with `exc`."""
    if isinstance(exc, UnavailableError):
        return exc.maybe_stored
    if isinstance(exc, ProtocolError):
        # A garbled 2xx answer came after processing; a redirect or error page did not.
        return exc.status is None or 200 <= exc.status < 300
    return False
