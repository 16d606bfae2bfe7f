"""End to end: `matokit mcp` with the MCP SDK's own client, `matokit tools serve` over HTTP,
both against the fake Matomo, compared with what the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.e2e.agents import (
    api_requests,
    expected_specs,
    read_only_commands,
    run_mcp,
    tools_service,
    track_pageviews,
)
from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.fakematomo import FakeMatomo

BEARER = "0pal" + "5ecret" * 5


def _describe(run_matokit: RunMatokit) -> dict:  # type: ignore[type-arg]
    result = run_matokit("describe")
    assert result.code == 0, result
    return json.loads(result.stdout)


def _cli_json(run_matokit: RunMatokit, env: dict[str, str], *args: str) -> object:
    result = run_matokit(*args, "--format", "json", env=env)
    assert result.code == 0, result
    return json.loads(result.stdout)


def test_mcp_offers_the_read_only_commands_and_answers_like_the_cli(
    run_matokit, matokit_env, e2e_dirs, env, fake_matomo: FakeMatomo
):
    track_pageviews(fake_matomo)
    describe = _describe(run_matokit)
    calls = [
        ("report", "matokit_report_show", {"name": "pages"}),
        ("status", "matokit_queue_status", {}),
        ("delete", "matokit_api", {"method": "SitesManager.deleteSite", "params": ["idSite=1"]}),
        ("smuggled", "matokit_api", {"method": "SitesManager.deleteSite", "allow_write": True}),
        ("bulk", "matokit_api", {"method": "API.getBulkRequest",
                                 "params": ["urls[0]=method=SitesManager.deleteSite&idSite=1"]}),
    ]  # fmt: skip
    run = run_mcp({**matokit_env, **env}, e2e_dirs["cwd"], ["mcp"], calls)

    names = {t["name"] for t in run.tools}
    assert names == read_only_commands(describe)
    assert "matokit_track_event" not in names and "matokit_queue_flush" not in names
    for tool in run.tools:
        hints = tool["annotations"]
        assert hints["readOnlyHint"] is True and hints["destructiveHint"] is False, tool["name"]
    api_schema = run.tool("matokit_api")["inputSchema"]
    assert set(api_schema["properties"]) == {"method", "params"}  # no allow_write

    report = run.results["report"]
    assert report["isError"] is False
    assert report["structuredContent"] == {
        "exit_code": 0,
        "data": _cli_json(run_matokit, env, "report", "pages"),
    }
    assert any(row["label"].endswith("page-0") for row in report["structuredContent"]["data"])
    assert run.results["status"]["structuredContent"] == {
        "exit_code": 0,
        "data": _cli_json(run_matokit, env, "queue", "status"),
    }
    for label, message in (
        ("delete", "refused without --allow-write"),
        ("smuggled", "has no parameter 'allow_write'"),
        ("bulk", "refused without --allow-write"),
    ):
        refused = run.results[label]
        assert refused["isError"] is True, label
        assert refused["structuredContent"]["exit_code"] == 2, label
        assert message in refused["structuredContent"]["stderr"], label
    assert api_requests(fake_matomo, "SitesManager.deleteSite") == 0
    assert 1 in fake_matomo.sites
    assert "matokit: MCP server on stdio: " in run.stderr


def test_mcp_with_allow_write_lists_the_writes_as_destructive(
    run_matokit, matokit_env, e2e_dirs, env
):
    describe = _describe(run_matokit)
    run = run_mcp({**matokit_env, **env}, e2e_dirs["cwd"], ["mcp", "--allow-write"])
    expected = {s.name: s for s in expected_specs(describe, allow_write=True)}
    assert {t["name"] for t in run.tools} == set(expected)
    track = run.tool("matokit_track_event")["annotations"]
    assert track["readOnlyHint"] is False and track["destructiveHint"] is True
    assert track["idempotentHint"] is False
    assert "allow_write" in run.tool("matokit_api")["inputSchema"]["properties"]
    assert run.tool("matokit_report_show")["annotations"]["readOnlyHint"] is True
    assert "matokit_config_init" not in expected and "matokit_track_import" not in expected


def _post(url: str, tool: str, parameters: dict, token: str | None) -> requests.Response:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{url}tools/{tool}", json={"parameters": parameters}, headers=headers, timeout=60
    )


def test_opal_service_discovers_runs_and_refuses_calls_without_the_bearer_token(
    run_matokit, spawn_matokit: SpawnMatokit, env, fake_matomo: FakeMatomo, tmp_path: Path
):
    track_pageviews(fake_matomo)
    describe = _describe(run_matokit)
    token_file = tmp_path / "bearer"
    token_file.write_text(BEARER + "\n")
    token_file.chmod(0o600)
    args = ("tools", "serve", "--listen", "127.0.0.1:0", "--bearer-token-file", str(token_file))
    with tools_service(spawn_matokit, *args, env=env) as service:
        before = len(fake_matomo.requests)
        for token in (None, "wrong-" + BEARER):
            assert requests.get(service.url + "discovery", timeout=10).status_code == 401
            refused = _post(service.url, "matokit_report_show", {"name": "pages"}, token)
            assert refused.status_code == 401 and BEARER not in refused.text
        assert len(fake_matomo.requests) == before  # nothing ran

        headers = {"Authorization": f"Bearer {BEARER}"}
        discovery = requests.get(service.url + "discovery", headers=headers, timeout=10).json()
        functions = {f["name"]: f for f in discovery["functions"]}
        assert set(functions) == read_only_commands(describe)
        for spec in expected_specs(describe):
            function = functions[spec.name]
            assert [p["name"] for p in function["parameters"]] == [p.key for p in spec.params]
            assert function["endpoint"] == f"/tools/{spec.name}"
            assert "write" not in function["hints"]

        answer = _post(service.url, "matokit_report_show", {"name": "pages"}, BEARER)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "exit_code": 0,
            "data": _cli_json(run_matokit, env, "report", "pages"),
        }
        delete = {"method": "SitesManager.deleteSite", "params": ["idSite=1"]}
        refused = _post(service.url, "matokit_api", delete, BEARER).json()
        assert refused["exit_code"] == 2 and "--allow-write" in refused["stderr"]
        assert api_requests(fake_matomo, "SitesManager.deleteSite") == 0
    assert service.proc.returncode == 0, service.stderr
    assert "bearer-token auth required" in service.stderr
    assert BEARER not in service.stderr
