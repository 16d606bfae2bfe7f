"""`matokit mcp` and `matokit tools serve`: MatoKit's commands as tools for AI agents.

Both read the tool list from the live command tree (the `describe` manifest) and the effect
marks, so every new read-only command becomes a tool and nothing else does. The SDKs they use
come with the optional extra `agents`; without it both exit 78 saying how to install it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from matokit.cli.context import state

if TYPE_CHECKING:
    from matokit.agents.runner import CommandRunner
    from matokit.agents.tools import ToolSpec

app = typer.Typer(
    help="Serve MatoKit's commands as agent tools (Optimizely Opal).", no_args_is_help=True
)

ALLOW_WRITE = typer.Option(
    False,
    "--allow-write",
    help="Also offer the commands that change Matomo or local state, and api --allow-write "
    "(marked destructive). Without it only read-only commands are tools.",
)
CALL_TIMEOUT = typer.Option(
    "120s", "--call-timeout", help="Stop a tool's command after this long (a duration)."
)
DEFAULT_LISTEN = "127.0.0.1:9465"


def mcp_command(
    ctx: typer.Context,
    allow_write: bool = ALLOW_WRITE,
    call_timeout: str = CALL_TIMEOUT,
) -> None:
    """Serve MatoKit's read-only commands as MCP tools over stdio (for any MCP host).

    Global options given before `mcp` (--profile, --config, ...) apply to every tool call;
    no tool takes the URL, the token or the profile.
    """
    from matokit import agents
    from matokit.cli.output import say

    agents.require("mcp", agents.MCP_MODULES)
    specs, runner = _prepare(ctx, allow_write=allow_write, call_timeout=call_timeout)
    from matokit.agents.mcp_server import serve_stdio

    say(f"matokit: MCP server on stdio: {_summary(specs, allow_write)}")
    serve_stdio(specs, runner)


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    listen: str = typer.Option(
        DEFAULT_LISTEN, "--listen", help="HOST:PORT to listen on (port 0: any free port)."
    ),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="Allow a non-loopback listen address; a bearer token is then required.",
    ),
    bearer_token_file: str | None = typer.Option(
        None,
        "--bearer-token-file",
        help="File holding the bearer token callers must send "
        "[env: MATOKIT_TOOLS_TOKEN_FILE, or the token in MATOKIT_TOOLS_TOKEN].",
        show_default=False,
    ),
    allow_write: bool = ALLOW_WRITE,
    call_timeout: str = CALL_TIMEOUT,
) -> None:
    """Serve MatoKit's read-only commands as an Optimizely Opal tools service.

    /discovery lists the tools; POST /tools/NAME runs one. Loopback only unless
    --allow-remote, which needs a bearer token (checked on every request when set).
    """
    from matokit import agents
    from matokit.cli.health_serve import parse_listen
    from matokit.cli.output import say
    from matokit.config import tools_bearer_token
    from matokit.errors import ConfigError, UsageError
    from matokit.urls import is_loopback

    agents.require("tools serve", agents.OPAL_MODULES)
    host, port = parse_listen(listen, allow_remote=True)
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise UsageError(
            f"--listen {host}: refusing a non-loopback address; anyone who reaches it could "
            "run the tools with your Matomo token.",
            hint="Listen on 127.0.0.1 (behind a TLS proxy), or pass --allow-remote with a "
            "bearer-token (--bearer-token-file or MATOKIT_TOOLS_TOKEN).",
        )
    token = tools_bearer_token(bearer_token_file)
    if remote and token is None:
        raise ConfigError(
            f"--listen {host} with --allow-remote needs a bearer-token; none is configured.",
            hint="Put a long random token (openssl rand -hex 32) in a 0600 file and pass "
            "--bearer-token-file FILE, or set MATOKIT_TOOLS_TOKEN.",
        )
    specs, runner = _prepare(ctx, allow_write=allow_write, call_timeout=call_timeout)
    from matokit.agents.opal_server import bind, build_app, serve

    app = build_app(specs, runner, bearer_token=token)
    sock = bind(host, port)
    guard = "bearer-token auth required" if token else "no bearer-token auth (loopback only)"
    say(f"matokit: tools service: {_summary(specs, allow_write)}, {guard}")
    serve(app, sock, announce=say)


def _prepare(
    ctx: typer.Context, *, allow_write: bool, call_timeout: str
) -> tuple[list[ToolSpec], CommandRunner]:
    """The tools of this CLI and a runner that calls them with this run's global options."""
    from matokit.agents.runner import CommandRunner
    from matokit.agents.tools import ToolPolicy, tool_specs
    from matokit.cli import effects
    from matokit.cli.describe import root_command
    from matokit.cli.exit import HEALTH_COMMANDS, HealthStatus
    from matokit.cli.introspect import manifest
    from matokit.config import tool_command_environment
    from matokit.durations import parse_duration

    try:
        timeout = parse_duration(call_timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--call-timeout") from None
    app_state = state(ctx)
    app_state.settings()  # a broken configuration fails here, not in every tool call
    verdicts = tuple(int(s) for s in HealthStatus if s != HealthStatus.UNKNOWN)
    policy = ToolPolicy(
        hidden_flags=effects.AGENT_HIDDEN_FLAGS,
        local_only=effects.LOCAL_ONLY,
        ok_codes=dict.fromkeys(HEALTH_COMMANDS, verdicts),
    )
    specs = tool_specs(manifest(root_command(ctx)), policy, allow_write=allow_write)
    runner = CommandRunner(
        global_args=_global_args(app_state.flags),
        env=tool_command_environment(),
        timeout=timeout,
    )
    return specs, runner


def _global_args(flags: dict[str, Any]) -> list[str]:
    """This run's global options, for every tool call (`--profile=prod`, `--debug`)."""
    args: list[str] = []
    for flag, value in flags.items():
        if value is True:
            args.append(flag)
        elif value not in (None, False):
            args.append(f"{flag}={value}")
    return args


def _summary(specs: list[ToolSpec], allow_write: bool) -> str:
    writes = sum(not s.hints.read_only for s in specs)
    kind = f"{writes} of them change state (--allow-write)" if allow_write else "read-only"
    return f"{len(specs)} tools, {kind}"
