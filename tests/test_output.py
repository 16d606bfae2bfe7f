"""What reaches stdout and stderr: data is text (never markup or terminal commands), URLs lose
their credentials, CSV can be made formula-safe, widths follow the stream, json mode is JSON."""

from __future__ import annotations

import io
import json
import sys

import pytest

from matokit import logs
from matokit.cli import output
from matokit.cli.charts import bar_chart
from matokit.redact import display_host, display_url, redact, register_url_credentials
from matokit.sanitize import csv_safe, printable

ESC, BEL = "\x1b", "\x07"


@pytest.fixture(autouse=True)
def fresh_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets new consoles and the text stderr format."""
    monkeypatch.setattr(output, "_consoles", {})
    monkeypatch.setitem(logs._run, "format", None)
    monkeypatch.setattr(logs, "_context", {})
    monkeypatch.delenv("COLUMNS", raising=False)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (f"evil{ESC}]0;PWNED{BEL}{ESC}[31mRED", "evil\\x1b]0;PWNED\\x07\\x1b[31mRED"),
        ("8-bit \x9b31m CSI", "8-bit \\x9b31m CSI"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("invoice\u202efdp.exe", "invoice\\u202efdp.exe"),
        ("\x00\x7f", "\\x00\\x7f"),
        ("שלום עולם مرحبا", "שלום עולם مرحبا"),
        ("[bold red]x[/]", "[bold red]x[/]"),
        (None, ""),
        (12, "12"),
    ],
)
def test_printable_escapes_controls_and_keeps_text(value, shown):
    assert printable(value) == shown


def test_printable_keeps_line_breaks_of_messages_when_asked():
    assert printable(f"one\ntwo{ESC}[2J\tx", keep_newlines=True) == "one\ntwo\\x1b[2J\tx"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("plain", "plain"),
        (-5, -5),  # a number is data
        (None, None),
    ],
)
def test_csv_safe_prefixes_formula_starts(value, cell):
    assert csv_safe(value) == cell


def test_emit_csv_is_faithful_by_default_and_safe_when_asked(capsys):
    rows = [{"label": "=1+1", "n": 1}]
    output.emit_csv(rows, ["label", "n"])
    assert capsys.readouterr().out == "label,n\n=1+1,1\n"
    output.emit_csv(rows, ["label", "n"], safe=True)
    assert capsys.readouterr().out == "label,n\n'=1+1,1\n"


def test_table_shows_markup_and_escapes_controls(capsys):
    output.emit_table([{"t": "[/]"}, {"t": "[bold red]x[/]"}, {"t": f"a{ESC}[31mb"}], ["t"])
    out = capsys.readouterr().out
    assert "[/]" in out and "[bold red]x[/]" in out and "a\\x1b[31mb" in out
    assert ESC not in out


def test_chart_labels_and_title_escape_controls():
    text = bar_chart([(f"t{ESC}]0;x{BEL}", 3.0), ("[/]", 1.0)], title=f"T{ESC}[2J", width=60)
    assert ESC not in text and BEL not in text
    assert "t\\x1b]0;x\\x07" in text and "[/]" in text and text.startswith("T\\x1b[2J")


def test_piped_tables_are_never_cut(monkeypatch, capsys):
    path = "/very/long/" + "directory/" * 12 + "journal.sqlite"
    output.emit_table([{"what": "journal", "value": path}], ["what", "value"])
    out = capsys.readouterr().out
    assert path in out  # whole, on one line, though far wider than 80 columns
    assert output.console_width() == output.UNBOUNDED


def test_columns_wins_on_a_pipe(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    assert output.console("stdout").width == 50


def test_no_color_on_a_terminal_means_no_ansi_at_all(monkeypatch):
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    output.emit_table([{"a": "x"}], ["a"], title="T")
    assert ESC not in tty.getvalue()
    assert "x" in tty.getvalue()


def test_a_terminal_without_no_color_gets_styles(monkeypatch):
    # The control case of the test above: the header is bold on a terminal.
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "xterm-256color")
    output.emit_table([{"a": "x"}], ["a"])
    assert ESC in tty.getvalue()


def test_say_escapes_controls_in_text_mode(capsys):
    output.error_line(f"Matomo said {ESC}]0;x{BEL}", "fix it")
    err = capsys.readouterr().err
    assert err == "matokit: error: Matomo said \\x1b]0;x\\x07\n  hint: fix it\n"


def test_say_writes_one_json_object_with_context_in_json_mode(capsys):
    logs.setup_logging(fmt="json", context={"profile": "shop", "command": "report"})
    try:
        output.error_line("Cannot connect to 127.0.0.1:9.", "check the URL")
        output.say("matokit: warning: 2 hits were dead")
        output.say("no data for pages on site 1")
    finally:
        logs.setup_logging(fmt="text")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(x["level"], x["message"]) for x in lines] == [
        ("error", "Cannot connect to 127.0.0.1:9."),
        ("warning", "2 hits were dead"),
        ("info", "no data for pages on site 1"),
    ]
    assert lines[0]["hint"] == "check the URL"
    assert all(x["profile"] == "shop" and x["command"] == "report" for x in lines)
    assert all(x["ts"].endswith("Z") and x["logger"] == "matokit" for x in lines)


@pytest.mark.parametrize(
    ("url", "shown", "host"),
    [
        ("https://bob:hunter2@m.example:8443/x/", "https://m.example:8443/x/", "m.example:8443"),
        ("https://bob@m.example/", "https://m.example/", "m.example"),
        ("https://m.example/", "https://m.example/", "m.example"),
        ("http://a:b@c@127.0.0.1:9/", "http://127.0.0.1:9/", "127.0.0.1:9"),
    ],
)
def test_display_url_drops_userinfo(url, shown, host):
    assert display_url(url) == shown
    assert display_host(url) == host


def test_a_url_password_is_masked_everywhere_once_registered():
    register_url_credentials("https://bob:hunter%232@m.example/")
    shown = redact("Cannot connect to bob:hunter#2@m.example")
    assert shown == "Cannot connect to bob:***@m.example"
    assert "hunter%232" not in redact("url 'https://bob:hunter%232@m.example/' is bad")
