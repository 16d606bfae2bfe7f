"""Live.getLastVisitsDetails and Live.getCounters: raw visits, no archiving.

The period/date window is Matomo's (plugins/Live/Model.php getStartAndEndDate): visits are
selected by their LAST action time, from midnight of the first day in the site's time zone.
The end is open (up to now) when the date names today or is lastN/previousN; otherwise it is
midnight after the last day. Two quirks are copied on purpose:
- `period=day&date=today` starts yesterday (the last 24 hours and more);
- `period=range` resolves `today` as UTC's today (Range is built in UTC), and the open end
  applies only when that equals the site's today: in a site ahead of UTC, between the site's
  midnight and UTC's, `date=X,today` ends at the site's midnight and misses today's visits.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.fakematomo import dimensions
from tests.fakematomo.call import Call
from tests.fakematomo.errors import ApiError
from tests.fakematomo.live import visit_details
from tests.fakematomo.periods import (
    PERIODS,
    bad_date,
    bad_period,
    parse_date,
    period_end,
    period_start,
    range_bounds,
)
from tests.fakematomo.segments import filter_visits
from tests.fakematomo.tables import TableOptions
from tests.fakematomo.visits import Visit

DEFAULT_LIMIT = 10  # Live reads filter_limit with a default of 10
_MULTIPLE = re.compile(r"(last|previous)\d*")
_RANGE = re.compile(r"\d{4}-\d{1,2}-\d{1,2},(\d{4}-\d{1,2}-\d{1,2}|today|now|yesterday)")
_OPEN_ENDED = ("now", "today", "yesterdaySameTime")

GLOBALLY_DISABLED = (
    "Visits log is deactivated globally. A user with super user access can enable this "
    "feature in the general settings."
)


def site_disabled(idsite: int) -> str:
    return (
        "Visits log is deactivated in website settings. A user with at least admin access can "
        f"enable this feature in the settings for this website (idSite={idsite})."
    )


def check_visits_log(call: Call, ids: list[int], raw: str) -> None:
    """Live::checkIsVisitorLogEnabled, as getLastVisitsDetails applies it."""
    state = call.state
    if len(ids) == 1:
        if state.visits_log_disabled_globally:
            raise ApiError(GLOBALLY_DISABLED)
        if ids[0] in state.visits_log_disabled:
            raise ApiError(site_disabled(ids[0]))
        return
    if state.visits_log_disabled_globally or all(i in state.visits_log_disabled for i in ids):
        raise ApiError(f"Visits log is deactivated for all given websites (idSite={raw}).")


def window(
    period: str, date_param: str, zone: ZoneInfo, now: float
) -> tuple[float | None, float | None]:
    """The [start, end] bounds on a visit's last action time, Unix seconds (None: open)."""
    if not period or not date_param:
        return None, None
    if period not in PERIODS:
        raise bad_period(period)
    text = date_param.strip()
    utc_today = datetime.fromtimestamp(now, UTC).date()
    site_today = datetime.fromtimestamp(now, zone).date()
    try:
        if period == "range" or _MULTIPLE.fullmatch(text) or _RANGE.fullmatch(text):
            start, end = range_bounds(text, utc_today)
            end_text = text.partition(",")[2] if _RANGE.fullmatch(text) else text
        else:
            day = parse_date(text, utc_today)
            if text in ("today", "now") or day == site_today:
                day -= timedelta(days=1)
            start, end = period_start(period, day), period_end(period, period_start(period, day))
            end_text = text
    except (OverflowError, ValueError):
        raise bad_date(text) from None
    start_ts = min(_midnight(start, zone), now)
    if (
        text in _OPEN_ENDED
        or "last" in text
        or "previous" in text
        or parse_date(end_text, utc_today) == site_today
    ):
        return start_ts, None
    end_ts = _midnight(end + timedelta(days=1), zone)
    return start_ts, min(end_ts, now + 1)


def _midnight(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, time(), zone).timestamp()


def last_visits(call: Call) -> list[dict[str, Any]]:
    """Live.getLastVisitsDetails: raw visits (no archiving), newest first, one flat list."""
    raw = call.require("idSite")
    ids, _multi = call.sites(raw)
    check_visits_log(call, ids, raw)
    opts = TableOptions.from_params(call.params)
    limit = opts.limit if "filter_limit" in call.params else DEFAULT_LIMIT
    period, date_param = call.param("period"), call.param("date")
    if not period and not date_param and limit == 0 and opts.offset == 0:
        period, date_param = "day", "yesterdaySameTime"  # no filter at all: the last day
    now = call.state.clock()
    all_visits = call.visits.visits()
    dims = {i: dimensions.configured(call.state, i) for i in ids}
    chosen: list[Visit] = []
    for idsite in ids:
        zone = ZoneInfo(call.state.sites[idsite].timezone)
        start, end = window(period, date_param, zone, now)

        def lookup(iddim: int, value: str, idsite: int = idsite) -> list[Visit]:
            return call.visits.with_value(idsite, iddim, value)

        segment = call.param("segment")
        visits = filter_visits(all_visits.get(idsite, []), segment, dims[idsite], lookup)
        chosen.extend(
            v
            for v in visits
            if (start is None or v.last_ts >= start) and (end is None or v.last_ts <= end)
        )
    min_ts = call.param("minTimestamp")
    if min_ts.isdigit():
        chosen = [v for v in chosen if v.last_ts > int(min_ts)]
    # ORDER BY visit_last_action_time (whole seconds in MySQL), idvisit
    chosen.sort(key=lambda v: (int(v.last_ts), v.idvisit), reverse=opts.sort_desc)
    chosen = chosen[opts.offset :]
    if limit > 0:
        chosen = chosen[:limit]
    with_actions = call.param("doNotFetchActions") not in ("1", "true")
    most = call.state.max_actions_per_visit
    rows = [
        visit_details(v, call.state.sites[v.idsite], dims[v.idsite], with_actions, most)
        for v in chosen
    ]
    if opts.show:
        rows = [{k: v for k, v in row.items() if k in opts.show} for row in rows]
    if opts.hide:
        rows = [{k: v for k, v in row.items() if k not in opts.hide} for row in rows]
    return rows


def counters(call: Call) -> list[dict[str, int]]:
    """Live.getCounters: what arrived in the last N minutes (no visits-log check in Matomo)."""
    ids, _multi = call.sites(call.require("idSite"))
    minutes = call.require("lastMinutes")
    since = call.state.clock() - 60 * (int(minutes) if minutes.isdigit() else 30)
    all_visits = call.visits.visits()
    recent = [v for i in ids for v in all_visits.get(i, []) if v.last_ts >= since]
    return [
        {
            "visits": len(recent),
            "actions": sum(v.nb_actions for v in recent),
            "visitors": len({v.visitor_id for v in recent}),
            "visitsConverted": sum(1 for v in recent if v.converted),
        }
    ]
