"""Matomo's `period` and `date` parameters: validated before any request, and their time spans.

Matomo answers a bad period or date with an error inside an HTTP 200 after a round trip; we
refuse it locally, with one message that names the fix. The rules (Matomo 5.x):

- day, week, month, year: `today`, `yesterday`, `YYYY-MM-DD` (one period); `lastN`,
  `previousN` or `A,B` (one entry per period, like Matomo).
- range: `A,B` (`B` may be `today` or `yesterday`), `lastN`, `previousN` (N days, summed).
  A single date is refused (Matomo would answer "range with one date").

Bad input raises `UsageError` (exit 2, like a bad report name: README, Exit codes) before any
request is made.

`span()` gives the calendar days a request covers; the cache uses it to decide whether a report
can still change (its span includes the site's today) or is final.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from datetime import date as Day

from matokit.errors import UsageError

PERIODS = ("day", "week", "month", "year", "range")
MAX_N = 5000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELATIVE = re.compile(r"^(last|previous)(\d+)$")
_UTC_OFFSET = re.compile(r"^UTC([+-])(\d{1,2})(?:\.(\d+))?$")

DATE_HELP = "today, yesterday, YYYY-MM-DD, lastN, previousN or A,B (two dates, A <= B)"


@dataclass(frozen=True)
class DateSpec:
    """A validated period + date.

    `kind` is "single" (one period), "relative" (lastN/previousN) or "span" (A,B).
    `multi` is True when Matomo answers one entry per period (an object keyed by date).
    """

    period: str
    date: str
    kind: str
    n: int | None = None
    start: Day | None = None
    end: Day | None = None
    end_keyword: str | None = None

    @property
    def multi(self) -> bool:
        """Whether the answer is keyed by date (lastN, previousN or A,B with a non-range period)."""
        return self.kind != "single" and self.period != "range"

    def describe(self) -> str:
        """`day today`, `range 2026-01-01,2026-01-31`... for messages."""
        return f"{self.period} {self.date}"


def parse_iso_date(text: str, *, what: str = "date") -> Day:
    """A `YYYY-MM-DD` calendar date, or UsageError."""
    if not _DATE.match(text):
        raise UsageError(
            f"{what} {text!r} is not a date.",
            hint=f"Use --date {DATE_HELP}.",
        )
    try:
        return Day.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is not a calendar date.",
            hint="Check the month and day (YYYY-MM-DD).",
        ) from None


def validate(period: str, value: str) -> DateSpec:
    """Check `period` and `date` by Matomo's rules; UsageError names the fix."""
    period = (period or "").strip().lower()
    text = (value or "").strip()
    if period not in PERIODS:
        raise UsageError(
            f"period {period!r} is not supported.",
            hint="Use --period day, week, month, year or range.",
        )
    if not text:
        raise UsageError("--date is empty.", hint=f"Use --date {DATE_HELP}.")
    lowered = text.lower()
    relative = _RELATIVE.match(lowered)
    if relative:
        n = int(relative.group(2))
        if not 1 <= n <= MAX_N:
            raise UsageError(
                f"date {text!r}: N must be between 1 and {MAX_N}.",
                hint="Use e.g. --date last7 or --date previous30.",
            )
        return DateSpec(period, f"{relative.group(1)}{n}", "relative", n=n)
    if "," in text:
        return _validate_span(period, text)
    if period == "range":
        raise UsageError(
            f"period range needs two dates or lastN/previousN, not {text!r}.",
            hint="Use e.g. --period range --date 2026-01-01,2026-01-31 (or --date last7), "
            "or pick --period day.",
        )
    if lowered in ("today", "yesterday"):
        return DateSpec(period, lowered, "single")
    day = parse_iso_date(text)
    return DateSpec(period, day.isoformat(), "single", start=day, end=day)


def _validate_span(period: str, text: str) -> DateSpec:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(
            f"date {text!r} must be two dates A,B.",
            hint="Use e.g. --date 2026-01-01,2026-01-31.",
        )
    first, second = parts
    start = parse_iso_date(first, what="start date")
    if second.lower() in ("today", "yesterday"):
        return DateSpec(
            period,
            f"{start.isoformat()},{second.lower()}",
            "span",
            start=start,
            end_keyword=second.lower(),
        )
    end = parse_iso_date(second, what="end date")
    if start > end:
        raise UsageError(
            f"date range {text!r} ends before it starts.",
            hint=f"Swap them: --date {end.isoformat()},{start.isoformat()}.",
        )
    return DateSpec(period, f"{start.isoformat()},{end.isoformat()}", "span", start=start, end=end)


# --- time zones and spans ---------------------------------------------------------------------


def site_tzinfo(name: str | None) -> tzinfo | None:
    """The tzinfo of a Matomo site time zone (`Europe/Paris`, `UTC`, `UTC+5.5`); None if unknown."""
    if not name:
        return None
    if name.upper() == "UTC":
        return UTC
    offset = _UTC_OFFSET.match(name)
    if offset:
        sign, hours, fraction = offset.groups()
        minutes = int(hours) * 60 + round(float(f"0.{fraction}") * 60 if fraction else 0)
        delta = timedelta(minutes=minutes if sign == "+" else -minutes)
        return timezone(delta)
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def site_today(tz: tzinfo | str | None, now: datetime | float) -> Day:
    """Today's date in the site's time zone.

    With an unknown zone, the earliest "today" on Earth (UTC-12) is used: a span is then more
    likely to count as "includes today", which only makes cache entries expire sooner.
    """
    moment = now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    zone = site_tzinfo(tz) if isinstance(tz, str) or tz is None else tz
    if zone is None:
        zone = timezone(timedelta(hours=-12))
    return moment.astimezone(zone).date()


def period_bounds(period: str, day: Day) -> tuple[Day, Day]:
    """First and last day of the day/week/month/year period containing `day`."""
    if period == "week":
        first = day - timedelta(days=day.weekday())  # Matomo weeks start on Monday
        return first, first + timedelta(days=6)
    if period == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    if period == "year":
        return day.replace(month=1, day=1), day.replace(month=12, day=31)
    return day, day


def _step_back(period: str, day: Day, count: int) -> Day:
    """A day inside the period `count` periods before the one containing `day`."""
    if period == "week":
        return day - timedelta(weeks=count)
    if period == "month":
        months = day.year * 12 + day.month - 1 - count
        return Day(months // 12, months % 12 + 1, 1)
    if period == "year":
        return Day(day.year - count, 1, 1)
    return day - timedelta(days=count)


def span(spec: DateSpec, today: Day) -> tuple[Day, Day]:
    """The first and last calendar day the request covers, given the site's today."""
    unit = "day" if spec.period == "range" else spec.period
    if spec.kind == "relative":
        assert spec.n is not None
        last = today if spec.date.startswith("last") else _step_back(unit, today, 1)
        first = _step_back(unit, last, spec.n - 1)
        return period_bounds(unit, first)[0], period_bounds(unit, last)[1]
    if spec.kind == "span":
        assert spec.start is not None
        end = spec.end
        if end is None:
            end = today if spec.end_keyword == "today" else today - timedelta(days=1)
        return period_bounds(unit, spec.start)[0], period_bounds(unit, end)[1]
    if spec.date == "today":
        day = today
    elif spec.date == "yesterday":
        day = today - timedelta(days=1)
    else:
        assert spec.start is not None
        day = spec.start
    return period_bounds(unit, day)
