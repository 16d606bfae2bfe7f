"""Formatting helpers shared by the health checks and the runner (plain text, no flags)."""

from __future__ import annotations


def line(text: str, limit: int = 240) -> str:
    """`text` on one line, cut to `limit` characters."""
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "\u2026"


def seconds_text(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
