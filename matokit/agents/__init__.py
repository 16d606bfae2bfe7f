"""Agent tool servers: `matokit mcp` (Model Context Protocol over stdio) and `matokit tools
serve` (an Optimizely Opal tools service), both generated from the `describe` manifest.

`tools` turns the manifest into tool specs (names, JSON Schemas, hints, argv) and needs no
third-party package; `runner` runs one tool as a `matokit` subprocess; `mcp_server` and
`opal_server` put the specs on each platform's official SDK. Those SDKs come with the optional
extra `agents` (`pip install 'matokit[agents]'`); `require` says which one is missing.
"""

from __future__ import annotations

from importlib.util import find_spec

from matokit.errors import MissingExtraError

INSTALL = "pip install 'matokit[agents]'"

# What each server imports, by import name.
MCP_MODULES = ("mcp", "anyio")
OPAL_MODULES = ("opal_tools_sdk", "fastapi", "uvicorn", "anyio")


def require(command: str, modules: tuple[str, ...]) -> None:
    """Raise MissingExtraError (exit 78) naming the install command when a module is missing."""
    missing = [name for name in modules if not _importable(name)]
    if missing:
        raise MissingExtraError(
            f"`matokit {command}` needs the optional extra `agents` "
            f"(missing: {', '.join(missing)}).",
            hint=f"Install it: {INSTALL}",
        )


def _importable(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that fails, or a module set to None
        return False
