"""One Reporting API call: its parameters, who makes it, and the site checks every method shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from tests.fakematomo.access import Access
from tests.fakematomo.errors import ApiError, needs_some_access, no_view_access, unexpected_site
from tests.fakematomo.state import ServerState
from tests.fakematomo.visits import VisitCache


@dataclass
class Call:
    state: ServerState
    visits: VisitCache
    params: dict[str, str]
    pairs: list[tuple[str, str]]
    access: Access | None  # None: anonymous
    ip: str

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)

    def require(self, name: str) -> str:
        value = self.params.get(name, "")
        if value == "":
            raise ApiError(f"Please specify a value for '{name}'.", 400)
        return value

    def today(self, idsite: int) -> date:
        zone = ZoneInfo(self.state.sites[idsite].timezone)
        return datetime.fromtimestamp(self.state.clock(), zone).date()

    def some_access(self, level: str = "view") -> None:
        acc = self.access
        ok = acc is not None and (
            acc.superuser
            or bool(
                acc.admin_sites(self.state.sites)
                if level == "admin"
                else acc.view_sites(self.state.sites)
            )
        )
        if not ok:
            raise needs_some_access(level)

    def sites(self, raw: str) -> tuple[list[int], bool]:
        """Site ids of an idSite parameter (N, "1,2" or "all"), checked; and whether keyed."""
        raw = raw.strip()
        if raw == "all":
            ids = self.access.view_sites(self.state.sites) if self.access else []
            if not ids:
                raise needs_some_access("view")
            return ids, True
        parts = [p.strip() for p in raw.split(",")] if "," in raw else [raw]
        ids = [self.site(p) for p in parts]
        return ids, len(parts) > 1

    def site(self, raw: str) -> int:
        if not raw.isdigit() or int(raw) <= 0:
            raise unexpected_site(raw)
        idsite = int(raw)
        acc = self.access
        if acc is not None and acc.superuser:
            if idsite not in self.state.sites:
                raise unexpected_site(raw)
            return idsite
        if acc is None or not acc.can_view(idsite) or idsite not in self.state.sites:
            raise no_view_access(idsite)
        return idsite
