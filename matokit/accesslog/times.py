"""Times of access-log lines, to Unix seconds (UTC), from the zone the line itself gives.

Common Log Format times (`10/Oct/2000:13:55:36 -0700`) are parsed by slicing, with caches of
whole stamps and of days: consecutive lines mostly share a second, so most lines cost one dict
lookup. The machine's time zone is never used.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from typing import Final

MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_CACHE_LIMIT: Final = 50_000
_ZONE = re.compile(r"^([+-])(\d\d):?(\d\d)$")

_stamps: dict[str, int] = {}
_days: dict[str, int] = {}
_zones: dict[str, int] = {}


def clf_time(text: str) -> int:
    """`dd/Mon/yyyy:HH:MM:SS +zzzz` as Unix seconds; ValueError when it is not one."""
    try:
        return _stamps[text]
    except KeyError:
        pass
    if len(_stamps) >= _CACHE_LIMIT:
        _stamps.clear()
    value = _stamps[text] = _parse_clf(text)
    return value


def _parse_clf(text: str) -> int:
    if len(text) != 26 or text[11] != ":" or text[20] != " ":
        raise ValueError(f"not a Common Log Format time: {text!r}")
    day = _day(text[:11])
    hours, minutes, seconds = text[12:14], text[15:17], text[18:20]
    if text[14] != ":" or text[17] != ":" or not (hours + minutes + seconds).isdigit():
        raise ValueError(f"not a Common Log Format time: {text!r}")
    h, m, s = int(hours), int(minutes), int(seconds)
    if h > 23 or m > 59 or s > 60:
        raise ValueError(f"not a valid time of day: {text!r}")
    return day + h * 3600 + m * 60 + s - zone_offset(text[21:])


def _day(text: str) -> int:
    """`dd/Mon/yyyy` as Unix seconds at 00:00 UTC."""
    try:
        return _days[text]
    except KeyError:
        pass
    if text[2] != "/" or text[6] != "/" or not (text[:2] + text[7:]).isdigit():
        raise ValueError(f"not a Common Log Format date: {text!r}")
    month = MONTHS.get(text[3:6])
    if month is None:
        raise ValueError(f"unknown month in {text!r}")
    year, day = int(text[7:]), int(text[:2])
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ValueError(f"no such day: {text!r}")
    if len(_days) >= _CACHE_LIMIT:
        _days.clear()
    value = _days[text] = calendar.timegm((year, month, day, 0, 0, 0))
    return value


def zone_offset(text: str) -> int:
    """`+0200`, `-07:00`, `Z` or `UTC` as seconds east of UTC; ValueError otherwise."""
    try:
        return _zones[text]
    except KeyError:
        pass
    if text in ("Z", "UTC", "GMT", ""):
        value = 0
    else:
        match = _ZONE.match(text)
        if match is None:
            raise ValueError(f"not a time zone offset: {text!r}")
        sign, hours, minutes = match.groups()
        value = (int(hours) * 3600 + int(minutes) * 60) * (-1 if sign == "-" else 1)
        if abs(value) > 18 * 3600:
            raise ValueError(f"time zone offset out of range: {text!r}")
    _zones[text] = value
    return value


def iso_time(text: str) -> int:
    """ISO 8601 (`2024-05-01T10:00:00+02:00`, `...Z`, fractions); UTC when it has no zone."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def any_time(text: str, zone: str | None = None) -> int:
    """A log time in any form MatoKit knows: CLF, ISO 8601, or Unix seconds (`msec`).

    `zone` (a separate `+0200` field) applies to a time that gives none itself.
    """
    text = text.strip()
    if len(text) == 26 and text[11] == ":":
        return clf_time(text)
    if len(text) == 20 and text[11] == ":" and zone is not None:
        return clf_time(f"{text} {zone}")
    if text.replace(".", "", 1).isdigit():
        return int(float(text))
    seconds = iso_time(text.replace(" ", "T", 1) if "T" not in text else text)
    if zone is not None and not _has_zone(text):
        seconds -= zone_offset(zone)
    return seconds


def strptime_time(text: str, fmt: str, zone: str | None = None) -> int:
    """`text` read with a strptime format; UTC unless it (`%z`) or `zone` gives a zone."""
    moment = datetime.strptime(text.strip(), fmt)
    if moment.tzinfo is None:
        offset = zone_offset(zone) if zone else 0
        return calendar.timegm(moment.timetuple()) - offset
    return int(moment.timestamp())


def _has_zone(text: str) -> bool:
    tail = text[10:]
    return tail.endswith("Z") or "+" in tail or tail.count("-") > 0
