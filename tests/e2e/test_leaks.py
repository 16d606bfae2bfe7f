"""Secrets never appear in stdout, stderr, logs, traces or any file MatoKit writes.

Every command runs with `--debug --log-format json` (the most talkative mode), once with a
valid token (success paths) and once with an invalid one (error paths), and then every byte
under the run's HOME, config, cache and data directories is searched for the token. The same
holds for the password of a `https://user:password@host/` URL (basic auth in front of
Matomo), with Matomo reachable and not, in json and in text mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakematomo import SUPERUSER_TOKEN, Fault

INVALID_TOKEN = "5e" + "c0ffee" * 5  # the sentinel: valid-looking, unknown to the server


def commands(tmp: Path) -> list[list[str]]:
    hits = tmp / "hits.jsonl"
    hits.write_text(
        "".join(
            json.dumps({"type": "event", "category": "leak", "action": f"a{i}"}) + "\n"
            for i in range(3)
        )
    )
    output = tmp / "health.prom"
    return [
        ["config", "show"],
        ["config", "show", "--format", "json"],
        ["config", "profiles"],
        ["describe"],
        ["api", "API.getMatomoVersion"],
        ["api", "VisitsSummary.get", "period=day", "date=today", "--format", "csv"],
        ["track", "event", "--category", "leak", "--action", "send"],
        ["track", "event", "--category", "leak", "--action", "queued", "--queue"],
        ["track", "pageview", "--url", "https://x.example/", "--dry-run"],
        ["track", "import", str(hits)],
        ["queue", "status", "--format", "json"],
        ["queue", "list"],
        ["queue", "export"],
        ["queue", "flush"],
        ["report", "visits", "--period", "day", "--date", "today"],
        ["report", "pages", "--period", "day", "--date", "today", "--format", "csv"],
        ["report", "summary", "--period", "day", "--date", "today"],
        ["cache", "stats"],
        ["health", "--format", "json"],
        ["health", "--format", "prometheus", "--output", str(output)],
        ["health", "--format", "nagios"],
    ]


def _written_files(dirs: dict[str, Path]) -> list[Path]:
    files = []
    for root in {dirs["home"], dirs["cwd"]}:
        files += [p for p in root.rglob("*") if p.is_file()]
    return files


@pytest.mark.parametrize("token", [SUPERUSER_TOKEN, INVALID_TOKEN], ids=["valid", "invalid"])
def test_token_never_leaks(run_matokit, fake_matomo, e2e_dirs, tmp_path, token):
    env = {"MATOMO_URL": fake_matomo.url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": token}
    if token == INVALID_TOKEN:
        # Make the error paths richer: one tracking request fails after sending.
        fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", times=1))
    ran = 0
    for args in commands(tmp_path):
        result = run_matokit("--debug", "--log-format", "json", *args, env=env, timeout=60)
        ran += 1
        assert "Traceback" not in result.stdout
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            assert token not in text, f"token in {stream} of matokit {' '.join(args)}"
    assert ran == len(commands(tmp_path))
    files = _written_files(e2e_dirs)
    assert files, "the commands should have written a journal, cache and health output"
    for path in files:
        assert token.encode() not in path.read_bytes(), f"token written to {path}"
    # And never in a URL sent to Matomo.
    for record in fake_matomo.requests:
        assert token not in record.path + "?" + record.query


URL_PASSWORD = "hunter2" + "c0ffee"  # the sentinel password
URL_USER = "bob" + "ops"


def _with_credentials(url: str) -> str:
    return url.replace("://", f"://{URL_USER}:{URL_PASSWORD}@", 1)


@pytest.mark.parametrize("reachable", [True, False], ids=["reachable", "unreachable"])
def test_url_credentials_never_leak(run_matokit, fake_matomo, e2e_dirs, tmp_path, reachable):
    base = fake_matomo.url if reachable else "http://127.0.0.1:9/"
    env = {
        "MATOMO_URL": _with_credentials(base),
        "MATOMO_SITE_ID": "1",
        "MATOMO_TOKEN": SUPERUSER_TOKEN,
    }
    runs = [["--debug", "--log-format", "json", *args] for args in commands(tmp_path)]
    # Text mode too: error lines, health tables and summaries, config show.
    runs += [
        ["config", "show"],
        ["health"],
        ["health", "--format", "nagios"],
        ["report", "visits", "--no-cache"],
        ["track", "pageview", "--url", "https://x.example/"],
        ["--debug", "report", "visits", "--no-cache"],
    ]
    for args in runs:
        result = run_matokit(*args, env=env, timeout=60)
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            assert URL_PASSWORD not in text, f"URL password in {stream} of matokit {args}"
            assert f"{URL_USER}:" not in text, f"URL userinfo in {stream} of matokit {args}"
    for path in _written_files(e2e_dirs):
        assert URL_PASSWORD.encode() not in path.read_bytes(), f"URL password written to {path}"
