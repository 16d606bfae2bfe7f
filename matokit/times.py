"""Moments in UTC for people and for machines: the one place a Unix time becomes text."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(seconds: float) -> str:
    """A moment for people: `2026-01-31 12:00:00 UTC`."""
    return _format(seconds, "%Y-%m-%d %H:%M:%S UTC")


def utc_iso(seconds: float) -> str:
    """A moment for machines, ISO 8601 to the second: `2026-01-31T12:00:00Z`."""
    return _format(seconds, "%Y-%m-%dT%H:%M:%SZ")


def _format(seconds: float, pattern: str) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime(pattern)
    except (OverflowError, OSError, ValueError):
        return repr(seconds)  # beyond what a datetime holds (a hostile `cdt`): say it as given
