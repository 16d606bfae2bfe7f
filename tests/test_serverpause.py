"""The server pause: Matomo's Retry-After, kept per profile and shared by every process."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from matokit.errors import ServerPausedError
from matokit.serverpause import MAX_PAUSE, Pause, ServerPause

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "default" / "server-pause.json"


def test_retry_after_pauses_until_its_end_and_says_when(path: Path) -> None:
    clock = Clock()
    pause = ServerPause(path, clock=clock)
    pause.check()  # nothing recorded: no pause
    pause.record(30, status=429, method="tracking")
    clock.now += 29
    with pytest.raises(ServerPausedError) as info:
        pause.check()
    error = info.value
    assert error.until == T0 + 30 and error.retry_after == 1
    assert "2023-11-14 22:13:20 UTC (HTTP 429 with Retry-After)" in error.message
    assert "no requests before 2023-11-14 22:13:50 UTC" in error.message
    assert error.hint and "queue flush" in error.hint
    clock.now += 1
    pause.check()
    assert pause.current() is None


def test_pause_file_is_private_and_readable_by_another_process(path: Path) -> None:
    ServerPause(path, clock=Clock()).record(60, status=503)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    code = (
        "import sys; from matokit.serverpause import ServerPause; "
        f"p = ServerPause(sys.argv[1], clock=lambda: {T0 + 10}).current(); "
        "print(p.until, p.status)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(T0 + 60), "503"]


@pytest.mark.parametrize(
    ("first", "second", "expected_until"),
    [
        (60, 10, T0 + 60),  # a shorter pause never cuts a longer one short
        (10, 60, T0 + 60),  # a longer one extends it
        (60, 0, T0 + 60),  # Retry-After: 0 changes nothing
    ],
)
def test_the_later_end_wins(path: Path, first: float, second: float, expected_until: float) -> None:
    clock = Clock()
    pause = ServerPause(path, clock=clock)
    pause.record(first, status=429)
    pause.record(second, status=429)
    current = pause.current()
    assert current is not None and current.until == expected_until


def test_absurd_retry_after_is_capped_at_one_hour(path: Path) -> None:
    pause = ServerPause(path, clock=Clock())
    recorded = pause.record(30 * 86400, status=429)
    assert recorded is not None and recorded.until == T0 + MAX_PAUSE == T0 + 3600


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"format": 99, "until": 1e12, "recorded_at": 0}',
        '{"format": 1, "until": "soon", "recorded_at": 0}',
        '{"format": 1, "until": true, "recorded_at": 0}',
        # an end far beyond the cap: a damaged file or a clock set back, never a week's block
        json.dumps({"format": 1, "until": T0 + 7 * 86400, "recorded_at": T0}),
    ],
)
def test_damaged_or_impossible_file_is_no_pause_and_is_replaced(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(content)
    pause = ServerPause(path, clock=Clock())
    assert pause.current() is None
    pause.record(5, status=429)
    assert pause.current() == Pause(T0 + 5, T0, 429, None)


def test_as_dict_has_the_end_and_the_seconds_left(path: Path) -> None:
    recorded = ServerPause(path, clock=Clock()).record(30, status=429, method="tracking")
    assert recorded is not None
    assert recorded.as_dict(T0 + 10) == {
        "until": T0 + 30,
        "recorded_at": T0,
        "status": 429,
        "method": "tracking",
        "remaining": 20.0,
    }
