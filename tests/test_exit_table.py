"""README's exit-code table, row by row, for every command it applies to (in-process, fast).

Each row sets up one situation (a bad flag value, a bad environment value, Matomo refusing the
data, Matomo down, a refused token, no Matomo at the URL) and runs every command in it; the
expected code comes from the table, and `health` from the monitoring-plugin convention.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from matokit.cli import output
from matokit.cli.exit import ExitCode
from tests.clirunner import Result, invoke
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo, Fault

GOOD_LINE = '{"type": "event", "category": "c", "action": "a"}\n'
BAD_TOKEN = "0badc0de" * 4
# Matomo checks the token of a tracking request only for hits older than 24 h.
OLD = str(int(time.time()) - 2 * 86400)
OLD_LINE = json.dumps({"type": "event", "category": "c", "action": "a", "at": OLD}) + "\n"

# Every command, as an operator runs it: argv and stdin.
COMMANDS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "track": (("track", "event", "--category", "c", "--action", "a"), None),
    "import": (("track", "import", "-"), GOOD_LINE),
    "queue flush": (("queue", "flush"), None),
    "queue status": (("queue", "status"), None),
    "report": (("report", "visits"), None),
    "api": (("api", "API.getMatomoVersion"), None),
    "config show": (("config", "show"), None),
    "cache stats": (("cache", "stats"), None),
    "health": (("health", "--check", "config,queue"), None),
    "setup": (("setup", "exactly-once"), None),
}


@dataclass(frozen=True)
class Row:
    """One row of the table: a situation and the code each command exits with in it."""

    name: str
    codes: dict[str, int]
    env: dict[str, str] | None = None
    fault: Fault | None = None
    global_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    # Replaces a command's argv and stdin in this row (the data a row needs).
    argv: dict[str, tuple[tuple[str, ...], str | None]] | None = None
    # The hit `queue flush` finds in the journal is older than 24 h.
    old_queued_hit: bool = False


ALL = tuple(COMMANDS)

ROWS = [
    Row("0 success", {name: 0 for name in ALL}),
    # A value given on the command line that is invalid: 2 (health: UNKNOWN, 3).
    Row(
        "2 bad value of a command's flag",
        {name: 3 if name == "health" else 2 for name in ALL},
        extra_args=("--format", "JSON"),
    ),
    Row(
        "2 bad value of a global flag",
        {name: 3 if name == "health" else 2 for name in ALL},
        global_args=("--site", "abc"),
    ),
    Row(
        "2 unknown flag",
        {name: 3 if name == "health" else 2 for name in ALL},
        extra_args=("--no-such-flag",),
    ),
    # The same bad value from the environment: 78 (health: the config check is CRITICAL).
    Row(
        "78 bad value in the environment",
        {name: 2 if name == "health" else 78 for name in ALL},
        env={"MATOKIT_TIMEOUT": "soon"},
    ),
    Row(
        "78 no Matomo at the URL (HTTP 404)",
        {"track": 78, "import": 78, "queue flush": 78, "report": 78, "api": 78, "setup": 78},
        fault=Fault(endpoint="any", status=404),
    ),
    Row(
        "65 data rejected",
        {"track": 65, "import": 65, "report": 65, "api": 65, "setup": 65},
        argv={
            "track": (("track", "goal", "--goal", "99"), None),  # Matomo refuses the hit
            "import": (("track", "import", "-"), "{oops\n" + GOOD_LINE),  # an invalid line
            "report": (("report", "visits", "--site", "99"), None),  # no such site
            "api": (("api", "Nope.getNothing"), None),  # Matomo knows no such method
            "setup": (("setup", "exactly-once", "--site", "99"), None),  # no such site
        },
    ),
    Row(
        "69 Matomo unavailable, nothing queued",
        {"report": 69, "api": 69, "setup": 69},
        fault=Fault(endpoint="api", status=500, body="Internal Server Error"),
    ),
    Row(
        "74 local storage unusable",
        {"track": 74, "import": 74},
        env={"MATOKIT_DATA_DIR": "/dev/null/matokit"},  # not a directory
        argv={"track": (("track", "event", "--category", "c", "--action", "a", "--queue"), None)},
    ),
    Row(
        "75 hits queued for retry",
        {"track": 75, "import": 75, "queue flush": 75},
        fault=Fault(endpoint="tracking", status=503, retry_after="3600"),
    ),
    Row(
        "77 token refused",
        {"track": 77, "import": 77, "queue flush": 77, "report": 77, "api": 77, "setup": 77},
        env={"MATOMO_TOKEN": BAD_TOKEN},
        argv={
            "track": (("track", "event", "--category", "c", "--action", "a", "--at", OLD), None),
            "import": (("track", "import", "-"), OLD_LINE),
        },
        old_queued_hit=True,
    ),
]

CASES = [(row, name) for row in ROWS for name in row.codes]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, fake_matomo: FakeMatomo, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Result]]:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)

    def go(*args: str, stdin: str | None = None) -> Result:
        output._consoles.clear()  # rich consoles bind the (captured) stdout they were made with
        return invoke(capsys, *args, stdin=stdin)

    yield go
    output._consoles.clear()


@pytest.mark.parametrize(("row", "command"), CASES, ids=[f"{r.name} | {c}" for r, c in CASES])
def test_every_command_exits_with_the_code_of_the_table(
    run: Callable[..., Result],
    fake_matomo: FakeMatomo,
    monkeypatch: pytest.MonkeyPatch,
    row: Row,
    command: str,
) -> None:
    if command == "queue flush":
        at = ("--at", OLD) if row.old_queued_hit else ()
        queued = run("track", "event", "--category", "c", "--action", "queued", "--queue", *at)
        assert queued.code == 0, queued
    for name, value in (row.env or {}).items():
        monkeypatch.setenv(name, value)
    if row.fault is not None:
        fake_matomo.add_fault(row.fault)
    argv, stdin = (row.argv or {}).get(command, COMMANDS[command])
    result = run(*row.global_args, *argv, *row.extra_args, stdin=stdin)
    assert result.code == row.codes[command], result
    assert "Traceback" not in result.stderr


def test_readme_table_lists_every_exit_code_and_only_those() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}
