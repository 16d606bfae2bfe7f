"""`matokit track access-log` in-process against the fake Matomo: what is stored, summaries,
bad input, sites from hosts, old lines, usage errors and exit codes."""

from __future__ import annotations

import bz2
import gzip
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.clirunner import invoke
from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo

NOW = time.time()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_matomo: FakeMatomo) -> FakeMatomo:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    return fake_matomo


def stamp(at: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))


def line(path: str = "/", *, status: int = 200, agent: str = "Mozilla/5.0", at: float = 0) -> str:
    when = stamp(at or NOW - 300)
    return f'198.51.100.7 - - [{when}] "GET {path} HTTP/1.1" {status} 10 "-" "{agent}"\n'


MIXED = (
    line("/")
    + line("/")  # the same request twice in the same second: two hits
    + line("/docs/guide.pdf")
    + line("/style.css")
    + line("/missing", status=404)
    + line("/moved", status=301)
    + line("/", agent="Googlebot/2.1")
    + line("/", status=304)
)


def urls(fake: FakeMatomo) -> Counter[str]:
    return Counter(hit["url"] for hit in fake.hits)


def test_import_stores_countable_lines_once_and_a_rerun_nothing(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text(MIXED)
    result = invoke(capsys, "track", "access-log", str(log))
    assert result.code == 0, result.stderr
    assert (
        "access.log: format combined (detected); 8 line(s); 4 hit(s) (1 download(s)); 4 new, "
        "0 already imported; skipped: http_error 1, redirect 1, static 1, bot 1." in result.stderr
    )
    assert urls(env) == {"https://example.org/": 3, "https://example.org/docs/guide.pdf": 1}
    download = next(h for h in env.hits if h["url"].endswith(".pdf"))
    assert download["download"] == download["url"]
    assert {h["cip"] for h in env.hits} == {"198.51.100.7"}
    again = invoke(capsys, "track", "access-log", str(log))
    assert again.code == 0 and len(env.hits) == 4
    assert "0 line(s) after line 8" in again.stderr


def test_json_summary_counts_every_reason(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text(MIXED + "garbage line\n")
    result = invoke(capsys, "track", "access-log", str(log), "--dry-run", "--format", "json")
    assert result.code == 65, result.stderr  # one unparsable line
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["hits"] == 4 and data["lines"] == 9
    assert data["skipped"] == {
        "host": 0, "http_error": 1, "redirect": 1, "excluded": 0, "static": 1, "bot": 1,
        "invalid_request": 0, "too_old": 0, "unknown_host": 0, "unparsable": 1,
    }  # fmt: skip
    assert data["files"][0]["unparsable_lines"] == [
        {"line": 9, "reason": "not a line of the combined format"}
    ]
    assert env.hits == []


def test_stdin_and_compressed_files(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gz, bz = tmp_path / "a.log.gz", tmp_path / "b.log.bz2"
    gz.write_bytes(gzip.compress(line("/gz").encode()))
    bz.write_bytes(bz2.compress(line("/bz2").encode()))
    result = invoke(capsys, "track", "access-log", str(gz), str(bz), "-", stdin=line("/stdin"))
    assert result.code == 0, result.stderr
    assert sorted(urls(env)) == [f"https://example.org/{p}" for p in ("bz2", "gz", "stdin")]


def test_bad_input_is_reported_and_every_good_line_imported(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "binary.log"
    binary.write_bytes(b"\x7fELF\x00\x00\x01" + bytes(range(256)))
    cut = tmp_path / "cut.log.gz"
    body = "".join(line(f"/cut/{i}") for i in range(3000)).encode()
    cut.write_bytes(gzip.compress(body)[:-200])
    long_line = tmp_path / "long.log"
    long_line.write_text(line("/before") + "x" * (1 << 20) + "\n" + line("/after"))
    prose = tmp_path / "prose.txt"
    prose.write_text("Dear diary,\nnothing here is a log.\n")
    args = [str(p) for p in (binary, cut, long_line, prose)]
    result = invoke(capsys, "track", "access-log", *args)
    assert result.code == 65, result.stderr
    assert "binary.log: NUL byte at offset 4: not a text log" in result.stderr
    assert "cut.log.gz: its gzip data ends early (cut short?) after line" in result.stderr
    assert "long.log: unparsable line(s) 2 (longer than 65536 bytes)" in result.stderr
    assert "prose.txt: cannot tell its format from its first lines" in result.stderr
    assert "Traceback" not in result.stderr
    stored = urls(env)
    assert stored["https://example.org/before"] == stored["https://example.org/after"] == 1
    cut_lines = sum(1 for u in stored if "/cut/" in u)
    assert 0 < cut_lines < 3000
    assert f"after line {cut_lines}:" in result.stderr


def test_sites_from_hosts_and_unknown_hosts(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    when = stamp(NOW - 60)
    log = tmp_path / "vhosts.log"
    log.write_text(
        "".join(
            f'{host} 192.0.2.1 - - [{when}] "GET /{n} HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
            for n, host in enumerate(
                [
                    "www.example.org:443",
                    "ny.example.org",
                    "unknown.example.net",
                    "example.org",
                    "ny.example.org",
                ]
            )
        )
    )
    result = invoke(capsys, "track", "access-log", str(log), "--site-from-host", "--format", "json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["skipped"]["unknown_host"] == 1
    assert sorted((h["idsite"], h["url"]) for h in env.hits) == [
        ("1", "https://example.org/3"),
        ("1", "https://www.example.org/0"),
        ("2", "https://ny.example.org/1"),
        ("2", "https://ny.example.org/4"),
    ]
    asked = [r for r in env.requests if b"getSitesIdFromSiteUrl" in r.body + r.query.encode()]
    assert len(asked) == 4  # once per host
    combined = tmp_path / "combined.log"
    combined.write_text(line("/"))
    refused = invoke(capsys, "track", "access-log", str(combined), "--site-from-host")
    assert refused.code == 65
    assert "logs no host, so --site-from-host cannot tell its site" in refused.stderr


def test_lines_older_than_a_day_need_an_admin_token(
    env: FakeMatomo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "old.log"
    log.write_text(line("/recent") + line("/old", at=NOW - 3 * 86400))
    monkeypatch.setenv("MATOMO_TOKEN", VIEW_TOKEN)
    refused = invoke(capsys, "track", "access-log", str(log))
    assert refused.code == 77, refused.stderr
    assert (
        f"{log} has lines older than 24 h for site 1: Matomo records them only with a token "
        "that has admin access on the site, and this token has none" in refused.stderr
    )
    assert urls(env) == {}  # that chunk was not journaled
    monkeypatch.delenv("MATOMO_TOKEN")
    no_token = invoke(capsys, "track", "access-log", str(log))
    assert no_token.code == 78 and "and no token is configured" in no_token.stderr
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    done = invoke(capsys, "track", "access-log", str(log))
    assert done.code == 0, done.stderr
    assert set(urls(env)) == {"https://example.org/recent", "https://example.org/old"}


def test_queue_only_journals_and_site_url_needs_no_matomo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATOMO_SITE_ID", "4")
    log = tmp_path / "access.log"
    log.write_text(line("/a") + line("/b"))
    args = ("track", "access-log", str(log), "--queue", "--site-url", "https://shop.example/")
    result = invoke(capsys, *args, "--format", "json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["delivery"]["journaled"] == 2
    status = json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)
    assert status["queued"] == 2


def test_a_missing_file_is_skipped_with_a_note(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text(line("/here"))
    result = invoke(capsys, "track", "access-log", str(tmp_path / "access.log.1"), str(log))
    assert result.code == 0, result.stderr
    assert "access.log.1: no such file (not rotated yet, or rotated away); skipped" in (
        result.stderr
    )
    assert urls(env) == {"https://example.org/here": 1}
    quiet = invoke(capsys, "-q", "track", "access-log", str(tmp_path / "access.log.1"))
    assert quiet.code == 0 and quiet.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((".",), ". is a directory"),
        (("a.log", "--follow", "b.log"), "--follow takes exactly one FILE"),
        (("-", "--follow"), "--follow takes exactly one FILE"),
        (("a.log", "--site", "2", "--site-from-host"), "give --site or --site-from-host"),
        (("a.log", "--log-date-format", "%Y"), "needs --log-format-regex"),
        (("a.log", "--horizon", "soon"), "is not a duration"),
        (("a.log", "--log-format-regex", "(?P<ip>x"), "not a valid regular expression"),
        (("a.log", "--site-url", "example.com"), "is not an http(s) URL"),
        (("a.log", "--log-format", "apache"), "'apache' is not one of"),
        (("-", "-"), "- (stdin) can be read once"),
    ],
)
def test_usage_errors_exit_2_before_reading(
    env: FakeMatomo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text(line("/"))
    result = invoke(capsys, "track", "access-log", *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert env.hits == []


def test_quiet_runs_print_only_problems(
    env: FakeMatomo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text(line("/a"))
    assert invoke(capsys, "-q", "track", "access-log", str(log)).stderr == ""
    log.write_text(line("/a") + "not a log line\n")
    noisy = invoke(capsys, "-q", "track", "access-log", str(log))
    assert noisy.code == 65
    assert noisy.stderr == (
        f"matokit: {log}: unparsable line(s) 2 (not a line of the combined format)\n"
    )
