"""Helpers for the agent servers' end-to-end tests: an MCP client session over stdio (the
official SDK's client, starting the installed `matokit mcp`), a running `matokit tools serve`,
and what both are expected to offer, computed from `matokit describe`."""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import requests
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from matokit.agents.tools import ToolPolicy, ToolSpec, tool_specs
from matokit.cli import effects
from tests.e2e.conftest import MATOKIT, SpawnMatokit
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo

POLICY = ToolPolicy(
    hidden_flags=effects.AGENT_HIDDEN_FLAGS,
    local_only=effects.LOCAL_ONLY,
    ok_codes={"health": (0, 1, 2)},
)
Call = tuple[str, str, dict[str, Any]]  # (label, tool name, arguments)


def expected_specs(describe: Mapping[str, Any], *, allow_write: bool = False) -> list[ToolSpec]:
    """What the servers should offer, from `matokit describe`'s manifest."""
    return tool_specs(describe, POLICY, allow_write=allow_write)


def read_only_commands(describe: Mapping[str, Any]) -> set[str]:
    """The commands `describe` marks read-only and agent tools, as tool names."""
    return {
        "matokit_" + c["name"].replace(" ", "_").replace("-", "_")
        for c in describe["commands"]
        if c["effect"] == "read-only" and c["agent_tool"]
    }


def track_pageviews(fake: FakeMatomo, count: int = 6) -> None:
    """Pageviews on three pages, tracked now through bulk tracking."""
    now = int(time.time()) - 60
    items = [
        f"?idsite=1&rec=1&url=https%3A%2F%2Fexample.org%2Fpage-{i % 3}&action_name=P{i % 3}"
        f"&cid={i:016x}&cdt={now}"
        for i in range(count)
    ]
    answer = requests.post(
        fake.url + "matomo.php", json={"requests": items, "token_auth": SUPERUSER_TOKEN}, timeout=10
    )
    assert answer.json()["tracked"] == count


def api_requests(fake: FakeMatomo, method: str) -> int:
    return sum(1 for r in fake.requests if f"method={method}" in r.query)


# --- MCP --------------------------------------------------------------------------------------


@dataclass
class McpRun:
    """One MCP session: the tools listed, each call's result (as JSON-RPC sends them), the
    server's stderr."""

    tools: list[dict[str, Any]]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stderr: str = ""

    def tool(self, name: str) -> dict[str, Any]:
        (found,) = [t for t in self.tools if t["name"] == name]
        return found


def run_mcp(
    env: Mapping[str, str],
    cwd: Path,
    args: Sequence[str],
    calls: Sequence[Call] = (),
    *,
    timeout: float = 90,
) -> McpRun:
    """Start `matokit ARGS` (ending in `mcp ...`) as an MCP server, list its tools, make the
    calls, close the session; every step bounded by `timeout`."""
    errlog = cwd / f"mcp-stderr-{time.monotonic_ns()}.log"

    async def session() -> McpRun:
        params = StdioServerParameters(
            command=str(MATOKIT), args=list(args), env=dict(env), cwd=str(cwd)
        )
        with anyio.fail_after(timeout), errlog.open("w") as err:
            async with (
                stdio_client(params, errlog=err) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                listed = await client.list_tools()
                run = McpRun([t.model_dump(by_alias=True, mode="json") for t in listed.tools])
                for label, name, arguments in calls:
                    result = await client.call_tool(name, arguments)
                    run.results[label] = result.model_dump(by_alias=True, mode="json")
        return run

    run = anyio.run(session)
    run.stderr = errlog.read_text()
    errlog.unlink()
    return run


# --- Opal -------------------------------------------------------------------------------------


@dataclass
class Service:
    """A running `matokit tools serve`: its base URL and everything it wrote to stderr."""

    url: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/)")


@contextlib.contextmanager
def tools_service(
    spawn: SpawnMatokit, *args: str, env: Mapping[str, str], timeout: float = 30
) -> Iterator[Service]:
    """`matokit ARGS` (ending in `tools serve ...`) until it announces its address; stopped
    with SIGTERM afterwards, its remaining stderr collected."""
    proc = spawn(*args, env=env)
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    url = None
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            lines.append(line)
            found = _LISTENING.search(line)
            url = found[1] if found else None
    assert url is not None, f"tools serve did not start (exit {proc.poll()}):\n{''.join(lines)}"
    service = Service(url, proc, lines)
    try:
        yield service
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=15)
        lines.append(rest)
