"""`matokit api METHOD [key=value ...]`: any Reporting API method, raw answer on stdout."""

from __future__ import annotations

import re

import typer

from matokit.cli.context import state
from matokit.cli.formats import ApiFormat


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`key=value` words into a dict; a malformed word or a token is a usage error."""
    from matokit.errors import UsageError

    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not re.match(r"^[A-Za-z_][A-Za-z0-9_\[\]]*$", key):
            raise UsageError(
                f"Parameter {pair!r} is not key=value.",
                hint="Write parameters as key=value, e.g. period=day date=yesterday.",
            )
        base = key.split("[", 1)[0].lower()  # PHP reads `method[0]` as `method`
        if base == "token_auth":
            raise UsageError(
                "token_auth cannot be passed as a parameter.",
                hint="The token comes from the profile (MATOMO_TOKEN, a token file, ...).",
            )
        if base in ("module", "format", "method"):
            raise UsageError(
                f"{key} is set by matokit api itself.",
                hint="Give the method as the first argument and use --format.",
            )
        params[key] = value
    return params


def api_command(
    ctx: typer.Context,
    method: str = typer.Argument(..., help="Reporting API method, e.g. VisitsSummary.get."),
    params: list[str] | None = typer.Argument(
        None, help="Parameters as key=value (idSite defaults to the profile's site)."
    ),
    fmt: ApiFormat = typer.Option(ApiFormat.JSON, "--format", help="json, csv, tsv or xml."),
    allow_write: bool = typer.Option(
        False,
        "--allow-write",
        help="Also send methods that change Matomo (add*, update*, delete*, set*, ...).",
    ),
) -> None:
    """Call any Matomo Reporting API method and print Matomo's answer (like `gh api`).

    Read-only unless --allow-write: a method that changes Matomo (by Matomo's naming: add*,
    update*, delete*, set*, invalidate*, ..., also inside API.getBulkRequest's urls[]) is
    refused with exit 2 before anything is sent. The token is sent in the POST body, never in
    the URL. JSON is indented on a terminal.
    Exit codes: 2 usage or refused write, 77 authentication, 69 unavailable, 65 invalid
    request, 78 configuration.
    """
    from matokit.cli.output import emit_json, emit_text
    from matokit.connect import client_for
    from matokit.errors import UsageError
    from matokit.writeguard import is_method_name, require_read_only

    if not is_method_name(method):
        raise UsageError(
            f"{method!r} is not a Reporting API method name.",
            hint="Use Module.method, e.g. VisitsSummary.get or API.getMatomoVersion.",
        )
    values = parse_params(params or [])
    if not allow_write:
        require_read_only(method, values)
    settings = state(ctx).settings()
    if "idSite" not in values and settings.site_id is not None:
        values["idSite"] = str(settings.site_id)
    with client_for(settings, allow_write=allow_write) as client:
        if fmt == "json":
            emit_json(client.call(method, **values))
        else:
            emit_text(client.call_raw(method, format=fmt.upper(), **values))
