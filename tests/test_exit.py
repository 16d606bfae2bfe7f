"""The exit-code table of ../shared/cli.md, and the one mapping from errors to codes."""

from __future__ import annotations

import signal

import pytest

from matokit import errors
from matokit.cli.exit import ExitCode, exit_code_for
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
    (errors.NotFoundError("x"), 65),
    (errors.InvalidRequestError("x"), 65),
    (errors.RejectedHitError("x"), 65),
    (errors.RateLimitedError("x", retry_after=3), 69),
    (errors.ServerPausedError("x", until=3, retry_after=3), 69),
    (errors.UnavailableError("x"), 69),
    (errors.ProtocolError("x"), 69),
    (RuntimeError("bug"), 1),
    (KeyboardInterrupt(), 130),
    (Interrupted(signal.SIGINT), 130),
    (Interrupted(signal.SIGTERM), 143),
]


@pytest.mark.parametrize(("error", "code"), TABLE, ids=[type(e).__name__ for e, _ in TABLE])
def test_exit_code_for(error, code):
    assert exit_code_for(error) == code


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
