"""`matokit config show|init|profiles|test`: inspect, write and check profiles."""

from __future__ import annotations

import sys
from typing import Any

import typer

from matokit.cli.context import state
from matokit.cli.formats import TextFormat

app = typer.Typer(help="Show, create and list configuration profiles.", no_args_is_help=True)

FORMAT_HELP = "Output format: text or json."


@app.command("show")
def show(
    ctx: typer.Context,
    fmt: TextFormat = typer.Option(TextFormat.TEXT, "--format", help=FORMAT_HELP),
) -> None:
    """Print every resolved setting and where it came from (the token only as set/missing)."""
    from matokit.cli.output import emit_json, emit_table
    from matokit.profiles import describe_settings

    settings = state(ctx).settings()
    view = describe_settings(settings)
    if fmt == "json":
        emit_json(view)
        return
    rows = [
        {
            "setting": k,
            "value": "" if v["value"] is None else str(v["value"]),
            "source": v["source"],
        }
        for k, v in view["settings"].items()
    ]
    rows.insert(
        0,
        {
            "setting": "token",
            "value": view["token"]["state"],
            "source": view["token"]["source"] or "-",
        },
    )
    rows.insert(
        0,
        {
            "setting": "config_file",
            "value": view["config_file"],
            "source": view["config_file_state"],
        },
    )
    rows.insert(
        0, {"setting": "profile", "value": view["profile"], "source": view["profile_source"]}
    )
    emit_table(rows, ["setting", "value", "source"])


@app.command("profiles")
def profiles(
    ctx: typer.Context,
    fmt: TextFormat = typer.Option(TextFormat.TEXT, "--format", help=FORMAT_HELP),
) -> None:
    """List the profiles of the config file (the active one marked)."""
    from matokit.cli.output import emit_json, emit_table
    from matokit.profiles import list_profiles

    rows = list_profiles(state(ctx).settings())
    if fmt == "json":
        emit_json(rows)
        return
    if not rows:
        from matokit.cli.output import say

        say("No profiles yet: create one with `matokit config init`.")
        return
    emit_table(
        [{**r, "active": "*" if r["active"] else ""} for r in rows],
        ["active", "name", "url", "site_id", "token"],
    )


@app.command("init")
def init(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Matomo base URL."),
    site: int | None = typer.Option(None, "--site", help="Default idSite."),
    timeout: float | None = typer.Option(None, "--timeout", help="HTTP timeout in seconds."),
    rate_limit: float | None = typer.Option(None, "--rate-limit", help="Requests per second."),
    token_stdin: bool = typer.Option(
        False, "--token-stdin", help="Read the token from standard input (first line)."
    ),
    allow_insecure_http: bool | None = typer.Option(
        None,
        "--allow-insecure-http/--no-allow-insecure-http",
        help="Allow http:// to a non-loopback host.",
        show_default=False,
    ),
) -> None:
    """Create or update a profile. The token goes only to a separate 0600 token file."""
    from matokit.cli.output import say
    from matokit.profiles import init_profile

    app_state = state(ctx)
    interactive = sys.stdin.isatty() and not token_stdin
    updates: dict[str, Any] = {
        "url": url,
        "site_id": site,
        "timeout": timeout,
        "rate_limit": rate_limit,
        "allow_insecure_http": allow_insecure_http,
    }
    token: str | None = None
    if token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise typer.BadParameter("standard input held no token", param_hint="--token-stdin")
    elif interactive:
        if updates["url"] is None:
            updates["url"] = typer.prompt("Matomo URL (e.g. https://analytics.example.com/)")
        if updates["site_id"] is None:
            updates["site_id"] = typer.prompt("Default site id", type=int, default=1)
        token = (
            typer.prompt(
                "Token (token_auth; input hidden, empty to keep the current one)",
                hide_input=True,
                default="",
                show_default=False,
            ).strip()
            or None
        )
    result = init_profile(app_state.flags, updates=updates, token=token)
    say(f"Profile {result.profile!r} written to {result.config_path} (mode 0600).")
    if result.token_path:
        say(f"Token stored in {result.token_path} (mode 0600); it is not in the config file.")


@app.command("test")
def test(
    ctx: typer.Context,
    fmt: TextFormat = typer.Option(TextFormat.TEXT, "--format", help=FORMAT_HELP),
) -> None:
    """Check the profile against Matomo in one authenticated call: version, site access, admin.

    Exit codes: 0 works, 77 token refused or site not visible, 69 Matomo unreachable,
    78 configuration missing or invalid.
    """
    from matokit.access import check_access
    from matokit.cli.output import emit_json, emit_text
    from matokit.connect import client_for

    settings = state(ctx).settings()
    with client_for(settings) as client:
        access = check_access(client, site=settings.site_id)
    if fmt == "json":
        emit_json({"profile": settings.profile, "url": settings.url, **access.as_dict()})
        return
    if access.site is None:
        where = "no site_id configured"
    else:
        where = f"{access.site_access} access to site {access.site}"
    role = "superuser" if access.superuser else "not a superuser"
    emit_text(
        f"Profile {settings.profile!r}: Matomo {access.matomo_version} at {settings.url} "
        f"accepts the token ({role}; {where})."
    )
