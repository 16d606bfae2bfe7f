"""Assembles the Typer application: global options and every command group."""

from __future__ import annotations

from typing import Any

import typer

from matokit import __version__
from matokit.cli.context import state


def _opt(name: str, help_text: str) -> Any:
    return typer.Option(None, name, help=help_text, show_default=False)


def _flag(*names: str, help: str) -> Any:
    return typer.Option(False, *names, help=help)


def build_app() -> typer.Typer:
    """The Typer application with every command group registered."""
    from matokit.cli import (
        agents,
        api,
        config,
        describe,
        health,
        queue,
        report,
        setup,
        track,
        track_accesslog,
    )
    from matokit.cli import cache as cache_cli

    app = typer.Typer(
        name="matokit",
        help="Operate Matomo from the shell, cron jobs and CI: durable tracking, cached "
        "reports, monitoring-grade health.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_global_options)
    app.add_typer(config.app, name="config")
    if not any(c.name == "access-log" for c in track.app.registered_commands):
        track.app.command("access-log")(track_accesslog.access_log_command)
    app.add_typer(track.app, name="track")
    app.add_typer(queue.app, name="queue")
    app.add_typer(report.app, name="report")
    app.command("api")(api.api_command)
    app.add_typer(health.app, name="health")
    app.add_typer(cache_cli.app, name="cache")
    app.add_typer(setup.app, name="setup")
    app.command("describe")(describe.describe_command)
    app.command("completions")(describe.completions_command)
    app.command("mcp")(agents.mcp_command)
    app.add_typer(agents.app, name="tools")
    return app


def _global_options(
    ctx: typer.Context,
    profile: str | None = _opt("--profile", "Profile of the config file [env: MATOKIT_PROFILE]"),
    url: str | None = _opt("--url", "Matomo base URL [env: MATOMO_URL]"),
    site: str | None = _opt("--site", "Default idSite [env: MATOMO_SITE_ID]"),
    token_file: str | None = _opt(
        "--token-file", "File holding token_auth [env: MATOMO_TOKEN_FILE]"
    ),
    config_path: str | None = _opt("--config", "Config file [env: MATOKIT_CONFIG]"),
    timeout: str | None = _opt("--timeout", "HTTP timeout in seconds [env: MATOKIT_TIMEOUT]"),
    log_format: str | None = _opt(
        "--log-format", "Logs on stderr: text|json [env: MATOKIT_LOG_FORMAT]"
    ),
    verbose: bool = _flag("--verbose", "-v", help="More log output (info)."),
    quiet: bool = _flag("--quiet", "-q", help="Only errors on stderr."),
    debug: bool = _flag("--debug", help="Debug logs, HTTP traces and tracebacks (token redacted)."),
    version: bool = _flag("--version", help="Print `matokit X.Y.Z` and exit."),
) -> None:
    """Operate Matomo from the shell, cron jobs and CI."""
    if version:
        typer.echo(f"matokit {__version__}")
        raise typer.Exit(0)
    app_state = state(ctx)
    app_state.flags = {
        "--profile": profile,
        "--url": url,
        "--site": site,
        "--token-file": token_file,
        "--config": config_path,
        "--timeout": timeout,
        "--log-format": log_format,
        "--verbose": verbose or None,
        "--quiet": quiet or None,
        "--debug": debug or None,
    }
    app_state.command = ctx.invoked_subcommand or ""
    # Logging before the profile is read (and for errors while it is): flag > env > .env.
    # The first command to resolve the settings sets it up again with the profile's values.
    from matokit.config import early_profile, resolve_logging

    fmt, level = resolve_logging(app_state.flags)
    app_state.configure_logging(fmt, level, profile=early_profile(app_state.flags))
