"""Which site a log line belongs to, and the scheme and host its URL starts with.

`--site ID` gives every line one site; `--site-from-host` asks Matomo for the site of each
line's host (`SitesManager.getSitesIdFromSiteUrl`, as Matomo's importer does), once per host.
URLs need a scheme and, for formats that log no host, the site's host: both come from the
site's main URL (`SitesManager.getSiteFromId`) unless `--site-url` gives them. Answers are
remembered a day in the access-log state, so a run while Matomo is down uses what it last said.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from matokit.accesslog.state import LOOKUP_TTL, AccessLogState
from matokit.delivery.matomo import TrackingClient
from matokit.errors import ConfigError, MatomoError, UsageError

log = logging.getLogger("matokit.accesslog")

SITES_FROM_URL = "SitesManager.getSitesIdFromSiteUrl"
SITE_FROM_ID = "SitesManager.getSiteFromId"


def check_site_url(url: str) -> str:
    """`--site-url`: scheme://host[:port][/path], without a trailing slash; UsageError else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"--site-url {url!r} is not an http(s) URL",
            hint="give the site's scheme and host, e.g. https://www.example.com",
        )
    return url.strip().rstrip("/")


class Sites:
    """Sites and URL prefixes of log lines (answers cached in memory and in the state)."""

    def __init__(
        self,
        *,
        site: int | None,
        from_host: bool,
        site_url: str | None,
        state: AccessLogState | None,
        client: Callable[[], TrackingClient],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fixed = None if from_host else site
        self.from_host = from_host
        self.site_url = site_url
        self._state = state
        self._client = client
        self._clock = clock
        self._hosts: dict[str, int | None] = {}
        self._bases: dict[int, str] = {}

    def site_for(self, host: str | None) -> int | None:
        """The line's site: the fixed one, else its host's (None: no site has that host)."""
        if self.fixed is not None:
            return self.fixed
        if not host:
            return None
        try:
            return self._hosts[host]
        except KeyError:
            pass
        site = self._hosts[host] = self._ask_host(host)
        return site

    def _ask_host(self, host: str) -> int | None:
        remembered = self._state.host_site(host) if self._state is not None else None
        if remembered is not None and self._clock() - remembered[1] < LOOKUP_TTL:
            return remembered[0]
        try:
            answer = self._client().call(SITES_FROM_URL, url=host)
        except MatomoError as exc:
            if remembered is None:
                raise
            log.warning(
                "cannot ask Matomo for the site of %s (%s); using its last answer", host, exc
            )
            return remembered[0]
        site = _first_site(answer)
        if self._state is not None:
            self._state.remember_host(host, site)
        return site

    def base(self, site: int, host: str | None) -> str:
        """What the line's URL starts with: scheme://host (the line's host, when it has one)."""
        prefix = self._prefix(site)
        if host:
            return prefix[: prefix.index("://") + 3] + host
        return prefix

    def _prefix(self, site: int) -> str:
        if self.site_url is not None:
            return self.site_url
        try:
            return self._bases[site]
        except KeyError:
            pass
        prefix = self._bases[site] = self._main_url(site)
        return prefix

    def _main_url(self, site: int) -> str:
        remembered = self._state.main_url(site) if self._state is not None else None
        if remembered is not None and self._clock() - remembered[1] < LOOKUP_TTL:
            return remembered[0]
        try:
            answer = self._client().call(SITE_FROM_ID, idSite=site)
        except (MatomoError, ConfigError) as exc:
            if remembered is None:
                # Same error (same exit code), with the way around it.
                exc.hint = (exc.hint + " " if exc.hint else "") + (
                    "Or give --site-url https://HOST: page URLs need the site's scheme and host."
                )
                raise
            return remembered[0]
        url = str(answer.get("main_url") or "") if isinstance(answer, dict) else ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"site {site}'s main URL in Matomo ({url!r}) is not an http(s) URL",
                hint="give --site-url https://HOST",
            )
        prefix = url.rstrip("/")
        if self._state is not None:
            self._state.remember_main_url(site, prefix)
        return prefix


def _first_site(answer: Any) -> int | None:
    """The first idsite of a getSitesIdFromSiteUrl answer ([{"idsite": "1"}, ...])."""
    if isinstance(answer, list):
        for row in answer:
            value = row.get("idsite") if isinstance(row, dict) else row
            if value is None:
                continue
            try:
                return int(value)
            except (TypeError, ValueError):
                continue
    return None
