"""period/date parameters: Matomo's keywords, validation messages and result keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from tests.fakematomo.errors import ApiError

PERIODS = ("day", "week", "month", "year", "range")
# Matomo refuses dates before the first website ever went online.
FIRST_DAY = date(1991, 8, 6)
_YMD = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_LAST = re.compile(r"(last|previous)(\d+)")


@dataclass(frozen=True)
class Span:
    """One period: its key in multi-period answers and its first and last day."""

    label: str
    start: date
    end: date


def bad_date(text: str) -> ApiError:
    return ApiError(
        "Date format must be: YYYY-MM-DD, or 'today' or 'yesterday' or any keyword supported by "
        "the strtotime function (see https://www.php.net/strtotime for more information): " + text
    )


def bad_period(period: str) -> ApiError:
    return ApiError(
        f"The period '{period}' is not supported. Try any of the following instead: "
        + ", ".join(PERIODS)
    )


def bad_range(text: str) -> ApiError:
    return ApiError(
        f"The date '{text}' is not a correct date range. It should have the following format: "
        " 'lastN', 'previousN', 'YYYY-MM-DD,YYYY-MM-DD'."
    )


def parse_date(text: str, today: date) -> date:
    key = text.strip()
    keywords = {
        "today": today,
        "now": today,
        "yesterday": today - timedelta(days=1),
        "yesterdaySameTime": today - timedelta(days=1),
        "lastWeek": today - timedelta(days=7),
        "lastMonth": _add_months(today, -1),
        "lastYear": _add_months(today, -12),
    }
    if key in keywords:
        return keywords[key]
    m = _YMD.fullmatch(key)
    if not m:
        raise bad_date(text)
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise bad_date(text) from None
    if day < FIRST_DAY:
        raise ApiError(
            f"The date '{key}' is before the first website was online. Try a date that is after "
            f"{FIRST_DAY.isoformat()} (timestamp 681436800)."
        )
    return day


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    first = date(year, month + 1, 1)
    last = (_add_months_first(first, 1) - timedelta(days=1)).day
    return first.replace(day=min(d.day, last))


def _add_months_first(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, 1)


def period_start(period: str, d: date) -> date:
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "year":
        return d.replace(month=1, day=1)
    return d


def period_end(period: str, start: date) -> date:
    if period == "week":
        return start + timedelta(days=6)
    if period == "month":
        return _add_months_first(start, 1) - timedelta(days=1)
    if period == "year":
        return start.replace(month=12, day=31)
    return start


def shift(period: str, start: date, n: int) -> date:
    """The start of the period n periods away from the one starting at `start`."""
    if period == "week":
        return start + timedelta(weeks=n)
    if period == "month":
        return _add_months_first(start, n)
    if period == "year":
        return start.replace(year=start.year + n)
    return start + timedelta(days=n)


def label(period: str, start: date, end: date) -> str:
    if period == "month":
        return start.strftime("%Y-%m")
    if period == "year":
        return start.strftime("%Y")
    if period in ("week", "range"):
        return f"{start.isoformat()},{end.isoformat()}"
    return start.isoformat()


def span(period: str, start: date) -> Span:
    end = period_end(period, start)
    return Span(label(period, start, end), start, end)


def resolve(period: str, date_param: str, today: date) -> tuple[list[Span], bool]:
    """The periods a request covers, and whether the answer is keyed by period."""
    if period not in PERIODS:
        raise bad_period(period)
    text = date_param.strip()
    try:
        if period == "range":
            start, end = range_bounds(text, today)
            return [Span(f"{start.isoformat()},{end.isoformat()}", start, end)], False
        m = _LAST.fullmatch(text)
        if m:
            n = int(m[2])
            if n < 1:
                raise bad_date(text)
            current = period_start(period, today)
            offsets = range(-n + 1, 1) if m[1] == "last" else range(-n, 0)
            return [span(period, shift(period, current, i)) for i in offsets], True
        if "," in text:
            first, _, second = text.partition(",")
            a, b = parse_date(first, today), parse_date(second, today)
            if a > b:
                raise ApiError(f"The date range '{text}' is invalid: the start is after the end.")
            spans = []
            cursor = period_start(period, a)
            while cursor <= b:
                spans.append(span(period, cursor))
                cursor = shift(period, cursor, 1)
            return spans, True
        return [span(period, period_start(period, parse_date(text, today)))], False
    except (OverflowError, ValueError):
        raise bad_date(text) from None


def range_bounds(text: str, today: date) -> tuple[date, date]:
    m = _LAST.fullmatch(text)
    if m:
        n = int(m[2])
        if n < 1:
            raise bad_date(text)
        if m[1] == "last":
            return today - timedelta(days=n - 1), today
        return today - timedelta(days=n), today - timedelta(days=1)
    if "," not in text:
        raise bad_range(text)
    first, _, second = text.partition(",")
    a, b = parse_date(first, today), parse_date(second, today)
    if a > b:
        raise ApiError(f"The date range '{text}' is invalid: the start is after the end.")
    return a, b
