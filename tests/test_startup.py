"""Startup stays lean: heavy libraries are imported only where used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("requests", "requests_cache", "rich", "urllib3", "prometheus_client")
# The optional extra `agents` (ADR-0011): only `matokit mcp` and `matokit tools serve` import
# it, or MatoKit's own modules that use it.
AGENTS = (
    "mcp", "opal_tools_sdk", "fastapi", "uvicorn", "starlette", "pydantic", "anyio", "httpx",
    "matokit.agents.mcp_server", "matokit.agents.opal_server", "matokit.agents.runner",
)  # fmt: skip


def _imported(args: list[str], watched: tuple[str, ...] = HEAVY) -> set[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['matokit', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('matokit', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(m for m in {watched!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return {m for m in last.split(",") if m}


def test_version_imports_no_heavy_library():
    assert _imported(["--version"]) == set()


def test_help_imports_no_network_library():
    assert not _imported(["--help"]) & {
        "requests",
        "requests_cache",
        "urllib3",
        "prometheus_client",
    }


def test_only_the_prometheus_format_imports_prometheus_client():
    # ADR-0005: the library costs import time, so `health` pays it only when it writes metrics.
    assert "prometheus_client" not in _imported(["health", "--check", "cache", "--format", "json"])
    assert "prometheus_client" in _imported(
        ["health", "--check", "cache", "--format", "prometheus"]
    )


def test_no_command_but_the_agent_servers_imports_the_agents_extra():
    import importlib.util

    assert importlib.util.find_spec("mcp") is not None, "the test extra brings `agents`"
    for args in (["--version"], ["--help"], ["describe"], ["queue", "status"], ["mcp", "--help"]):
        assert _imported(args, AGENTS) == set(), args
