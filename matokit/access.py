"""What the configured token may do on Matomo, learned in one authenticated request.

`config test` uses it: one `API.getBulkRequest` asks for Matomo's version (which needs a valid
token with some view access), whether the token is a superuser's, and which sites it can view
and administer. Errors are the client's typed errors; a configured site the token cannot see is
a PermissionDeniedError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matokit.errors import MatomoError, PermissionDeniedError, ProtocolError

if TYPE_CHECKING:
    from matokit.client import MatomoClient

CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("API.getMatomoVersion", {}),
    ("UsersManager.hasSuperUserAccess", {}),
    ("SitesManager.getSitesIdWithAtLeastViewAccess", {}),
    ("SitesManager.getSitesIdWithAdminAccess", {}),
)


@dataclass(frozen=True)
class TokenAccess:
    """Matomo's version and the token's access, as Matomo reported them."""

    matomo_version: str
    superuser: bool
    view_sites: tuple[int, ...]
    admin_sites: tuple[int, ...]
    site: int | None  # the configured site, checked to be visible
    site_access: str | None  # "admin" or "view" on `site`; None without a site

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able view (the token is never part of it)."""
        return {
            "matomo_version": self.matomo_version,
            "superuser": self.superuser,
            "site": self.site,
            "site_access": self.site_access,
            "view_sites": list(self.view_sites),
            "admin_sites": list(self.admin_sites),
        }


def check_access(client: MatomoClient, *, site: int | None) -> TokenAccess:
    """Ask Matomo in one request what the client's token may do; raise what stops it.

    An invalid token, a token without any view access, or a `site` the token cannot see raise
    (AuthenticationError, PermissionDeniedError); an unreachable Matomo raises
    UnavailableError, as every call does.
    """
    answers = client.bulk(list(CALLS))
    for answer in answers:
        if isinstance(answer, MatomoError):
            raise answer
    version, superuser, view, admin = answers
    view_sites = _site_ids(view, CALLS[2][0])
    admin_sites = _site_ids(admin, CALLS[3][0])
    access = None
    if site is not None:
        if site not in view_sites:
            visible = ", ".join(map(str, view_sites)) or "none"
            raise PermissionDeniedError(
                f"The token cannot view site {site} (sites it can view: {visible}).",
                method=CALLS[2][0],
                hint=f"Give the token's user view access to site {site} in Matomo "
                "(Administration > System > Users), or configure another site_id.",
            )
        access = "admin" if site in admin_sites else "view"
    return TokenAccess(
        matomo_version=str(_value(version)),
        superuser=_value(superuser) is True,
        view_sites=view_sites,
        admin_sites=admin_sites,
        site=site,
        site_access=access,
    )


def _value(answer: Any) -> Any:
    """Matomo wraps scalars: {"value": X}."""
    return answer.get("value") if isinstance(answer, dict) else answer


def _site_ids(answer: Any, method: str) -> tuple[int, ...]:
    if not isinstance(answer, Sequence) or isinstance(answer, str):
        raise ProtocolError(f"{method} returned {type(answer).__name__}, not a list of ids.")
    try:
        return tuple(sorted(int(i) for i in answer))
    except (TypeError, ValueError):
        raise ProtocolError(f"{method} returned ids that are not numbers.") from None
