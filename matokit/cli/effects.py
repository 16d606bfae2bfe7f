"""What each command does to the world, for `describe` (and so for agent platforms).

Kept next to the CLI as data; a test fails when a command has no entry, so a new command
cannot reach an agent's tool list unclassified.
"""

from __future__ import annotations

READ_ONLY = "read-only"  # reads Matomo or local state; changes nothing (a report fills its cache)
WRITES_MATOMO = "writes-matomo"  # sends hits to Matomo or changes Matomo's data or settings
WRITES_LOCAL = "writes-local"  # changes files on this machine: config, journal, cache, output
MAY_DOUBLE_COUNT = "may-double-count"  # re-sends hits that Matomo may already hold

LABELS = {
    READ_ONLY: "read-only",
    WRITES_MATOMO: "writes to Matomo",
    WRITES_LOCAL: "writes locally",
    MAY_DOUBLE_COUNT: "may double-count",
}

_TRACK_FLAGS = {"--queue": WRITES_LOCAL, "--dry-run": READ_ONLY}

# Command path -> its effect with default options. Groups that only hold subcommands have none.
COMMANDS: dict[str, str] = {
    "api": READ_ONLY,
    "cache clear": WRITES_LOCAL,
    "cache stats": READ_ONLY,
    "completions": READ_ONLY,
    "config init": WRITES_LOCAL,
    "config profiles": READ_ONLY,
    "config show": READ_ONLY,
    "config test": READ_ONLY,
    "describe": READ_ONLY,
    "health": READ_ONLY,
    "health serve": READ_ONLY,
    "mcp": READ_ONLY,  # serves the read-only tools unless --allow-write
    "queue export": READ_ONLY,
    "queue flush": WRITES_MATOMO,
    "queue list": READ_ONLY,
    "queue migrate": WRITES_LOCAL,  # moves the journal between SQLite and Redis
    "queue purge": WRITES_LOCAL,
    "queue reconcile": WRITES_LOCAL,  # reads Matomo (lookups), changes only the journal
    "queue retry-dead": WRITES_LOCAL,
    "queue retry-unattributed": MAY_DOUBLE_COUNT,
    "queue status": READ_ONLY,
    "report list": READ_ONLY,
    "report show": READ_ONLY,
    "report summary": READ_ONLY,
    "setup exactly-once": WRITES_MATOMO,  # creates or activates a custom dimension
    "tools serve": READ_ONLY,  # serves the read-only tools unless --allow-write
    "track access-log": WRITES_MATOMO,
    "track event": WRITES_MATOMO,
    "track goal": WRITES_MATOMO,
    "track import": WRITES_MATOMO,
    "track order": WRITES_MATOMO,
    "track pageview": WRITES_MATOMO,
}

# Options that change a command's effect: command path -> flag -> effect with that flag.
FLAGS: dict[str, dict[str, str]] = {
    "api": {"--allow-write": WRITES_MATOMO},
    "health": {"--output": WRITES_LOCAL},
    "mcp": {"--allow-write": WRITES_MATOMO},
    "tools serve": {"--allow-write": WRITES_MATOMO},
    "track access-log": {"--queue": WRITES_LOCAL, "--dry-run": READ_ONLY},
    "track event": _TRACK_FLAGS,
    "track goal": _TRACK_FLAGS,
    "track import": {"--queue": WRITES_LOCAL},
    "track order": _TRACK_FLAGS,
    "track pageview": _TRACK_FLAGS,
}


# --- agent tools (`matokit mcp`, `matokit tools serve`) -------------------------------------
# Every command with an effect is an agent tool (read-only ones always, the others only with
# --allow-write) except these, whatever flag the operator gives, and why.
NOT_AGENT_TOOLS: dict[str, str] = {
    "health serve": "a long-running server, not a call that returns",
    "mcp": "a long-running server, not a call that returns",
    "tools serve": "a long-running server, not a call that returns",
    "config init": "it chooses the Matomo URL (where the token is sent) and the token file",
    "queue migrate": "it moves the journal to a Redis URL or a path the caller names",
    "track import": "it reads a file of this machine and sends its content",
    "track access-log": "it reads log files of this machine and sends them (--follow never ends)",
}

# Options an agent tool never takes, whatever flag the operator gives: a file on this machine
# (health --output), or a rendering choice that JSON has no use for (--chart refuses it).
# `--format` is never a parameter either: a tool always asks for JSON.
AGENT_HIDDEN_FLAGS: dict[str, frozenset[str]] = {
    "health": frozenset({"--output"}),
    "report list": frozenset({"--csv-safe"}),
    "report show": frozenset({"--chart", "--csv-safe"}),
    "report summary": frozenset({"--csv-safe"}),
}

# Commands that never contact Matomo (only local state): MCP's openWorldHint is false for them.
LOCAL_ONLY: frozenset[str] = frozenset(
    {
        "cache clear",
        "cache stats",
        "completions",
        "config profiles",
        "config show",
        "describe",
        "queue export",
        "queue list",
        "queue purge",
        "queue retry-dead",
        "queue retry-unattributed",
        "queue status",
    }
)


def effect_of(path: str) -> str | None:
    """The effect of the command at `path` ("queue flush"), None when it has no entry."""
    return COMMANDS.get(path)
