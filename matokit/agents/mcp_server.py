"""`matokit mcp`: the agent tools as a Model Context Protocol server over stdio.

Built on the official SDK's low-level server (`mcp.server.lowlevel.Server`), which takes each
tool's JSON Schema and annotations as given: the schemas come from `tools.ToolSpec`, never from
Python signatures. stdout carries only the protocol (the SDK's `stdio_server` points file
descriptor 1 at stderr while it serves, so a stray write lands there) and each command's
stdout comes back through a pipe; logs and the commands' stderr go to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matokit import __version__
from matokit.agents.runner import CommandRunner, ToolResult
from matokit.agents.tools import ToolSpec
from matokit.errors import UsageError

if TYPE_CHECKING:
    import mcp.types as mcp_types
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server

INSTRUCTIONS = (
    "Tools that run MatoKit commands against the operator's Matomo (web analytics): reports, "
    "raw Reporting API calls, health checks, the local retry journal. Each result is "
    "{exit_code, data, stderr}: data is the command's JSON output; exit_code follows "
    "`matokit describe` (0 success, 2 bad argument, 65 data error, 69 Matomo unavailable, "
    "77 permission, 78 configuration). The token is configured by the operator, never a "
    "parameter."
)
# The shape of every result's structured content.
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "exit_code": {"type": ["integer", "null"], "description": "null: timed out"},
        "data": {"description": "the command's JSON output"},
        "stderr": {"type": "string", "description": "the command's messages"},
    },
    "required": ["exit_code", "data"],
}


def mcp_tool(spec: ToolSpec) -> mcp_types.Tool:
    """The MCP tool for one spec: name, description, JSON Schemas and annotations."""
    import mcp.types as types

    hints = spec.hints
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=spec.input_schema(),
        output_schema=OUTPUT_SCHEMA,
        annotations=types.ToolAnnotations(
            title=f"matokit {' '.join(spec.command)}",
            read_only_hint=hints.read_only,
            destructive_hint=hints.destructive,
            idempotent_hint=hints.idempotent,
            open_world_hint=hints.open_world,
        ),
    )


def call_result(result: ToolResult) -> mcp_types.CallToolResult:
    """A tool result as MCP's CallToolResult: structured JSON and the same as text."""
    import mcp.types as types

    payload = result.as_dict()
    text = json.dumps(payload, ensure_ascii=False)
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content=payload,
        is_error=result.is_error,
    )


def build_server(specs: Sequence[ToolSpec], runner: CommandRunner) -> Server[Any]:
    """The low-level MCP server offering `specs`, each call run by `runner`."""
    import mcp.types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    by_name = {spec.name: spec for spec in specs}
    tools = [mcp_tool(spec) for spec in specs]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        spec = by_name.get(params.name)
        if spec is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        try:
            result = await runner.run(spec, params.arguments)
        except UsageError as exc:
            message = exc.message + (f" {exc.hint}" if exc.hint else "")
            result = ToolResult(2, None, f"matokit: error: {message}", is_error=True)
        return call_result(result)

    return Server(
        "matokit",
        version=__version__,
        title="MatoKit",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(specs: Sequence[ToolSpec], runner: CommandRunner) -> None:
    """Serve `specs` over stdin/stdout until the client closes stdin."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(specs, runner)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
