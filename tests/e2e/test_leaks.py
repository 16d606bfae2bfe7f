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
import requests

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
        ["setup", "exactly-once"],
    ]


def _written_files(dirs: dict[str, Path]) -> list[Path]:
    files = []
    for root in {dirs["home"], dirs["cwd"]}:
        files += [p for p in root.rglob("*") if p.is_file()]
    return files


URL_PASSWORD = "hunter2" + "c0ffee"  # the sentinel password of https://user:password@host/
URL_USER = "bob" + "ops"


def _with_credentials(url: str) -> str:
    return url.replace("://", f"://{URL_USER}:{URL_PASSWORD}@", 1)


def _assert_no_secret(text: str, token: str, where: str) -> None:
    assert token not in text, f"token in {where}"
    assert URL_PASSWORD not in text, f"URL password in {where}"
    assert f"{URL_USER}:" not in text, f"URL user:password@ in {where}"


@pytest.mark.parametrize("token", [SUPERUSER_TOKEN, INVALID_TOKEN], ids=["valid", "invalid"])
def test_token_never_leaks(run_matokit, fake_matomo, e2e_dirs, tmp_path, token):
    # Basic auth in the URL: its password is a secret like the token.
    env = {
        "MATOMO_URL": _with_credentials(fake_matomo.url),
        "MATOMO_SITE_ID": "1",
        "MATOMO_TOKEN": token,
    }
    if token == INVALID_TOKEN:
        # Make the error paths richer: one tracking request fails after sending.
        fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", times=1))
    ran = 0
    for args in commands(tmp_path):
        result = run_matokit("--debug", "--log-format", "json", *args, env=env, timeout=60)
        ran += 1
        assert "Traceback" not in result.stdout
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            _assert_no_secret(text, token, f"{stream} of matokit {' '.join(args)}")
    assert ran == len(commands(tmp_path))
    files = _written_files(e2e_dirs)
    assert files, "the commands should have written a journal, cache and health output"
    for path in files:
        data = path.read_bytes()
        assert token.encode() not in data, f"token written to {path}"
        assert URL_PASSWORD.encode() not in data, f"URL password written to {path}"
    # And never in a URL sent to Matomo.
    for record in fake_matomo.requests:
        assert token not in record.path + "?" + record.query


def test_url_credentials_never_leak_when_matomo_is_unreachable(run_matokit):
    # The error paths in text mode: connection errors, health table and nagios, config show.
    env = {
        "MATOMO_URL": _with_credentials("http://127.0.0.1:9/"),
        "MATOMO_SITE_ID": "1",
        "MATOMO_TOKEN": SUPERUSER_TOKEN,
    }
    runs = [
        ["config", "show"],
        ["health", "--check", "config,api"],
        ["health", "--check", "config,api", "--format", "nagios"],
        ["report", "visits", "--no-cache"],
        ["track", "pageview", "--url", "https://x.example/"],
        ["--debug", "--log-format", "json", "report", "visits", "--no-cache"],
    ]
    for args in runs:
        result = run_matokit(*args, env=env, timeout=60)
        assert result.code != 1, result  # never an internal error
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            _assert_no_secret(text, SUPERUSER_TOKEN, f"{stream} of matokit {' '.join(args)}")


# --- the agent tool servers -------------------------------------------------------------------

BEARER = "be4rer" + "c0ffee" * 4  # the sentinel bearer token of `tools serve`
AGENT_CALLS = [
    ("report", "matokit_report_show", {"name": "pages", "date": "today"}),
    ("api", "matokit_api", {"method": "VisitsSummary.get", "params": ["period=day", "date=today"]}),
    ("refused", "matokit_api", {"method": "SitesManager.deleteSite", "params": ["idSite=1"]}),
    ("config", "matokit_config_show", {}),
    ("health", "matokit_health", {}),
    ("bad-argument", "matokit_report_show", {"name": "pages", "token": "x"}),
]


def _assert_no_agent_secret(text: str, token: str, where: str) -> None:
    _assert_no_secret(text, token, where)
    assert BEARER not in text, f"bearer token in {where}"


@pytest.mark.parametrize("token", [SUPERUSER_TOKEN, INVALID_TOKEN], ids=["valid", "invalid"])
def test_agent_servers_never_leak_the_token_or_the_bearer_token(
    spawn_matokit, matokit_env, e2e_dirs, fake_matomo, token
):
    from tests.e2e.agents import run_mcp, tools_service

    env = {
        "MATOMO_URL": _with_credentials(fake_matomo.url),
        "MATOMO_SITE_ID": "1",
        "MATOMO_TOKEN": token,
        "MATOKIT_TOOLS_TOKEN": BEARER,  # in the environment of both: children must not get it
    }
    loud = ("--debug", "--log-format", "json")
    run = run_mcp({**matokit_env, **env}, e2e_dirs["cwd"], [*loud, "mcp"], AGENT_CALLS)
    seen = {"MCP tool list": json.dumps(run.tools), "MCP server stderr": run.stderr}
    seen |= {f"MCP result {label}": json.dumps(r) for label, r in run.results.items()}
    assert run.results["refused"]["isError"] and run.results["bad-argument"]["isError"]

    headers = {"Authorization": f"Bearer {BEARER}"}
    with tools_service(spawn_matokit, *loud, "tools", "serve", "--listen", "127.0.0.1:0",
                       env=env) as service:  # fmt: skip
        seen["Opal discovery"] = requests.get(
            service.url + "discovery", headers=headers, timeout=10
        ).text
        for label, tool, arguments in AGENT_CALLS:
            answer = requests.post(
                f"{service.url}tools/{tool}",
                json={"parameters": arguments},
                headers=headers,
                timeout=60,
            )
            seen[f"Opal answer {label}"] = answer.text
        unauthorised = requests.post(f"{service.url}tools/matokit_config_show", json={}, timeout=10)
        assert unauthorised.status_code == 401
        seen["Opal 401"] = unauthorised.text
    seen["Opal server stderr"] = service.stderr
    assert '"exit_code"' in seen["Opal answer report"]
    for where, text in seen.items():
        _assert_no_agent_secret(text, token, where)
    for path in _written_files(e2e_dirs):
        data = path.read_bytes()
        assert token.encode() not in data and BEARER.encode() not in data, path
