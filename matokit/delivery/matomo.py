"""What delivery needs of Matomo and knows of its rules.

The client protocol, the 24 h rule for old hits and its admin-access check, and whether a
failed request may have stored its hits anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from matokit.errors import (
    ConfigError,
    MatomoError,
    PermissionDeniedError,
    ProtocolError,
    UnavailableError,
)
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


class NoTokenForOldHit(ConfigError):
    """A hit older than 24 h needs an admin token, and no token is configured."""

    def __init__(self, site: int) -> None:
        super().__init__(
            "The hit is older than 24 h: Matomo records such hits only with a token that "
            f"has admin access on site {site}, and no token is configured.",
            hint="Set MATOMO_TOKEN or --token-file (an admin or superuser token), "
            "or track the hit with a recent --at.",
        )
        self.site = site


class NoAdminAccess(PermissionDeniedError):
    """The token is valid but has no admin access on a site whose old hits need it."""

    def __init__(self, site: int) -> None:
        super().__init__(
            f"The hit is older than 24 h and the token has no admin access on site {site}: "
            "Matomo records such hits only with an admin or superuser token.",
            hint="Use a token with admin access on the site, then `matokit queue flush`.",
        )
        self.site = site


def old_hit_refusal(
    age: float, site: int, *, has_token: bool, admin: Callable[[], frozenset[int]]
) -> NoTokenForOldHit | NoAdminAccess | None:
    """Why Matomo would not record a hit `age` seconds old on `site` (None: it may be sent).

    The 24 h rule, for `track` and the flush alike. `admin` gives the sites the token has
    admin access on; it is called only for an old hit with a token (and may raise MatomoError).
    """
    if age < OLD_HIT_AGE:
        return None
    if not has_token:
        return NoTokenForOldHit(site)
    if site not in admin():
        return NoAdminAccess(site)
    return None


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
