"""`describe` is generated from the CLI; completions/ are regenerated and must match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirunner import invoke

ROOT = Path(__file__).resolve().parent.parent


def test_describe_lists_every_command_and_global_option(capsys):
    result = invoke(capsys, "describe", "--format", "json")
    assert result.code == 0, result.stderr
    manifest = json.loads(result.stdout)
    names = {c["name"] for c in manifest["commands"]}
    assert {"config", "config show", "config init", "config profiles", "describe"} <= names
    flags = {f for o in manifest["global_options"] for f in o["flags"]}
    assert {"--profile", "--url", "--site", "--token-file", "--config", "--debug"} <= flags
    env = {o["flags"][0]: o.get("env") for o in manifest["global_options"]}
    assert env["--url"] == "MATOMO_URL" and env["--profile"] == "MATOKIT_PROFILE"
    assert manifest["exit_codes"]["config"] == 78
    assert not any(f == "--token" for o in manifest["global_options"] for f in o["flags"])


def test_global_options_name_the_variables_of_the_settings_table(capsys):
    from matokit.config import KEYS_BY_NAME, option_env

    manifest = json.loads(invoke(capsys, "describe", "--format", "json").stdout)
    env = {f: o.get("env") for o in manifest["global_options"] for f in o["flags"]}
    assert {f: env[f] for f in option_env()} == option_env()
    for key in KEYS_BY_NAME.values():
        if key.flag:
            assert env[key.flag] == key.env, key.name
    for flag in ("--verbose", "-v", "--quiet", "-q", "--debug"):
        assert env[flag] == KEYS_BY_NAME["log_level"].env
    for option in manifest["global_options"]:
        if option.get("env") and option["type"] != "boolean":
            assert option["help"].endswith(f"[env: {option['env']}]"), option


def test_describe_takes_option_variables_from_config_keys(capsys, monkeypatch):
    import dataclasses

    from matokit import config

    renamed = tuple(
        dataclasses.replace(k, env="MATOKIT_HTTP_TIMEOUT") if k.name == "timeout" else k
        for k in config.KEYS
    )
    monkeypatch.setattr(config, "KEYS", renamed)
    manifest = json.loads(invoke(capsys, "describe", "--format", "json").stdout)
    env = {o["flags"][0]: o.get("env") for o in manifest["global_options"]}
    assert env["--timeout"] == "MATOKIT_HTTP_TIMEOUT"


def test_every_command_has_help(capsys):
    manifest = json.loads(invoke(capsys, "describe").stdout)
    missing = [c["name"] for c in manifest["commands"] if not c["help"]]
    assert not missing


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(capsys, shell):
    """Regenerate with: matokit completions SHELL > completions/matokit.SHELL"""
    result = invoke(capsys, "completions", shell)
    assert result.code == 0
    committed = (ROOT / "completions" / f"matokit.{shell}").read_text()
    assert committed == result.stdout, (
        f"completions/matokit.{shell} is stale: run "
        f"`matokit completions {shell} > completions/matokit.{shell}`"
    )


def test_readme_documents_every_command(capsys):
    readme = (ROOT / "README.md").read_text()
    manifest = json.loads(invoke(capsys, "describe").stdout)
    undocumented = [c["name"] for c in manifest["commands"] if f"matokit {c['name']}" not in readme]
    assert not undocumented, f"README.md lacks an example of: {undocumented}"


def test_every_command_is_marked_with_its_effect(capsys):
    manifest = json.loads(invoke(capsys, "describe").stdout)
    kinds = set(manifest["effects"])
    assert kinds == {"read-only", "writes-matomo", "writes-local", "may-double-count"}
    by_name = {c["name"]: c for c in manifest["commands"]}
    runnable = [c for c in manifest["commands"] if not c["group"] or c["name"] == "health"]
    assert [c["name"] for c in runnable if c["effect"] not in kinds] == []
    for command in manifest["commands"]:
        flags = {f for p in command["params"] for f in p["flags"]}
        assert set(command.get("effect_flags", {})) <= flags, command["name"]
        assert set(command.get("effect_flags", {}).values()) <= kinds
    assert by_name["api"]["effect"] == "read-only"
    assert by_name["api"]["effect_flags"] == {"--allow-write": "writes-matomo"}
    assert by_name["report show"]["effect"] == "read-only"
    assert by_name["track pageview"]["effect"] == "writes-matomo"
    assert by_name["config init"]["effect"] == "writes-local"
    assert by_name["queue retry-unattributed"]["effect"] == "may-double-count"


def test_describe_text_lists_each_command_with_its_effect(capsys):
    result = invoke(capsys, "describe", "--format", "text")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split(None, 1) == ["api", "read-only (--allow-write: writes to Matomo)"]
    assert any(line.split()[:3] == ["queue", "flush", "writes"] for line in lines)
    assert any(line.startswith("queue retry-unattributed") and "may double-count" in line
               for line in lines)  # fmt: skip


def _agents_doc() -> str:
    return (ROOT / "docs" / "agents.md").read_text()


def test_agents_doc_lists_every_read_only_tool_and_every_command_that_is_never_one(capsys):
    from matokit.cli.effects import NOT_AGENT_TOOLS

    doc = _agents_doc()
    manifest = json.loads(invoke(capsys, "describe").stdout)
    tools = [c["name"] for c in manifest["commands"] if c["agent_tool"]]
    read_only = [c["name"] for c in manifest["commands"] if c["agent_tool"]
                 and c["effect"] == "read-only"]  # fmt: skip
    for name in read_only:
        tool = "matokit_" + name.replace(" ", "_").replace("-", "_")
        assert f"| `{tool}` | `matokit {name}` |" in doc, name
    for name in set(tools) - set(read_only):
        assert name.split()[-1] in doc, name  # among the --allow-write tools
    for name in NOT_AGENT_TOOLS:
        assert f"`matokit {name}`" in doc, name


def test_agents_doc_mcp_host_config_starts_matokit_mcp():
    blocks = [b.split("```", 1)[0] for b in _agents_doc().split("```json\n")[1:]]
    configs = [json.loads(b) for b in blocks if "mcpServers" in b]
    assert configs, "docs/agents.md lacks the MCP host configuration"
    (server,) = configs[0]["mcpServers"].values()
    assert server["command"] == "matokit" and server["args"][-1] == "mcp"
    assert "MATOMO_TOKEN" not in json.dumps(configs)


def _format_choices(manifest: dict) -> dict[str, list[str]]:  # type: ignore[type-arg]
    return {
        c["name"]: o.get("choices")
        for c in manifest["commands"]
        for o in c.get("options", c.get("params", []))
        if "--format" in o["flags"]
    }


def test_describe_lists_the_format_choices_of_every_command(capsys):
    manifest = json.loads(invoke(capsys, "describe").stdout)
    choices = _format_choices(manifest)
    assert choices["health"] == ["text", "json", "prometheus", "nagios"]
    assert choices["report show"] == ["table", "json", "csv", "ndjson"]
    assert choices["api"] == ["json", "csv", "tsv", "xml"]
    assert choices["queue status"] == choices["config show"] == ["text", "json"]
    assert all(choices.values()), f"--format without choices: {choices}"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["health", "--format", ""], ["text", "json", "prometheus", "nagios"]),
        (["report", "show", "pages", "-f", "n"], ["ndjson"]),
        (["queue", "status", "--format", "j"], ["json"]),
        (["config", "show", "--f"], ["--format"]),
    ],
)
def test_bash_completes_format_values(words, expected):
    """The committed bash script, run by bash, offers each command's own --format values."""
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = ROOT / "completions" / "matokit.bash"
    line = " ".join(f"'{w}'" for w in ["matokit", *words])
    code = (
        f"source '{script}'; COMP_WORDS=({line}); COMP_CWORD={len(words)}; "
        '_matokit_complete; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run([bash, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == expected, done.stderr
