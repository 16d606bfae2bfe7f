"""The exit-code table (README; cli.md of the reference) and the one error-to-code mapping."""

from __future__ import annotations

import signal

import pytest

from matokit import errors
from matokit.cli import command_of
from matokit.cli.exit import (
    ExitCode,
    exit_code_for,
    flush_exit_code,
    import_exit_code,
    track_exit_code,
    usage_exit_code,
    worst_exit_code,
)
from matokit.delivery import FlushResult, ImportResult, TrackOutcome, TrackState
from matokit.exactlyonce.dimension import DimensionUnavailable
from matokit.exactlyonce.setup import KeyDimensionError
from matokit.flushrecord import StopReason
from matokit.stopping import Interrupted
from tests.clirunner import invoke

TABLE = [
    (errors.ConfigError("x"), 78),
    (errors.InsecurePermissionsError("x"), 78),
    (errors.InsecureURLError("x"), 78),
    (errors.UsageError("x"), 2),
    (errors.DataError("x"), 65),
    (errors.HitValidationError("x", field="idsite"), 65),
    (errors.UnknownEntryError("x"), 65),
    (errors.AmbiguousEntryError("x"), 65),
    (errors.StorageError("x"), 74),
    (errors.JournalCorruptError("x"), 74),
    (errors.FlushInProgressError("x"), 0),
    (errors.FlushWaitTimeoutError("x"), 75),
    (errors.AuthenticationError("x"), 77),
    (errors.TokenCoolDownError("x", rejected_at=0, until=1), 77),
    (errors.PermissionDeniedError("x"), 77),
    (errors.LockedOutError("x"), 77),
    (errors.NoMatomoError("x"), 78),  # HTTP 404: no Matomo at the configured URL
    (errors.NotFoundError("x"), 65),  # Matomo: no such method or plugin
    (errors.InvalidRequestError("x"), 65),
    (errors.RejectedHitError("x"), 65),
    (errors.RateLimitedError("x", retry_after=3), 69),
    (errors.ServerPausedError("x", until=3, retry_after=3), 69),
    (errors.UnavailableError("x"), 69),
    (errors.ProtocolError("x"), 69),
    (DimensionUnavailable("x", site=1, reason="x", kind="no_view_access"), 77),
    (DimensionUnavailable("x", site=1, reason="x", kind="plugin_disabled"), 78),
    (KeyDimensionError("x", site=1), 78),
    (RuntimeError("bug"), 1),
    (KeyboardInterrupt(), 130),
    (Interrupted(signal.SIGINT), 130),
    (Interrupted(signal.SIGTERM), 143),
]


@pytest.mark.parametrize(("error", "code"), TABLE, ids=[type(e).__name__ for e, _ in TABLE])
def test_exit_code_for(error, code):
    assert exit_code_for(error) == code


@pytest.mark.parametrize(("error", "code"), TABLE, ids=[type(e).__name__ for e, _ in TABLE])
def test_under_health_every_error_is_unknown_but_a_signal(error, code):
    expected = code if isinstance(error, KeyboardInterrupt | Interrupted) else 3
    assert exit_code_for(error, command="health") == expected


@pytest.mark.parametrize(
    ("failures", "code"),
    [
        ([], 0),
        ([errors.UnavailableError("x")], 69),
        ([errors.UnavailableError("x"), KeyDimensionError("x", site=2)], 78),
        ([KeyDimensionError("x", site=1), errors.PermissionDeniedError("x")], 77),
        ([errors.PermissionDeniedError("x"), RuntimeError("bug")], 1),
    ],
)
def test_worst_exit_code_is_the_most_urgent_failure(failures, code):
    assert worst_exit_code(failures) == code


def test_click_usage_errors_are_2_and_unknown_under_health():
    assert usage_exit_code("report") == 2
    assert usage_exit_code("") == 2
    assert usage_exit_code("health") == 3


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["health", "--bogus"], "health"),
        (["--bogus", "health"], "health"),
        (["--profile", "health", "track", "event"], "track"),
        (["--site=3", "-v", "health"], "health"),
        (["--url", "https://x/", "--", "report"], "report"),
        (["--debug"], ""),
        ([], ""),
    ],
)
def test_command_of_finds_the_command_group_without_parsing(args, command):
    assert command_of(args) == command


def _outcome(state: TrackState, error: errors.MatokitError | None = None) -> TrackOutcome:
    return TrackOutcome("k", state, "m", error)


TRACK_TABLE = [
    (_outcome(TrackState.DELIVERED), 0),
    (_outcome(TrackState.DUPLICATE), 0),
    (_outcome(TrackState.UNCONFIRMED), 0),
    (_outcome(TrackState.QUEUED), 0),  # --queue
    (_outcome(TrackState.REJECTED, errors.RejectedHitError("x")), 65),
    (_outcome(TrackState.QUEUED, errors.UnavailableError("x")), 75),
    (_outcome(TrackState.QUEUED, errors.RateLimitedError("x")), 75),
    (_outcome(TrackState.QUEUED, errors.ProtocolError("x")), 75),
    (_outcome(TrackState.QUEUED, errors.AuthenticationError("x")), 77),
    (_outcome(TrackState.QUEUED, errors.PermissionDeniedError("x")), 77),
    (_outcome(TrackState.QUEUED, errors.NoMatomoError("x")), 78),
]


@pytest.mark.parametrize(("outcome", "code"), TRACK_TABLE)
def test_track_exit_code(outcome, code):
    assert track_exit_code(outcome) == code


def _flush(*, stopped_reason: str = "done", **fields: object) -> FlushResult:
    result = FlushResult(started_at=0.0, stopped_reason=StopReason(stopped_reason))
    for name, value in fields.items():
        setattr(result, name, value)
    return result


FLUSH_TABLE = [
    ("nothing due", _flush(stopped_reason="nothing_due"), 0),
    ("all sent", _flush(delivered=3), 0),
    ("refused hits are dead letters, nothing due", _flush(rejected=2, dead=2), 0),
    ("not due yet", _flush(remaining_queued=4), 0),
    ("outage", _flush(stopped_reason="unavailable", remaining_due=3, remaining_queued=3), 75),
    ("max time", _flush(stopped_reason="max_time", remaining_queued=1), 75),
    ("token refused", _flush(stopped_reason="auth_failed", remaining_due=3), 77),
    ("locked out", _flush(stopped_reason="locked_out"), 77),
    ("no matomo", _flush(stopped_reason="error", error=errors.NoMatomoError("x")), 78),
    ("storage", _flush(stopped_reason="error", error=errors.StorageError("x")), 74),
]


@pytest.mark.parametrize(("case", "result", "code"), FLUSH_TABLE, ids=[c[0] for c in FLUSH_TABLE])
def test_flush_exit_code(case, result, code):
    assert flush_exit_code(result) == code


IMPORT_TABLE = [
    ("all sent", ImportResult(read=2, added=2, flush=_flush(delivered=2)), False, 0),
    ("--queue", ImportResult(read=2, added=2, queued=2), True, 0),
    ("invalid lines, without --strict", ImportResult(read=3, invalid=1, flush=_flush()), False, 65),
    ("Matomo refused hits", ImportResult(read=2, flush=_flush(rejected=1)), False, 65),
    (
        "queued for retry beats invalid lines",
        ImportResult(read=3, invalid=1, queued=2, flush=_flush(stopped_reason="unavailable")),
        False,
        75,
    ),
    (
        "token refused beats everything",
        ImportResult(read=3, invalid=1, queued=2, flush=_flush(stopped_reason="auth_failed")),
        False,
        77,
    ),
    (
        "no Matomo at the URL",
        ImportResult(
            read=1,
            queued=1,
            flush=_flush(stopped_reason="error", error=errors.NoMatomoError("x")),
        ),
        False,
        78,
    ),
]


@pytest.mark.parametrize(
    ("case", "result", "queue", "code"), IMPORT_TABLE, ids=[c[0] for c in IMPORT_TABLE]
)
def test_import_exit_code(case, result, queue, code):
    assert import_exit_code(result, queue=queue) == code


def test_codes_match_the_contract():
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "INTERNAL": 1,
        "USAGE": 2,
        "DATA": 65,
        "UNAVAILABLE": 69,
        "IOERR": 74,
        "TEMPFAIL": 75,
        "NOPERM": 77,
        "CONFIG": 78,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
    }


def _boom(settings):
    raise RuntimeError("kaput")


def test_unexpected_error_exits_1_with_one_line_and_debug_hint(capsys, monkeypatch):
    monkeypatch.setattr("matokit.profiles.describe_settings", _boom)
    result = invoke(capsys, "config", "show")
    assert result.code == 1
    assert "rerun with --debug" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setattr("matokit.profiles.describe_settings", _boom)
    result = invoke(capsys, "--debug", "config", "show")
    assert result.code == 1
    assert "Traceback" in result.stderr and "kaput" in result.stderr


def test_ctrl_c_exits_130(capsys, monkeypatch):
    def interrupt(settings):
        raise KeyboardInterrupt

    monkeypatch.setattr("matokit.profiles.describe_settings", interrupt)
    assert invoke(capsys, "config", "show").code == 130


def test_sigterm_stopping_at_once_exits_143_and_says_so(capsys, monkeypatch):
    def terminate(settings):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr("matokit.profiles.describe_settings", terminate)
    result = invoke(capsys, "config", "show")
    assert result.code == 143
    assert "matokit: interrupted by SIGTERM" in result.stderr
    assert "Traceback" not in result.stderr
