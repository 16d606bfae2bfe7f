"""Durations as people write them: `90s`, `15m`, `6h`, `7d`, or plain seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
# The longest duration accepted anywhere (10 years): far beyond any sensible setting, and far
# below what timers (threading's TIMEOUT_MAX) and dates (datetime's year 9999) can hold.
MAX_DURATION = 3650 * 86400.0
MAX_DURATION_TEXT = "3650d"


def parse_duration(text: str | float | int) -> float:
    """Return seconds for `text`; raise ValueError naming the accepted forms and the maximum."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        if not 0 <= text < float("inf"):
            raise ValueError(f"{text!r} is not a duration (a number of seconds, at least 0)")
        return _bounded(float(min(text, MAX_DURATION + 1)), text)
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 6h, 7d)")
    number, unit = match.groups()
    return _bounded(float(number) * _UNITS[(unit or "s").lower()], text)


def _bounded(seconds: float, text: object) -> float:
    if seconds > MAX_DURATION:
        raise ValueError(
            f"{text!r} is longer than the maximum duration, {MAX_DURATION_TEXT} (10 years)"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: `45s`, `12m`, `3h 5m`, `2d 4h`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, _ = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
