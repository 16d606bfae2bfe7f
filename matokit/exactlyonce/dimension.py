"""The site's `matokit_key` dimension, read from `CustomDimensions.getConfiguredCustomDimensions`.

That method needs view access on the site. Matomo 5 sends `idcustomdimension`, `idsite` and
`index` as strings and `active`, `case_sensitive` as booleans; numbers, digit strings and
"0"/"1" are accepted too. Rows that are not dimensions (or are another site's) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from matokit.errors import MatokitError, MatomoError, PermissionDeniedError, ProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable

DIMENSION_NAME: Final = "matokit_key"
ACTION_SCOPE: Final = "action"
PLUGIN: Final = "CustomDimensions"
LIST_METHOD: Final = "CustomDimensions.getConfiguredCustomDimensions"

# What keeps a site's dimensions from being read (DimensionUnavailable.kind).
UnavailableKind = Literal["plugin_disabled", "no_view_access"]
PLUGIN_DISABLED: Final = "plugin_disabled"
NO_VIEW_ACCESS: Final = "no_view_access"


class ApiCaller(Protocol):
    """The part of `MatomoClient` this package uses: one Reporting API call."""

    def call(self, method: str, /, **params: Any) -> Any: ...


@dataclass(frozen=True)
class SiteDimension:
    """One custom dimension named `matokit_key` as Matomo configured it on `site`.

    `id` is the `idcustomdimension` (what hits carry as `dimension{id}=` and segments name);
    `index` the column slot of its scope on the server.
    """

    site: int
    id: int
    index: int
    active: bool
    scope: str

    @property
    def usable(self) -> bool:
        """Whether hits can carry their key in it: active and scoped to actions."""
        return self.active and self.scope == ACTION_SCOPE


class DimensionUnavailable(MatokitError):
    """A site's custom dimensions cannot be read: the plugin is off or the token cannot view.

    `reason` says why in a few words ("the CustomDimensions plugin is not enabled"), for
    warnings that name the site themselves; `kind` is the same as a code.
    """

    def __init__(
        self,
        message: str,
        *,
        site: int,
        reason: str,
        kind: UnavailableKind,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.site = site
        self.reason = reason
        self.kind: UnavailableKind = kind


def find_key_dimension(site: int, rows: object) -> SiteDimension | None:
    """The dimension named exactly `matokit_key` in Matomo's list for `site`, None if absent.

    Any scope or state is returned (the caller decides with `usable`). Should several rows
    carry the name, a usable one wins, then an inactive action-scope one, then the lowest id.
    """
    found = [d for row in _rows(rows) if (d := _parse(site, row)) is not None]
    if not found:
        return None
    return min(found, key=lambda d: (not d.usable, d.scope != ACTION_SCOPE, d.id))


def discover(client: ApiCaller, site: int) -> SiteDimension | None:
    """Ask Matomo for the site's dimensions and return its `matokit_key` one (None: absent).

    Raises DimensionUnavailable when the CustomDimensions plugin is not enabled or the token
    lacks view access on the site; ProtocolError when the answer is not a list of dimensions
    (an empty list is none: the caller may then create one, so a scalar must not pass as that);
    other MatomoErrors (token, network, unknown site) unchanged.
    """
    try:
        rows = client.call(LIST_METHOD, idSite=site)
    except PermissionDeniedError as exc:
        raise DimensionUnavailable(
            f"The token cannot read the custom dimensions of site {site}: it needs at least "
            "view access to the site.",
            site=site,
            reason="the token has no view access to it (reading its custom dimensions needs it)",
            kind=NO_VIEW_ACCESS,
            hint=f"Use the token of a Matomo user with view access to site {site} "
            "(Administration > System > Users).",
        ) from exc
    except MatomoError as exc:
        if plugin_disabled(exc):
            raise plugin_unavailable(site) from exc
        raise
    if not _is_listing(rows):
        raise ProtocolError(
            f"Matomo answered {LIST_METHOD} for site {site} with {type(rows).__name__}, "
            "not a list of dimensions.",
            method=LIST_METHOD,
        )
    return find_key_dimension(site, rows)


def plugin_disabled(error: MatomoError) -> bool:
    """Whether Matomo's error says the CustomDimensions plugin is not enabled or installed."""
    text = error.message.casefold()
    named = f"plugin {PLUGIN.casefold()} " in text
    return named and ("not enabled" in text or "not activated" in text or "not found" in text)


def plugin_unavailable(site: int) -> DimensionUnavailable:
    """The error for a server whose CustomDimensions plugin is off."""
    return DimensionUnavailable(
        f"Matomo's CustomDimensions plugin is not enabled, so site {site} cannot have the "
        f"{DIMENSION_NAME} dimension.",
        site=site,
        reason="Matomo's CustomDimensions plugin is not enabled",
        kind=PLUGIN_DISABLED,
        hint="A Matomo superuser can activate it (Administration > System > Plugins, or "
        "`./console plugin:activate CustomDimensions` on the server).",
    )


# --- parsing Matomo's rows ------------------------------------------------------------------


def _is_listing(rows: object) -> bool:
    """A list (its junk rows are skipped), or an object whose values are all rows."""
    if isinstance(rows, dict):
        return all(isinstance(row, dict) for row in rows.values())
    return isinstance(rows, list)


def _rows(rows: object) -> Iterable[object]:
    # PHP sends an array whose keys are not 0..n-1 as a JSON object: accept its values.
    if isinstance(rows, dict):
        return list(rows.values())
    if isinstance(rows, list):
        return rows
    return []


def _parse(site: int, row: object) -> SiteDimension | None:
    if not isinstance(row, dict) or row.get("name") != DIMENSION_NAME:
        return None
    ident, index = _positive(row.get("idcustomdimension")), _positive(row.get("index"))
    active, scope = _flag(row.get("active")), row.get("scope")
    if ident is None or index is None or active is None or not isinstance(scope, str):
        return None
    if "idsite" in row and _positive(row["idsite"]) != site:
        return None  # another site's row has no business here
    return SiteDimension(site=site, id=ident, index=index, active=active, scope=scope)


def _positive(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return {"1": True, "0": False, "true": True, "false": False}.get(value.strip().lower())
    return None
