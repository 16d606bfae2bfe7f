"""`matokit queue migrate`: output, exit codes, bad destinations (in process)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from matokit.cli.exit import ExitCode, migrate_exit_code
from matokit.journal import Journal, NewHit
from matokit.journal.migrate import MigrationResult
from tests.clirunner import invoke


@pytest.fixture
def journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATOKIT_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "data" / "default" / "journal.sqlite"
    with Journal(path) as journal:
        journal.enqueue([NewHit(f"k{i}", {"idsite": "1"}, time.time() - i) for i in range(5)])
        (claimed,) = journal.claim("x", limit=1, lease_seconds=60)
        journal.kill([(claimed.id, "HTTP 400")])
        journal.record_flush({"delivered": 1})
    return path


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (MigrationResult("a", "b", moved=5), ExitCode.OK),
        (MigrationResult("a", "b", source_exists=False), ExitCode.OK),
        (MigrationResult("a", "b", moved=5, left=2), ExitCode.TEMPFAIL),
        (MigrationResult("a", "b", moved=5, stopped=True), ExitCode.TEMPFAIL),
        (None, ExitCode.TEMPFAIL),  # a flush held a lock: nothing moved, try again
    ],
)
def test_migrate_exit_code(result: MigrationResult | None, code: int) -> None:
    assert migrate_exit_code(result) == code


def test_migrate_to_a_file_in_text_and_json(
    capsys: pytest.CaptureFixture[str],
    journal_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = tmp_path / "other" / "journal.sqlite"
    text = invoke(capsys, "queue", "migrate", "--to", f"sqlite:{other}")
    assert text.code == 0, text.stderr
    assert text.stdout == ""
    assert text.stderr.splitlines() == [
        f"matokit: moved 5 hit(s) from {journal_file} to {other} (1 dead, 4 pending); "
        "0 delivered key(s), 1 flush record(s) and 0 site record(s) copied.",
        f"matokit: the source is empty. A profile uses it as its DATA_DIR/journal.sqlite "
        f"(here {journal_file}).",
    ]
    back = invoke(capsys, "queue", "migrate", "--to", f"sqlite:{journal_file}", "--format", "json")
    assert back.code == 2, back  # the profile's own file is the source
    monkeypatch.setenv("MATOKIT_DATA_DIR", str(other.parent.parent))
    os.rename(other.parent, other.parent.parent / "default")
    moved = invoke(capsys, "queue", "migrate", "--to", f"sqlite:{journal_file}", "--format", "json")
    assert moved.code == 0, moved.stderr
    view = json.loads(moved.stdout)
    assert view["moved"] == 5 and view["complete"] is True
    assert view["by_state"] == {"dead": 1, "pending": 4}
    assert view["profile"] == "default"


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("sqlite", "the journal is already at"),
        ("ftp://user:topsecret9@host/", "--to ftp://host/ must start with redis://"),
        ("redis://:topsecret9@/0", "names no host"),
    ],
)
def test_bad_destinations_exit_2_without_showing_a_password(
    capsys: pytest.CaptureFixture[str], journal_file: Path, to: str, message: str
) -> None:
    result = invoke(capsys, "queue", "migrate", "--to", to)
    assert result.code == 2, result
    assert message in result.stderr
    assert "topsecret9" not in result.stdout + result.stderr
    with Journal(journal_file) as journal:
        assert journal.stats().total == 5


def test_without_a_journal_nothing_moves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATOKIT_DATA_DIR", str(tmp_path / "empty"))
    result = invoke(capsys, "queue", "migrate", "--to", f"sqlite:{tmp_path / 'j.sqlite'}")
    assert result.code == 0, result
    assert "does not exist: nothing to move" in result.stderr
    assert not (tmp_path / "j.sqlite").exists()


def test_to_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(capsys, "queue", "migrate")
    assert result.code == 2
    assert "--to" in result.stderr
