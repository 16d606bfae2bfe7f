"""Fetching reports: one answer from the profile's cache or Matomo, for the CLI and for scripts.

    from matokit import reportfetch, reports
    data = reportfetch.fetch(settings, report, reports.request_params(report, spec, site=1))

`fetch` answers a fresh cache hit from MatoKit's own table (`cache.cached_answer`, standard
library only: the lean path of `matokit report NAME` calls the same function), else asks
Matomo over the profile's cached session. Before a report is asked over that session, the
site's settings are read through it (`SitesManager.getSiteFromId`, itself cached for a day),
from which the session learns the site's time zone: what "today" means, so how long the
answer is kept.

Module level imports only the standard library: requests and requests-cache are imported
only when Matomo has to be asked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matokit.client import MatomoClient
    from matokit.config import Settings
    from matokit.dates import DateSpec
    from matokit.errors import MatomoError
    from matokit.reports import Report

log = logging.getLogger("matokit.report")
SUMMARY = ("visits", "pages", "referrers", "events")  # catalogue names, in display order


def fetch(
    settings: Settings,
    report: Report,
    params: Mapping[str, str],
    *,
    cache: bool = True,
    refresh: bool = False,
    clock: Callable[[], float] = time.time,
) -> Any:
    """Matomo's answer to one report: from a fresh cache entry, else asked (and then cached).

    `cache=False` neither reads nor writes the cache; `refresh=True` asks Matomo afresh and
    stores the new answer. A report that is never cached (`Live.*`) is always asked.
    """
    use_cache = report.cacheable and cache
    if use_cache and not refresh:
        from matokit.cache import cached_answer

        data = cached_answer(settings, report, params)
        if data is not None:
            log.info("answered from the cache", extra={"api_method": report.method})
            return data
    site = params.get("idSite")
    with opened(settings, cache=use_cache, refresh=refresh, site=site, clock=clock) as client:
        return client.call(report.method, **params)


@dataclass(frozen=True)
class Summary:
    """The sections of `report summary` that came back (rows) and those that failed."""

    site: int
    spec: DateSpec
    results: dict[str, list[dict[str, Any]]]
    errors: dict[str, MatomoError]


def summary(
    settings: Settings,
    spec: DateSpec,
    *,
    site: int,
    limit: int,
    segment: str | None = None,
    cache: bool = True,
    refresh: bool = False,
    clock: Callable[[], float] = time.time,
) -> Summary:
    """Visits, top pages, channels and top events of a site in one `API.getBulkRequest`.

    A section Matomo refused is in `errors` (the others are still there); a failure of the
    whole request is raised.
    """
    from matokit import reports
    from matokit.errors import MatomoError

    chosen = [reports.BY_NAME[name] for name in SUMMARY]
    calls = [
        (r.method, reports.request_params(r, spec, site=site, limit=limit, segment=segment))
        for r in chosen
    ]
    with opened(settings, cache=cache, refresh=refresh, site=site, clock=clock) as client:
        answers = client.bulk(calls)
    results: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, MatomoError] = {}
    for report, answer in zip(chosen, answers, strict=True):
        if isinstance(answer, MatomoError):
            errors[report.name] = answer
            continue
        rows = reports.rows_from(answer, report=report, spec=spec)
        results[report.name] = [] if reports.is_empty(rows, report) else rows
    return Summary(site, spec, results, errors)


@contextlib.contextmanager
def opened(
    settings: Settings,
    *,
    cache: bool = True,
    refresh: bool = False,
    site: int | str | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[MatomoClient]:
    """The profile's client, over the profile's cache unless `cache=False`; closed on exit.

    With a `site` and the cache, the site's settings are read first so the session knows the
    site's time zone. An unusable cache is a warning, and the client goes without it.
    """
    from matokit.cache import SITE_METHOD
    from matokit.connect import client_for

    settings.require_url()  # configuration errors first: no cache file for a broken profile
    session = _session(settings, refresh=refresh, clock=clock) if cache else None
    try:
        client = client_for(settings, session=session, clock=clock)
        try:
            if session is not None and site is not None:
                client.call(SITE_METHOD, idSite=site)  # the session learns the zone from it
            yield client
        finally:
            client.close()
    finally:
        if session is not None:
            session.close()


def _session(settings: Settings, *, refresh: bool, clock: Callable[[], float]) -> Any | None:
    from matokit.cache import cached_session
    from matokit.errors import StorageError

    try:
        return cached_session(settings, refresh=refresh, clock=clock)
    except StorageError as exc:
        log.warning("%s Continuing without the cache.", exc.message)
        return None
