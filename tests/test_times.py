"""The one UTC formatter (matokit/times.py): people's form and ISO 8601."""

from __future__ import annotations

import pytest

from matokit.times import utc_iso, utc_text


@pytest.mark.parametrize(
    ("seconds", "text", "iso"),
    [
        (0, "1970-01-01 00:00:00 UTC", "1970-01-01T00:00:00Z"),
        (1769860800, "2026-01-31 12:00:00 UTC", "2026-01-31T12:00:00Z"),
        (1769860800.999, "2026-01-31 12:00:00 UTC", "2026-01-31T12:00:00Z"),  # truncated
        (1e20, "1e+20", "1e+20"),  # beyond a datetime: said as given, never a traceback
        (-1e20, "-1e+20", "-1e+20"),
    ],
)
def test_utc_formats(seconds: float, text: str, iso: str) -> None:
    assert utc_text(seconds) == text
    assert utc_iso(seconds) == iso


def test_messages_say_moments_in_the_same_form() -> None:
    """The server pause and the token cool-down say moments alike."""
    from matokit.serverpause import Pause
    from matokit.tokenmemory import Rejection, cool_down_error

    noon = 1769860800.0
    pause = Pause(until=noon + 60, recorded_at=noon, status=429)
    assert "at 2026-01-31 12:00:00 UTC" in pause.describe(now=noon)
    assert "before 2026-01-31 12:01:00 UTC" in pause.describe(now=noon)
    error = cool_down_error(Rejection("h", noon, ""), until=noon + 600)
    assert "at 2026-01-31 12:00:00 UTC;" in error.message
    assert "until 2026-01-31 12:10:00 UTC," in error.message
