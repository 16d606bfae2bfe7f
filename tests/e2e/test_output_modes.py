"""How output adapts to where it goes: pipes get whole tables, NO_COLOR gets no ANSI at all,
`--log-format json` makes every stderr line a JSON object with the profile and command."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path

from tests.e2e.conftest import _executable
from tests.fakematomo import SUPERUSER_TOKEN

DEEP = "a-rather-long-directory-name/" * 4


def _json_lines(stderr: str) -> list[dict]:
    lines = stderr.splitlines()
    assert lines, "expected stderr lines"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line on stderr: {line!r}\n{stderr}") from None
    return parsed


def test_json_log_format_makes_errors_and_hints_json_lines(run_matokit):
    result = run_matokit(
        "--log-format", "json", "--url", "http://127.0.0.1:9/", "--site", "1", "report", "visits",
        env={"MATOMO_TOKEN": SUPERUSER_TOKEN},
    )  # fmt: skip
    assert result.code == 69, result
    (line,) = _json_lines(result.stderr)
    assert line["level"] == "error" and line["message"].startswith("Cannot connect to 127.0.0.1:9")
    assert line["hint"] and line["profile"] == "default" and line["command"] == "report"


def test_json_log_format_covers_usage_errors_summaries_and_the_profile_file(
    run_matokit, fake_matomo, e2e_dirs
):
    config = Path(e2e_dirs["config"]) / "matokit" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[profiles.shop]\nurl = "{fake_matomo.url}"\nsite_id = 1\nlog_format = "json"\n'
    )
    env = {"MATOKIT_PROFILE": "shop", "MATOMO_TOKEN": SUPERUSER_TOKEN}
    usage = run_matokit("--log-format", "json", "report", "visits", "--bogus", env=env)
    assert usage.code == 2, usage
    (line,) = _json_lines(usage.stderr)
    assert "--bogus" in line["message"] and line["command"] == "report"
    early = run_matokit("--log-format", "json", "--bogus", env=env)
    assert early.code == 2, early
    (line,) = _json_lines(early.stderr)
    assert "--bogus" in line["message"] and line["profile"] == "shop"
    # log_format from the profile (no flag, no env): the "no data" line is JSON too.
    empty = run_matokit("report", "visits", "--date", "2001-01-01", env=env)
    assert empty.code == 0, empty
    for line in _json_lines(empty.stderr):
        assert line["profile"] == "shop" and line["command"] == "report"
    assert any("no data" in x["message"] for x in _json_lines(empty.stderr))


def test_piped_tables_are_not_cut_and_columns_wins(run_matokit, e2e_dirs):
    data_root = Path(e2e_dirs["data"]) / DEEP
    env = {"MATOMO_URL": "https://m.example/", "MATOKIT_DATA_DIR": str(data_root)}
    piped = run_matokit("config", "show", env=env)
    assert piped.code == 0, piped
    assert str(data_root / "default") in piped.stdout  # whole path, on one line
    assert max(len(line) for line in piped.stdout.splitlines()) > 80
    narrow = run_matokit("config", "show", env={**env, "COLUMNS": "60"})
    assert narrow.code == 0, narrow
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60


def test_queue_status_and_cache_stats_show_whole_paths_on_a_pipe(run_matokit, e2e_dirs):
    env = {
        "MATOMO_URL": "https://m.example/",
        "MATOKIT_DATA_DIR": str(Path(e2e_dirs["data"]) / DEEP),
        "MATOKIT_CACHE_DIR": str(Path(e2e_dirs["cache"]) / DEEP),
        "MATOMO_SITE_ID": "1",
    }
    queued = run_matokit("track", "event", "--category", "c", "--action", "a", "--queue", env=env)
    assert queued.code == 0, queued
    status = run_matokit("queue", "status", env=env)
    assert status.code == 0, status
    assert str(Path(e2e_dirs["data"]) / DEEP / "default" / "journal.sqlite") in status.stdout
    stats = run_matokit("cache", "stats", env=env)
    assert stats.code == 0, stats
    assert str(Path(e2e_dirs["cache"]) / DEEP / "default") in stats.stdout


def test_report_list_never_splits_names(run_matokit):
    result = run_matokit("report", "list", env={"COLUMNS": "70"})
    assert result.code == 0, result
    names = [line.split()[0] for line in result.stdout.splitlines()[3:] if line[:1].strip()]
    assert "search-engines" in names and "event-actions" in names
    assert "Actions.getEntryPageUrls" in result.stdout


def _run_on_a_tty(args: list[str], env: dict[str, str], cwd: Path) -> bytes:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(_executable()), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
        close_fds=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 20)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)
        assert proc.wait(timeout=20) == 0, bytes(seen)
    finally:
        proc.kill()
        os.close(master)
    return bytes(seen)


def test_no_color_on_a_terminal_means_no_ansi_at_all(matokit_env, e2e_dirs):
    env = {**matokit_env, "TERM": "xterm-256color", "COLUMNS": "100"}
    plain = _run_on_a_tty(["report", "list"], {**env, "NO_COLOR": "1"}, e2e_dirs["cwd"])
    assert b"visits" in plain and b"\x1b[" not in plain, plain
    env.pop("NO_COLOR", None)
    styled = _run_on_a_tty(["report", "list"], env, e2e_dirs["cwd"])
    assert b"\x1b[" in styled  # the control case: a terminal does get bold headers
