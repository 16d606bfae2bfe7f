"""Agent tools from the describe manifest: which commands, which parameters, schemas, argv."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from matokit.agents.tools import Hints, ToolParam, ToolPolicy, ToolSpec, tool_name, tool_specs
from matokit.cli import effects
from matokit.errors import UsageError
from tests.clirunner import invoke

POLICY = ToolPolicy(
    hidden_flags=effects.AGENT_HIDDEN_FLAGS,
    local_only=effects.LOCAL_ONLY,
    ok_codes={"health": (0, 1, 2)},
)
# Never a parameter of any tool: the token, where it goes, the profile, output files, JSON.
FORBIDDEN_KEYS = {
    "token",
    "token_file",
    "token_stdin",
    "bearer_token_file",
    "profile",
    "config",
    "output",
    "format",
    "to",
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    import contextlib
    import io

    from matokit.cli import run

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(["describe", "--format", "json"]) == 0
    return json.loads(out.getvalue())


def _commands(manifest: dict[str, Any], *, read_only: bool) -> set[str]:
    return {
        c["name"]
        for c in manifest["commands"]
        if c["agent_tool"] and (c["effect"] == "read-only" or not read_only)
    }


def test_tools_are_the_read_only_commands_of_describe(manifest):
    specs = tool_specs(manifest, POLICY)
    assert {s.name for s in specs} == {tool_name(c) for c in _commands(manifest, read_only=True)}
    assert {"matokit_api", "matokit_report_show", "matokit_queue_status"} <= {s.name for s in specs}
    assert all(s.hints == Hints(True, False, True, s.hints.open_world) for s in specs)


def test_allow_write_adds_every_other_agent_command_marked_destructive(manifest):
    specs = {s.name: s for s in tool_specs(manifest, POLICY, allow_write=True)}
    assert set(specs) == {tool_name(c) for c in _commands(manifest, read_only=False)}
    track = specs["matokit_track_event"]
    assert track.hints == Hints(
        read_only=False, destructive=True, idempotent=False, open_world=True
    )
    assert specs["matokit_cache_clear"].hints.open_world is False
    # api takes --allow-write now, and so its hints are those of a write.
    assert "allow_write" in {p.key for p in specs["matokit_api"].params}
    assert specs["matokit_api"].effect == "writes-matomo"
    assert specs["matokit_api"].hints.destructive


@pytest.mark.parametrize("command", sorted(effects.NOT_AGENT_TOOLS))
def test_servers_and_commands_that_name_files_or_urls_are_never_tools(manifest, command):
    assert tool_name(command) not in {
        s.name for s in tool_specs(manifest, POLICY, allow_write=True)
    }
    (entry,) = [c for c in manifest["commands"] if c["name"] == command]
    assert entry["agent_tool"] is False


def test_effect_data_names_real_commands_and_flags(manifest):
    by_name = {c["name"]: c for c in manifest["commands"]}
    assert set(effects.NOT_AGENT_TOOLS) <= set(by_name)
    assert set(by_name) >= effects.LOCAL_ONLY
    for command, flags in effects.AGENT_HIDDEN_FLAGS.items():
        assert set(flags) <= {f for p in by_name[command]["params"] for f in p["flags"]}, command


@pytest.mark.parametrize("allow_write", [False, True])
def test_no_tool_takes_the_token_the_url_the_profile_or_a_file(manifest, allow_write):
    for spec in tool_specs(manifest, POLICY, allow_write=allow_write):
        keys = {p.key for p in spec.params}
        assert not keys & FORBIDDEN_KEYS, spec.name
        assert not any("token" in key or "password" in key for key in keys), spec.name
        # `url` only as the page a pageview tracks, never Matomo's URL.
        assert "url" not in keys or spec.name == "matokit_track_pageview", spec.name
        if not allow_write:
            assert "allow_write" not in keys and "queue" not in keys, spec.name
        assert spec.json_format or spec.name in {"matokit_completions", "matokit_queue_export"}


@pytest.mark.parametrize("allow_write", [False, True])
def test_every_input_schema_is_a_valid_json_schema_object(manifest, allow_write):
    for spec in tool_specs(manifest, POLICY, allow_write=allow_write):
        schema = spec.input_schema()
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])


def test_report_show_schema_and_argv(manifest):
    (spec,) = [s for s in tool_specs(manifest, POLICY) if s.name == "matokit_report_show"]
    props = spec.input_schema()["properties"]
    assert spec.input_schema()["required"] == ["name"]
    assert props["limit"] == {"type": "integer", "description": "Rows per period (-1: all).",
                              "default": 25}  # fmt: skip
    assert "chart" not in props and "csv_safe" not in props  # JSON has no use for them
    argv = spec.argv({"name": "pages", "period": "week", "limit": 5, "no_cache": True})
    assert argv == [
        "report", "show", "--period=week", "--limit=5", "--no-cache", "--format=json", "--",
        "pages",
    ]  # fmt: skip


def test_health_exit_codes_1_and_2_are_verdicts_not_errors(manifest):
    (spec,) = [s for s in tool_specs(manifest, POLICY) if s.name == "matokit_health"]
    assert spec.ok_codes == (0, 1, 2)


# --- arguments -> argv, on a synthetic spec -------------------------------------------------

SPEC = ToolSpec(
    name="matokit_x",
    command=("x",),
    description="x",
    effect="read-only",
    params=(
        ToolParam("method", None, "string", required=True),
        ToolParam("params", None, "string", multiple=True),
        ToolParam("period", "--period", "string", choices=("day", "week")),
        ToolParam("limit", "--limit", "integer"),
        ToolParam("ratio", "--ratio", "number"),
        ToolParam("dead", "--dead", "boolean", default=False),
        ToolParam("insecure", "--insecure", "boolean", off_flag="--no-insecure"),
        ToolParam("item", "--item", "string", multiple=True),
    ),
    hints=Hints(True, False, True, True),
    json_format=True,
)


@pytest.mark.parametrize(
    ("arguments", "argv"),
    [
        ({"method": "A.b"}, ["x", "--format=json", "--", "A.b"]),
        # A value that looks like a flag stays a value: the option's own, or after `--`.
        ({"method": "--allow-write"}, ["x", "--format=json", "--", "--allow-write"]),
        (
            {"method": "A.b", "params": ["k=v", "--allow-write"]},
            ["x", "--format=json", "--", "A.b", "k=v", "--allow-write"],
        ),
        (
            {"method": "A.b", "item": ["--debug"]},
            ["x", "--item=--debug", "--format=json", "--", "A.b"],
        ),
        (
            {"method": "A.b", "dead": True, "insecure": False, "limit": -1, "ratio": 0.5},
            ["x", "--limit=-1", "--ratio=0.5", "--dead", "--no-insecure", "--format=json", "--",
             "A.b"],
        ),
        ({"method": "A.b", "dead": False, "period": None}, ["x", "--format=json", "--", "A.b"]),
        ({"method": "A.b", "period": "week"}, ["x", "--period=week", "--format=json", "--", "A.b"]),
    ],
)  # fmt: skip
def test_arguments_become_one_word_each(arguments, argv):
    assert SPEC.argv(arguments) == argv


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"method": "A.b", "allow_write": True}, "has no parameter 'allow_write'"),
        ({"method": "A.b", "--allow-write": True}, "has no parameter '--allow-write'"),
        ({}, "needs the parameter 'method'"),
        ({"method": "A.b", "limit": "5"}, "'limit' must be an integer"),
        ({"method": "A.b", "limit": True}, "'limit' must be an integer"),
        ({"method": "A.b", "ratio": float("nan")}, "'ratio' must be a number"),
        ({"method": "A.b", "dead": "yes"}, "'dead' must be true or false"),
        ({"method": "A.b", "period": "year"}, "'period' must be one of day, week"),
        ({"method": "A.b", "params": "k=v"}, "'params' must be a list"),
        ({"method": {"a": 1}}, "'method' must be a string"),
        ({"method": "A.b\x00"}, "NUL"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(arguments, message):
    with pytest.raises(UsageError, match=message):
        SPEC.argv(arguments)


def test_choices_become_an_enum_and_lists_an_array():
    props = SPEC.input_schema()["properties"]
    assert props["period"] == {"type": "string", "enum": ["day", "week"]}
    assert props["params"] == {"type": "array", "items": {"type": "string"}}
    assert props["dead"] == {"type": "boolean", "default": False}
    assert SPEC.input_schema()["required"] == ["method"]


def test_a_manifest_of_another_schema_is_refused():
    with pytest.raises(ValueError, match=r"matokit\.describe/1"):
        tool_specs({"schema": "other/2", "commands": []}, POLICY)


def test_describe_marks_which_commands_are_agent_tools(capsys):
    data = json.loads(invoke(capsys, "describe").stdout)
    by_name = {c["name"]: c for c in data["commands"]}
    assert by_name["report show"]["agent_tool"] is True
    assert by_name["mcp"]["agent_tool"] is False and by_name["mcp"]["effect"] == "read-only"
    assert by_name["tools serve"]["effect_flags"] == {"--allow-write": "writes-matomo"}
    assert by_name["tools"]["agent_tool"] is False  # a group that only holds `serve`
