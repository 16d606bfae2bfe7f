"""Agent tools from the `describe` manifest: names, JSON Schemas, hints and the argv to run.

Both tool servers take their tools from here, and this takes them from the manifest that
`matokit describe` prints (built from the live Click tree), so a tool cannot drift from the
command it runs and there is no list of tools to keep by hand. Which commands and options an
agent may reach is decided by the manifest's effect marks and a `ToolPolicy` the CLI passes in
(`matokit/cli/effects.py` holds its data):

- a command with an effect and `agent_tool` true is a tool when it is read-only, and with
  `allow_write` whatever its effect;
- an option in the command's `effect_flags` that changes the effect (api `--allow-write`,
  track `--queue`) is a parameter only with `allow_write`; the policy's hidden flags (files on
  this machine) never are, and neither is `--format`: a tool always asks for `--format json`;
- global options are not parameters: the server's own (`matokit --profile prod mcp`) apply to
  every call, so no tool can choose the Matomo URL, the token or the profile.

An argument becomes `--flag=value` (never a separate word, so a value that starts with `-`
stays a value) and positional arguments come after `--`; an argument the tool does not list is
refused, so a flag cannot be smuggled in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matokit.errors import UsageError

READ_ONLY = "read-only"
TOOL_PREFIX = "matokit_"
# Effects from least to most consequential: a tool's hints follow the worst it can do.
_EFFECT_ORDER = ("read-only", "writes-local", "may-double-count", "writes-matomo")
_SCALARS = {"string": str, "integer": int, "number": float, "boolean": bool}


@dataclass(frozen=True)
class ToolPolicy:
    """What the CLI knows beyond the manifest: flags never offered, commands that stay on
    this machine, and exit codes that are verdicts rather than errors (health's 1 and 2)."""

    hidden_flags: Mapping[str, Iterable[str]] = field(default_factory=dict)
    local_only: frozenset[str] = frozenset()
    ok_codes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Hints:
    """MCP's tool annotations (and Opal's hints), from the effect marks."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool


@dataclass(frozen=True)
class ToolParam:
    """One parameter: an option (`flag` set) or a positional argument (`flag` None)."""

    key: str
    flag: str | None
    type: str
    help: str = ""
    required: bool = False
    multiple: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None
    off_flag: str | None = None  # `--no-x` of a boolean that has one

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this parameter's value."""
        item: dict[str, Any] = {"type": self.type}
        if self.choices is not None:
            item["enum"] = list(self.choices)
        schema = {"type": "array", "items": item} if self.multiple else dict(item)
        if self.help:
            schema["description"] = self.help
        default = _default(self)
        if default is not None:
            schema["default"] = default
        return schema

    def words(self, value: Any) -> list[str]:
        """The command-line words for `value`, checked against the schema."""
        if self.multiple:
            if not isinstance(value, list):
                raise _bad(self, "a list", value)
            values = value
        else:
            values = [value]
        words: list[str] = []
        for one in values:
            text = self._text(one)
            if self.type == "boolean":
                flag = self.flag if one else self.off_flag
                words += [flag] if flag else []
            else:
                words.append(f"{self.flag}={text}" if self.flag else text)
        return words

    def _text(self, value: Any) -> str:
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise _bad(self, "true or false", value)
            return ""
        if self.type == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad(self, "an integer", value)
        if self.type == "number" and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _bad(self, "a number", value)
        # The CLI parses a few numeric options itself (queue list --limit): accept numbers.
        if self.type == "string" and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            raise _bad(self, "a string", value)
        text = str(value)
        if "\x00" in text:
            raise UsageError(f"Parameter {self.key!r} contains a NUL character.")
        if self.choices is not None and text not in self.choices:
            raise _bad(self, "one of " + ", ".join(self.choices), value)
        return text


@dataclass(frozen=True)
class ToolSpec:
    """One agent tool: the command it runs and how it is described and called."""

    name: str
    command: tuple[str, ...]
    description: str
    effect: str
    params: tuple[ToolParam, ...]
    hints: Hints
    json_format: bool  # the command takes --format json (else its output is taken as it is)
    ok_codes: tuple[int, ...] = (0,)

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema (an object) of the tool's arguments."""
        return {
            "type": "object",
            "properties": {p.key: p.schema() for p in self.params},
            "required": [p.key for p in self.params if p.required],
            "additionalProperties": False,
        }

    def argv(self, arguments: Mapping[str, Any] | None) -> list[str]:
        """The command line (after `matokit [GLOBAL OPTIONS]`) for `arguments`.

        Raises UsageError for an argument the tool does not take, a missing required one or a
        value of the wrong type; nothing runs then.
        """
        given = {k: v for k, v in (arguments or {}).items() if v is not None}
        known = {p.key for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            takes = ", ".join(sorted(known)) or "no parameters"
            raise UsageError(
                f"Tool {self.name} has no parameter {unknown[0]!r}.", hint=f"It takes: {takes}."
            )
        missing = [p.key for p in self.params if p.required and p.key not in given]
        if missing:
            raise UsageError(f"Tool {self.name} needs the parameter {missing[0]!r}.")
        options: list[str] = []
        positional: list[str] = []
        for param in self.params:
            if param.key in given:
                words = param.words(given[param.key])
                (options if param.flag else positional).extend(words)
        argv = [*self.command, *options]
        if self.json_format:
            argv.append("--format=json")
        return [*argv, "--", *positional] if positional else argv


def tool_name(command: str) -> str:
    """`queue retry-dead` -> `matokit_queue_retry_dead`."""
    return TOOL_PREFIX + command.replace(" ", "_").replace("-", "_")


def tool_specs(
    manifest: Mapping[str, Any], policy: ToolPolicy, *, allow_write: bool = False
) -> list[ToolSpec]:
    """The tools of a `matokit.describe/1` manifest: read-only ones, or all with allow_write."""
    if manifest.get("schema") != "matokit.describe/1":
        raise ValueError(f"not a matokit.describe/1 manifest: {manifest.get('schema')!r}")
    specs = []
    for command in manifest["commands"]:
        effect = command.get("effect")
        if effect is None or not command.get("agent_tool"):
            continue
        if effect != READ_ONLY and not allow_write:
            continue
        specs.append(_spec(command, policy, allow_write=allow_write))
    return specs


def _spec(command: Mapping[str, Any], policy: ToolPolicy, *, allow_write: bool) -> ToolSpec:
    name = command["name"]
    hidden = set(policy.hidden_flags.get(name, ()))
    changes = {f for f, e in command.get("effect_flags", {}).items() if e != READ_ONLY}
    if not allow_write:
        hidden |= changes
    params: list[ToolParam] = []
    json_format = False
    effects = [command["effect"]]
    for raw in command["params"]:
        flags = set(raw["flags"])
        if "--format" in flags:
            json_format = "json" in (raw.get("choices") or ())
            continue
        if flags & hidden:
            continue
        effects += [command["effect_flags"][f] for f in sorted(flags & changes)]
        params.append(_param(raw))
    keys = [p.key for p in params]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name}: two parameters share a name: {keys}")
    effect = max(effects, key=_EFFECT_ORDER.index)
    read_only = effect == READ_ONLY
    description = command["help"] or f"matokit {name}"
    return ToolSpec(
        name=tool_name(name),
        command=tuple(name.split()),
        description=f"{description} (matokit {name}; effect: {effect})",
        effect=effect,
        params=tuple(params),
        hints=Hints(
            read_only=read_only,
            destructive=not read_only,
            idempotent=read_only,
            open_world=name not in policy.local_only,
        ),
        json_format=json_format,
        ok_codes=tuple(policy.ok_codes.get(name, (0,))),
    )


def _param(raw: Mapping[str, Any]) -> ToolParam:
    flags: Sequence[str] = raw["flags"]
    if raw["kind"] == "argument":
        key, flag, off = raw["name"], None, None
    else:
        long = [f for f in flags if f.startswith("--")]
        flag = long[0] if long else flags[0]
        key = flag.lstrip("-").replace("-", "_")
        off = long[1] if raw["type"] == "boolean" and len(long) > 1 else None
    choices = raw.get("choices")
    return ToolParam(
        key=key,
        flag=flag,
        type=raw["type"] if raw["type"] in _SCALARS else "string",
        help=raw.get("help") or "",
        required=bool(raw["required"]),
        multiple=bool(raw["multiple"]),
        default=raw.get("default"),
        choices=tuple(str(c) for c in choices) if choices is not None else None,
        off_flag=off,
    )


def _default(param: ToolParam) -> Any:
    """The default as a value of the parameter's type, None when there is none to show."""
    value = param.default
    if value is None or param.multiple:
        return None
    if param.type == "string":
        return str(value)
    expected = _SCALARS[param.type]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return value
    return value if isinstance(value, expected) else None


def _bad(param: ToolParam, expected: str, value: Any) -> UsageError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return UsageError(f"Parameter {param.key!r} must be {expected}, not {shown}.")
