"""Matomo data is hostile input: markup, terminal escapes, RTL text and formulas in every format.

The fake server serves tests/fixtures/hostile_hits.jsonl (what any visitor of a tracked site
can send). Human output (table, chart, text) shows the texts, escapes their control
characters and never reads them as rich markup; json, ndjson and csv keep them intact;
`--csv-safe` defuses formulas.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.fakematomo import SUPERUSER_TOKEN

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hostile_hits.jsonl"
HITS = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
TITLES = [h["action_name"] for h in HITS if "action_name" in h]
# What must never reach a terminal raw: ESC, BEL, the 8-bit CSI, a bidi override.
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\r")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _decoded(text: str) -> str:
    # run_matokit decodes stdout in universal-newline mode: a CR inside a quoted cell reads as LF.
    return text.replace("\r", "\n")


@pytest.fixture
def hostile(fake_matomo):
    assert fake_matomo.load_hits(FIXTURE) == len(HITS)
    return {"MATOMO_URL": fake_matomo.url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN}


def _assert_human(text: str) -> None:
    for char in RAW_CONTROLS:
        assert char not in text, f"raw {char!r} in human output:\n{text!r}"


@pytest.mark.parametrize(
    "args",
    [
        ["report", "page-titles"],
        ["report", "page-titles", "--chart", "--columns", "nb_hits"],
        ["report", "events"],
        ["report", "event-names"],
        ["report", "summary"],
        ["report", "live"],
    ],
    ids=["table", "chart", "events", "event-names", "summary", "live"],
)
def test_human_output_shows_data_as_text_with_controls_escaped(run_matokit, hostile, args):
    result = run_matokit(*args, "--no-cache", env=hostile)
    assert result.code == 0, result
    _assert_human(result.stdout)
    assert "internal error" not in result.stderr


def test_table_shows_markup_literally_and_escapes_terminal_sequences(run_matokit, hostile):
    result = run_matokit("report", "page-titles", "--no-cache", env=hostile)
    assert result.code == 0, result
    out = result.stdout
    assert "[/]" in out and "[bold red]x[/]" in out  # markup shown, not interpreted
    assert "evil\\x1b]0;PWNED\\x07\\x1b[31mRED" in out  # OSC, BEL and CSI shown escaped
    assert "clear\\x1b[2J\\x1b[H\\x9b31mC1" in out
    assert "invoice\\u202efdp.exe" in out  # the bidi override is visible
    assert "line1\\nline2\\rline3\\tend" in out  # one row, not three lines
    assert "שלום עולם مرحبا" in out  # RTL text itself is data, shown as is
    assert '=HYPERLINK("http://evil.example/","click")' in out


def test_chart_labels_escape_terminal_sequences(run_matokit, hostile):
    result = run_matokit(
        "report", "page-titles", "--chart", "--columns", "nb_hits", "--no-cache", env=hostile
    )
    assert result.code == 0, result
    assert "evil\\x1b]0;PWNED\\x07" in result.stdout
    assert "[bold red]x[/]" in result.stdout


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_machine_formats_keep_the_data_intact(run_matokit, hostile, fmt):
    result = run_matokit("report", "page-titles", "--format", fmt, "--no-cache", env=hostile)
    assert result.code == 0, result
    if fmt == "json":
        labels = [row["label"] for row in json.loads(result.stdout)]
    elif fmt == "ndjson":
        labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
        labels = [row["label"] for row in rows]
        assert sorted(labels) == sorted(_decoded(t) for t in TITLES)
        return
    assert sorted(labels) == sorted(TITLES)  # byte for byte: escapes, formulas, RTL


def test_csv_safe_defuses_formulas_and_nothing_else(run_matokit, hostile):
    plain = run_matokit("report", "page-titles", "--format", "csv", "--no-cache", env=hostile)
    safe = run_matokit(
        "report", "page-titles", "--format", "csv", "--csv-safe", "--no-cache", env=hostile
    )
    assert plain.code == 0 and safe.code == 0, (plain, safe)
    labels = [r["label"] for r in csv.DictReader(io.StringIO(safe.stdout, newline=""))]
    expected = [_decoded("'" + t if t.startswith(FORMULA_START) else t) for t in TITLES]
    assert sorted(labels) == sorted(expected)
    assert '\'=HYPERLINK("http://evil.example/","click")' in labels
    assert "[bold red]x[/]" in labels
    # The profile key (here its environment variable) does the same.
    by_env = run_matokit(
        "report", "page-titles", "--format", "csv", "--no-cache",
        env={**hostile, "MATOKIT_CSV_SAFE": "1"},
    )  # fmt: skip
    assert by_env.code == 0 and by_env.stdout == safe.stdout, by_env


def test_summary_csv_safe_covers_event_names(run_matokit, hostile):
    result = run_matokit("report", "summary", "--format", "csv", "--csv-safe", env=hostile)
    assert result.code == 0, result
    cells = [c for row in csv.reader(io.StringIO(result.stdout, newline="")) for c in row]
    assert not [c for c in cells if c.startswith(FORMULA_START)], cells


def test_markup_in_the_url_is_text_in_config_show_and_health(run_matokit, fake_matomo):
    env = {"MATOMO_URL": fake_matomo.url + "[/]/", "MATOMO_SITE_ID": "1"}
    shown = run_matokit("config", "show", env=env)
    assert shown.code == 0, shown
    assert "[/]" in shown.stdout
    health = run_matokit(
        "--url", "http://127.0.0.1:9/[bold red]x[/]/", "health", env={"MATOMO_TOKEN": "x" * 32}
    )
    # Connection refused: CRITICAL (2), never an internal error read as WARNING (1).
    assert health.code == 2, health
    assert "http://127.0.0.1:9/[bold red]x[/]/" in health.stdout
    assert "internal error" not in health.output
