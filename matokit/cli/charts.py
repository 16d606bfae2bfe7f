"""Terminal charts as plain text: horizontal bars and a sparkline, in unicode block characters.

Pure functions that return strings (no rich, no terminal queries), so they are tested as text
and work in any pager, log or CI output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from matokit.sanitize import printable

_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
_SPARKS = "▁▂▃▄▅▆▇█"


def bar(value: float, peak: float, width: int) -> str:
    """A bar of `width` cells at most, with eighth-cell precision; empty for 0."""
    if peak <= 0 or value <= 0 or width <= 0:
        return ""
    eighths = round(min(value, peak) / peak * width * 8)
    eighths = max(eighths, 1)  # a positive value always shows
    full, rest = divmod(eighths, 8)
    return _FULL * full + (_EIGHTHS[rest] if rest else "")


def sparkline(values: Sequence[float]) -> str:
    """One character per value, scaled between the series' minimum and maximum."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if math.isclose(high, low):
        level = 0 if high <= 0 else len(_SPARKS) - 1
        return _SPARKS[level] * len(values)
    span = high - low
    return "".join(_SPARKS[round((v - low) / span * (len(_SPARKS) - 1))] for v in values)


def bar_chart(
    pairs: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 80,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    max_label: int = 32,
) -> str:
    """Labelled horizontal bars, one line per pair, values right of the bars."""
    title = printable(title)
    if not pairs:
        return title
    labels = [_fit(label, max_label) for label, _ in pairs]
    values = [fmt(value) for _, value in pairs]
    label_w = max(len(label) for label in labels)
    value_w = max(len(v) for v in values)
    bar_w = max(8, width - label_w - value_w - 4)
    peak = max((value for _, value in pairs), default=0.0)
    lines = [title]
    for label, text, (_, value) in zip(labels, values, pairs, strict=True):
        drawn = bar(value, peak, bar_w)
        lines.append(f"{label.ljust(label_w)}  {drawn.ljust(bar_w)}  {text.rjust(value_w)}")
    return "\n".join(lines)


def series_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 80,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    total: bool = True,
) -> str:
    """A series (one value per period): bars per period and a sparkline summary line.

    `total=False` for metrics that do not add up across periods (rates, averages).
    """
    chart = bar_chart(points, title=title, width=width, fmt=fmt)
    values = [value for _, value in points]
    if not values:
        return chart
    summary = f"{sparkline(values)}  min {fmt(min(values))}  max {fmt(max(values))}"
    if total:
        summary += f"  total {fmt(sum(values))}"
    return f"{chart}\n{summary}"


def _fit(text: str, limit: int) -> str:
    # A label is data (a page title): its control characters are shown, never sent raw.
    text = printable(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
