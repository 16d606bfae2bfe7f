"""The agent servers in-process: the optional extra, listening rules, the bearer token, the
Opal app's discovery and authentication, MCP's tool objects, and the command runner."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from matokit import agents
from matokit.agents import opal_server
from matokit.agents.mcp_server import call_result, mcp_tool
from matokit.agents.runner import CommandRunner, ToolResult, parse_output
from matokit.agents.tools import Hints, ToolParam, ToolSpec
from matokit.config import tool_command_environment, tools_bearer_token
from matokit.errors import ConfigError, InsecurePermissionsError
from tests.clirunner import invoke

BEARER = "b34r3r" + "5ecret" * 4  # the sentinel bearer token
ECHO = [sys.executable, "-c", "import json, sys; print(json.dumps({'argv': sys.argv[1:]}))"]

SPEC = ToolSpec(
    name="matokit_report_show",
    command=("report", "show"),
    description="Show one report.",
    effect="read-only",
    params=(
        ToolParam("name", None, "string", help="A report name.", required=True),
        ToolParam("period", "--period", "string", choices=("day", "week"), default="day"),
        ToolParam("columns", "--columns", "string", multiple=True),
    ),
    hints=Hints(read_only=True, destructive=False, idempotent=True, open_world=True),
    json_format=True,
)


# --- without the extra ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "missing"),
    [(("mcp",), "mcp"), (("tools", "serve"), "opal_tools_sdk"), (("tools", "serve"), "uvicorn")],
)
def test_without_the_extra_the_commands_say_how_to_install_it(capsys, monkeypatch, args, missing):
    real = agents._importable
    monkeypatch.setattr(agents, "_importable", lambda name: name != missing and real(name))
    result = invoke(capsys, *args)
    assert result.code == 78, result.stderr
    assert f"needs the optional extra `agents` (missing: {missing})" in result.stderr
    assert "pip install 'matokit[agents]'" in result.stderr
    assert result.stdout == ""


def test_a_module_set_to_none_counts_as_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "opal_tools_sdk", None)
    with pytest.raises(ConfigError, match=r"missing: opal_tools_sdk\)") as caught:
        agents.require("tools serve", agents.OPAL_MODULES)
    assert caught.value.hint == "Install it: pip install 'matokit[agents]'"


# --- where `tools serve` listens, and when it needs a bearer token ---------------------------


@pytest.fixture
def captured(monkeypatch) -> dict[str, Any]:
    """Replace binding and serving: what `tools serve` would have served, nothing bound."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(opal_server, "bind", lambda host, port: seen.update(addr=(host, port)))
    monkeypatch.setattr(opal_server, "serve", lambda app, sock, announce: seen.update(app=app))
    return seen


def test_a_non_loopback_address_needs_allow_remote(capsys, captured):
    result = invoke(capsys, "tools", "serve", "--listen", "0.0.0.0:0")
    assert result.code == 2, result.stderr
    assert "refusing a non-loopback address" in result.stderr and "--allow-remote" in result.stderr
    assert captured == {}


def test_allow_remote_without_a_bearer_token_is_a_configuration_error(capsys, captured):
    result = invoke(capsys, "tools", "serve", "--listen", "0.0.0.0:0", "--allow-remote")
    assert result.code == 78, result.stderr
    assert "needs a bearer-token" in result.stderr and "MATOKIT_TOOLS_TOKEN" in result.stderr
    assert captured == {}


def _has_auth(app: Any) -> bool:
    return any(m.cls is opal_server.BearerAuth for m in app.user_middleware)


def test_allow_remote_with_a_bearer_token_serves_with_authentication(capsys, monkeypatch, captured):
    monkeypatch.setenv("MATOKIT_TOOLS_TOKEN", BEARER)
    result = invoke(capsys, "tools", "serve", "--listen", "0.0.0.0:0", "--allow-remote")
    assert result.code == 0, result.stderr
    assert captured["addr"] == ("0.0.0.0", 0) and _has_auth(captured["app"])
    assert "bearer-token auth required" in result.stderr and BEARER not in result.stderr


def test_loopback_serves_without_a_token_and_with_one_when_configured(
    capsys, monkeypatch, captured
):
    assert invoke(capsys, "tools", "serve", "--listen", "127.0.0.1:0").code == 0
    assert not _has_auth(captured["app"])
    monkeypatch.setenv("MATOKIT_TOOLS_TOKEN", BEARER)
    assert invoke(capsys, "tools", "serve", "--listen", "localhost:0").code == 0
    assert _has_auth(captured["app"])


# --- the bearer token: sources and checks -----------------------------------------------------


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_bearer_token_from_flag_file_env_and_dotenv(tmp_path):
    token_file = _secret_file(tmp_path / "bearer", BEARER + "\n")
    assert tools_bearer_token(str(token_file), env={}) == BEARER
    assert tools_bearer_token(env={"MATOKIT_TOOLS_TOKEN": BEARER}) == BEARER
    assert tools_bearer_token(env={"MATOKIT_TOOLS_TOKEN_FILE": str(token_file)}) == BEARER
    assert tools_bearer_token(env={}, cwd=tmp_path) is None
    _secret_file(tmp_path / ".env", f"MATOKIT_TOOLS_TOKEN={BEARER}\n")
    assert tools_bearer_token(env={}, cwd=tmp_path) == BEARER


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        ("file-0644", InsecurePermissionsError, "accessible by other users"),
        ("dotenv-0644", InsecurePermissionsError, r"\.env file holding MATOKIT_TOOLS_TOKEN"),
        ("short", ConfigError, "shorter than 16 characters"),
        ("space", ConfigError, "whitespace or a character that is not printable ASCII"),
        ("missing", ConfigError, "Bearer-token file .* does not exist"),
    ],
)
def test_a_weak_or_exposed_bearer_token_is_refused(tmp_path, setup, error, message):
    env: dict[str, str] = {}
    flag = None
    if setup == "file-0644":
        flag = str(_secret_file(tmp_path / "bearer", BEARER, 0o644))
    elif setup == "dotenv-0644":
        _secret_file(tmp_path / ".env", f"MATOKIT_TOOLS_TOKEN={BEARER}\n", 0o644)
    elif setup == "short":
        env["MATOKIT_TOOLS_TOKEN"] = "too-short"
    elif setup == "space":
        env["MATOKIT_TOOLS_TOKEN"] = BEARER[:10] + " " + BEARER[10:]
    else:
        flag = str(tmp_path / "absent")
    with pytest.raises(error, match=message) as caught:
        tools_bearer_token(flag, env=env, cwd=tmp_path)
    assert BEARER not in caught.value.message + (caught.value.hint or "")


def test_commands_run_by_a_tool_never_see_the_bearer_token():
    env = {"PATH": "/bin", "MATOKIT_TOOLS_TOKEN": BEARER, "MATOKIT_TOOLS_TOKEN_FILE": "/f"}
    assert tool_command_environment(env) == {"PATH": "/bin"}


# --- the Opal app: discovery, authentication, a call ------------------------------------------


@pytest.fixture(scope="module")
def client() -> TestClient:
    runner = CommandRunner(program=ECHO, timeout=30)
    app = opal_server.build_app([SPEC], runner, bearer_token=BEARER)
    return TestClient(app, base_url="http://127.0.0.1")


def _auth(value: str) -> dict[str, bytes]:
    return {"Authorization": value.encode("latin-1")}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _auth(f"Bearer {BEARER[:-1]}"),
        _auth(f"Bearer {BEARER}x"),
        _auth(f"Basic {BEARER}"),
        _auth(BEARER),
        _auth("Bearer"),
        _auth("Bearer é" + BEARER),
    ],
    ids=["none", "short", "longer", "basic", "no-scheme", "empty", "non-ascii"],
)
@pytest.mark.parametrize("path", ["/discovery", "/tools/matokit_report_show", "/debug-routes"])
def test_every_path_needs_the_bearer_token(client, headers, path):
    answer = client.post(path, json={"parameters": {"name": "visits"}}, headers=headers)
    if path == "/discovery":
        answer = client.get(path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert BEARER not in answer.text


def test_two_authorization_headers_are_refused(client):
    headers = [("authorization", f"Bearer {BEARER}"), ("authorization", "Bearer x")]
    answer = client.get("/discovery", headers=headers)
    assert answer.status_code == 401


def test_discovery_lists_each_tool_with_its_parameters_schemas_and_hints(client):
    answer = client.get("/discovery", headers=_auth(f"Bearer {BEARER}"))
    assert answer.status_code == 200
    (function,) = answer.json()["functions"]
    assert function["name"] == "matokit_report_show"
    assert function["endpoint"] == "/tools/matokit_report_show"
    assert function["http_method"] == "POST"
    assert function["hints"] == ["idempotent", "open_world"]  # no "write": read-only
    params = {p["name"]: p for p in function["parameters"]}
    assert params["name"]["required"] is True and params["name"]["type"] == "string"
    assert params["period"]["schema"]["enum"] == ["day", "week"]
    assert params["columns"]["type"] == "array"
    assert client.get("/debug-routes", headers=_auth(f"Bearer {BEARER}")).status_code == 404


def test_a_call_runs_the_command_and_returns_its_json(client):
    answer = client.post(
        "/tools/matokit_report_show",
        json={"parameters": {"name": "visits", "period": "week"}},
        headers=_auth(f"bearer {BEARER}"),  # the scheme is case-insensitive
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "exit_code": 0,
        "data": {"argv": ["report", "show", "--period=week", "--format=json", "--", "visits"]},
    }


def test_a_call_with_an_unknown_parameter_is_a_400_and_runs_nothing(client):
    answer = client.post(
        "/tools/matokit_report_show",
        json={"parameters": {"name": "visits", "allow_write": True}},
        headers=_auth(f"Bearer {BEARER}"),
    )
    assert answer.status_code == 400
    assert "has no parameter 'allow_write'" in answer.json()["detail"]


# --- MCP's tool objects ------------------------------------------------------------------------


def test_mcp_tool_carries_the_schema_and_annotations():
    tool = mcp_tool(SPEC).model_dump(by_alias=True, exclude_none=True)
    assert tool["name"] == "matokit_report_show"
    assert tool["inputSchema"] == SPEC.input_schema()
    assert tool["annotations"] == {
        "title": "matokit report show",
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": True,
    }
    assert tool["outputSchema"]["required"] == ["exit_code", "data"]


def test_mcp_result_is_structured_json_and_the_same_as_text():
    result = call_result(ToolResult(77, None, "matokit: error: refused", is_error=True))
    dumped = result.model_dump(by_alias=True)
    assert dumped["isError"] is True
    assert dumped["structuredContent"] == {
        "exit_code": 77,
        "data": None,
        "stderr": "matokit: error: refused",
    }
    assert json.loads(dumped["content"][0]["text"]) == dumped["structuredContent"]


# --- the runner ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "data"),
    [
        ('{"a": 1}\n', {"a": 1}),
        ('{"a": 1}\n{"a": 2}\n', [{"a": 1}, {"a": 2}]),
        ("", None),
        ("# bash completion\n", "# bash completion\n"),
        ("[]", []),
    ],
)
def test_output_is_parsed_as_json_json_lines_or_kept_as_text(stdout, data):
    assert parse_output(stdout) == data


def test_a_command_past_its_time_limit_is_killed(tmp_path):
    marker = tmp_path / "finished"
    code = f"import time, pathlib; time.sleep(30); pathlib.Path({str(marker)!r}).touch()"
    runner = CommandRunner(program=[sys.executable, "-c", code], timeout=0.5)
    result = anyio.run(runner.run, SPEC, {"name": "visits"})
    assert result.exit_code is None and result.is_error
    assert "did not finish within 0.5 s" in result.stderr
    assert not marker.exists()


def test_a_command_gets_no_stdin_and_the_given_environment():
    code = "import os, sys; print(repr(sys.stdin.read()), os.environ.get('ONLY'), len(os.environ))"
    runner = CommandRunner(program=[sys.executable, "-c", code], env={"ONLY": "x"}, timeout=30)
    result = anyio.run(runner.run, SPEC, {"name": "visits"})
    assert result.exit_code == 0, result.stderr
    assert result.data.split()[:2] == ["''", "x"]
    assert int(result.data.split()[2]) <= 3  # ONLY, and what the C runtime may add (LC_CTYPE)
