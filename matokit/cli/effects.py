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
    "track access-log": {"--queue": WRITES_LOCAL, "--dry-run": READ_ONLY},
    "track event": _TRACK_FLAGS,
    "track goal": _TRACK_FLAGS,
    "track import": {"--queue": WRITES_LOCAL},
    "track order": _TRACK_FLAGS,
    "track pageview": _TRACK_FLAGS,
}


def effect_of(path: str) -> str | None:
    """The effect of the command at `path` ("queue flush"), None when it has no entry."""
    return COMMANDS.get(path)
