"""Asking Matomo whether it holds a hit: one exact Live lookup per key, many in one bulk request.

`Live.getLastVisitsDetails` with `segment=dimension{ID}=={KEY}&doNotFetchActions=1&filter_limit=1`
returns a visit if and only if an action carrying that key is stored: Matomo matches the segment
over every action of a visit. Goal and ecommerce hits (`idgoal`) record no action, so they never
carry a key (see `stampable`). The cheaper OR query over many keys is NOT used: Live lists at most
`visitor_log_maximum_actions_per_visit` actions of a visit (500 by default), so a stored key past
that limit is absent from its answer, and reading "absent" as "not stored" would send it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from matokit.errors import AuthenticationError, MatomoError, PermissionDeniedError

LOOKUP_METHOD: Final = "Live.getLastVisitsDetails"
# Keys looked up per API.getBulkRequest (100 took 0.25 s on the reference Matomo).
LOOKUPS_PER_REQUEST: Final = 100

# Matomo's answers when lookups cannot work on a site: the visits log disabled (privacy
# setting, per site or global), the Live or CustomDimensions plugin off, or a dimension gone.
_UNAVAILABLE_MARKS: Final = (
    "visits log is deactivated",
    "plugin live is not enabled",
    "plugin customdimensions is not enabled",
    "is not a supported segment",
)


class Verdict(StrEnum):
    """What one lookup says of one key."""

    STORED = "stored"  # Matomo holds the hit: delivered, never sent again
    MISSING = "missing"  # Matomo does not hold it: send it again
    FAILED = "failed"  # no answer worth trusting: ask again later
    UNAVAILABLE = "unavailable"  # lookups cannot work on this site (Live off, no view access)


def lookup_params(
    *, site: int, dimension: int, key: str, since: float, now: float
) -> Mapping[str, Any]:
    """The Live call finding `key` in `site`'s visits from the UTC day before `since` to the
    UTC day after `now`.

    `since` is the earlier of the hit's time and its send. A visit holding the hit had its
    last action between the two, and one day either side covers every site time zone. The end
    is a date, not `today`: Live builds the range in UTC, so on a site ahead of UTC `today`
    would end at the site's midnight and miss the hits of its new day (Matomo caps a later
    end at now).
    """
    start = datetime.fromtimestamp(since, UTC).date() - timedelta(days=1)
    end = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return {
        "idSite": site,
        "period": "range",
        "date": f"{start.isoformat()},{end.isoformat()}",
        "segment": f"dimension{dimension}=={key}",
        "doNotFetchActions": 1,
        "filter_limit": 1,
        "showColumns": "idVisit",
    }


def stampable(params: Mapping[str, str]) -> bool:
    """Whether a hit can carry its key: it records an action (goal conversions and ecommerce
    orders, `idgoal`, record none, so an action-scoped value would never be stored)."""
    return "idgoal" not in params


def verdict(answer: Any) -> Verdict:
    """The verdict of one bulk entry: a list of visits, or the MatomoError in its place."""
    if isinstance(answer, MatomoError):
        return Verdict.UNAVAILABLE if unavailable_reason(answer) else Verdict.FAILED
    if isinstance(answer, list):
        return Verdict.STORED if answer else Verdict.MISSING
    return Verdict.FAILED  # anything else is not an answer to this question


def unavailable_reason(error: MatomoError) -> str | None:
    """Why lookups cannot work on a site, when `error` says so; None for a passing failure.

    A token Matomo rejects outright is not "unavailable": the flush stops on it as always.
    """
    if isinstance(error, AuthenticationError):
        return None
    if isinstance(error, PermissionDeniedError):
        return f"the token has no view access for lookups: {error.message}"
    text = error.message.lower()
    if any(mark in text for mark in _UNAVAILABLE_MARKS):
        return error.message
    return None
