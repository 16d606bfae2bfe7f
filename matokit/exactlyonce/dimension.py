"""TEMPORARY stand-in (coordinator): replaced by the setup helper's module at merge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from matokit.errors import MatokitError, MatomoError, PermissionDeniedError

DIMENSION_NAME: Final = "matokit_key"


class DimensionUnavailable(MatokitError):
    def __init__(self, site: int, reason: str) -> None:
        super().__init__(reason)
        self.site = site
        self.reason = reason


@dataclass(frozen=True)
class SiteDimension:
    site: int
    id: int
    index: int
    active: bool
    scope: str

    @property
    def usable(self) -> bool:
        return self.active and self.scope == "action"


def find_key_dimension(site: int, rows: object) -> SiteDimension | None:
    if not isinstance(rows, list):
        return None
    for row in rows:
        if isinstance(row, dict) and row.get("name") == DIMENSION_NAME:
            try:
                return SiteDimension(
                    site,
                    int(row["idcustomdimension"]),
                    int(row.get("index", 0)),
                    str(row.get("active")) in ("1", "True", "true"),
                    str(row.get("scope")),
                )
            except (KeyError, TypeError, ValueError):
                continue
    return None


def discover(client: Any, site: int) -> SiteDimension | None:
    try:
        rows = client.call("CustomDimensions.getConfiguredCustomDimensions", idSite=site)
    except PermissionDeniedError as exc:
        raise DimensionUnavailable(site, exc.message) from exc
    except MatomoError as exc:
        if "not enabled" in exc.message or "not activated" in exc.message:
            raise DimensionUnavailable(site, exc.message) from exc
        raise
    return find_key_dimension(site, rows)
