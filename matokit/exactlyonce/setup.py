"""Make a site's `matokit_key` dimension usable: find it, else create or activate it.

Creating or activating a custom dimension changes Matomo and needs write or admin access on
the site (Matomo answers others 401 "...requires 'write' access..."); finding one needs view
access. The client must allow exactly `WRITE_METHODS` (see `connect.client_for`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from matokit.errors import (
    ConfigError,
    MatokitError,
    MatomoError,
    PermissionDeniedError,
    ProtocolError,
)
from matokit.exactlyonce.dimension import (
    ACTION_SCOPE,
    DIMENSION_NAME,
    NO_VIEW_ACCESS,
    ApiCaller,
    DimensionUnavailable,
    SiteDimension,
    discover,
    plugin_disabled,
    plugin_unavailable,
)

CREATE_METHOD: Final = "CustomDimensions.configureNewCustomDimension"
UPDATE_METHOD: Final = "CustomDimensions.configureExistingCustomDimension"
# The only Reporting API writes `ensure_key_dimension` makes.
WRITE_METHODS: Final = frozenset({CREATE_METHOD, UPDATE_METHOD})

SetupAction = Literal["found", "created", "activated"]

_ADMIN_HINT = (
    "Run `matokit setup exactly-once` once with the token of a Matomo user who has admin "
    "access to the site (or a superuser); a token with view access can use the dimension "
    "afterwards."
)


@dataclass(frozen=True)
class SetupOutcome:
    """What `ensure_key_dimension` did on one site, and the usable dimension it left there."""

    site: int
    dimension: SiteDimension
    action: SetupAction


@dataclass(frozen=True)
class SetupFailure:
    """Why `ensure_key_dimension` failed on one site (`ensure_on_sites` goes on to the next)."""

    site: int
    error: MatokitError


class KeyDimensionError(ConfigError):
    """The site's `matokit_key` dimension cannot be made usable without an operator (exit 78)."""

    def __init__(self, message: str, *, site: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.site = site


def ensure_key_dimension(client: ApiCaller, site: int) -> SetupOutcome:
    """Find the site's active action-scoped `matokit_key` dimension, or create or activate it.

    Idempotent: a second run finds what the first made. Raises PermissionDeniedError when the
    token may not create or activate it (or cannot even view the site), KeyDimensionError when
    the name is taken by a dimension of another scope or every action slot is used,
    DimensionUnavailable when the CustomDimensions plugin is off, other MatomoErrors unchanged.
    """
    found = _discover(client, site)
    if found is not None and found.usable:
        return SetupOutcome(site, found, "found")
    if found is None:
        _configure(
            client,
            site,
            CREATE_METHOD,
            idSite=site,
            name=DIMENSION_NAME,
            scope=ACTION_SCOPE,
            active=1,
            caseSensitive=1,
        )
        return SetupOutcome(site, _usable_after(client, site, CREATE_METHOD), "created")
    if found.scope != ACTION_SCOPE:
        raise KeyDimensionError(
            f"Site {site} already has a {found.scope}-scope custom dimension named "
            f"{DIMENSION_NAME} (id {found.id}); MatoKit needs that name for an action-scope one.",
            site=site,
            hint=f"Rename dimension {found.id} in Matomo (Administration > Websites > Custom "
            "Dimensions), then run `matokit setup exactly-once` again.",
        )
    _configure(
        client,
        site,
        UPDATE_METHOD,
        idDimension=found.id,
        idSite=site,
        name=DIMENSION_NAME,
        active=1,
    )
    return SetupOutcome(site, _usable_after(client, site, UPDATE_METHOD), "activated")


def ensure_on_sites(client: ApiCaller, sites: Iterable[int]) -> list[SetupOutcome | SetupFailure]:
    """`ensure_key_dimension` on each site in order (each once); a site that fails gets a
    SetupFailure in its place and the others are still tried."""
    results: list[SetupOutcome | SetupFailure] = []
    for site in dict.fromkeys(sites):
        try:
            results.append(ensure_key_dimension(client, site))
        except MatokitError as exc:
            results.append(SetupFailure(site, exc))
    return results


def _discover(client: ApiCaller, site: int) -> SiteDimension | None:
    try:
        return discover(client, site)
    except DimensionUnavailable as exc:
        if exc.kind != NO_VIEW_ACCESS:
            raise
        cause = exc.__cause__
        raise PermissionDeniedError(
            f"The token cannot see the custom dimensions of site {site}; setting up "
            f"{DIMENSION_NAME} needs admin access to the site.",
            hint=_ADMIN_HINT,
            **_details(cause),
        ) from exc


def _configure(client: ApiCaller, site: int, method: str, **params: Any) -> None:
    try:
        client.call(method, **params)
    except PermissionDeniedError as exc:
        verb = "Creating" if method == CREATE_METHOD else "Activating"
        raise PermissionDeniedError(
            f"{verb} the {DIMENSION_NAME} dimension on site {site} needs admin (or write) "
            "access to the site; this token has less.",
            hint=_ADMIN_HINT,
            **_details(exc),
        ) from exc
    except MatomoError as exc:
        if plugin_disabled(exc):
            raise plugin_unavailable(site) from exc
        if _slots_used_up(exc):
            raise KeyDimensionError(
                f"Every action-scope custom dimension slot of site {site} is in use, so "
                f"Matomo has no room for {DIMENSION_NAME}.",
                site=site,
                hint="A Matomo superuser can add a slot on the server with `./console "
                "customdimensions:add-custom-dimension --scope=action` (it alters the "
                "log_link_visit_action table: slow on a large database), then run this again.",
            ) from exc
        raise


def _usable_after(client: ApiCaller, site: int, method: str) -> SiteDimension:
    """The dimension as Matomo lists it after `method` succeeded; it must now be usable."""
    dimension = _discover(client, site)
    if dimension is None or not dimension.usable:
        state = "does not list it" if dimension is None else "still lists it as unusable"
        raise ProtocolError(
            f"Matomo accepted {method} for site {site} but {state}.",
            method=method,
            hint="Check the site's custom dimensions in Matomo (Administration > Websites > "
            "Custom Dimensions).",
        )
    return dimension


def _slots_used_up(error: MatomoError) -> bool:
    # "All Custom Dimensions for website 1 in scope 'action' are already used."
    text = error.message.casefold()
    return "custom dimensions for website" in text and "already used" in text


def _details(error: BaseException | None) -> dict[str, Any]:
    if not isinstance(error, MatomoError):
        return {}
    return {"method": error.method, "status": error.status, "url": error.url}
