"""Run one agent tool: the real `matokit` command in a subprocess, JSON back.

A subprocess, not the CLI in this process: the MCP server's stdout is its protocol stream and
a command writes its output to stdout, so in-process it would need stdout swapped under
concurrent calls; in a child, stdout is a pipe of its own, stderr another, and a crash, a hang
or a leaked file descriptor stays in the child (ADR-0011). The child gets the server's global
options and environment without the tools service's bearer token, no standard input, and a
time limit after which it is killed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matokit.agents.tools import ToolSpec

_log = logging.getLogger("matokit.agents")
STDERR_LIMIT = 4000  # characters of the command's stderr returned with a result
MAX_PARALLEL = 4  # commands one server runs at once; further calls wait their turn


@dataclass(frozen=True)
class ToolResult:
    """What one tool call did: the exit status and the command's output as JSON."""

    exit_code: int | None  # None: killed after the time limit
    data: Any  # the parsed --format json output (JSON Lines: a list; else the text)
    stderr: str = ""
    is_error: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The result as one JSON object (what both servers return)."""
        result: dict[str, Any] = {"exit_code": self.exit_code, "data": self.data}
        if self.stderr:
            result["stderr"] = self.stderr
        return result


def parse_output(text: str) -> Any:
    """A command's stdout as JSON: one document, JSON Lines as a list, else the text itself
    (None when empty)."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except ValueError:
        return text


class CommandRunner:
    """Runs tool calls as `python -m matokit [GLOBAL OPTIONS] COMMAND ...` subprocesses."""

    def __init__(
        self,
        *,
        global_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        program: Sequence[str] = (sys.executable, "-m", "matokit"),
    ) -> None:
        self.prefix = [*program, *global_args]
        self.env = dict(env) if env is not None else None
        self.timeout = timeout
        self._slots: Any = None  # an anyio.Semaphore, made in the event loop that uses it

    def argv(self, spec: ToolSpec, arguments: Mapping[str, Any] | None) -> list[str]:
        """The whole command line of a call (UsageError for bad arguments)."""
        return [*self.prefix, *spec.argv(arguments)]

    async def run(self, spec: ToolSpec, arguments: Mapping[str, Any] | None) -> ToolResult:
        """Run the tool's command; UsageError (before anything runs) for bad arguments."""
        import anyio

        argv = self.argv(spec, arguments)
        if self._slots is None:
            self._slots = anyio.Semaphore(MAX_PARALLEL)
        async with self._slots:
            _log.info("tool call", extra={"tool": spec.name})
            with anyio.move_on_after(self.timeout) as scope:
                done = await anyio.run_process(
                    argv, stdin=subprocess.DEVNULL, check=False, env=self.env
                )
        if scope.cancelled_caught:
            _log.warning("tool call timed out", extra={"tool": spec.name})
            message = f"matokit: error: the command did not finish within {self.timeout:g} s"
            return ToolResult(None, None, message, is_error=True)
        stdout = done.stdout.decode("utf-8", errors="replace")
        stderr = done.stderr.decode("utf-8", errors="replace").strip()
        if len(stderr) > STDERR_LIMIT:
            stderr = "..." + stderr[-STDERR_LIMIT:]
        code = done.returncode
        _log.info("tool call done", extra={"tool": spec.name, "exit_code": code})
        return ToolResult(code, parse_output(stdout), stderr, is_error=code not in spec.ok_codes)
