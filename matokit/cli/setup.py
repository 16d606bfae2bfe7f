"""`matokit setup exactly-once`: prepare Matomo for a MatoKit feature (needs an admin token).

Only typer and the standard library at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from matokit.cli.context import state
from matokit.cli.formats import TextFormat

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.exactlyonce.setup import SetupFailure, SetupOutcome

app = typer.Typer(
    help="Prepare Matomo for MatoKit features (changes Matomo's settings; needs an admin token).",
    no_args_is_help=True,
)

SITES = typer.Option(
    None,
    "--site",
    min=1,
    metavar="ID",
    help="Site id; repeat for several [default: the profile's site_id].",
    show_default=False,
)
FORMAT = typer.Option(TextFormat.TEXT, "--format", help="Output: text or json.")


@app.command("exactly-once")
def exactly_once(
    ctx: typer.Context, sites: list[int] | None = SITES, fmt: TextFormat = FORMAT
) -> None:
    """Find or create the action-scoped custom dimension `matokit_key` on each site.

    Every hit then carries its idempotency key in it, so that a re-send after an uncertain
    answer is checked against what Matomo already has (docs/exactly-once.md). Idempotent:
    an existing dimension is found, an inactive one activated. Creating or activating needs a
    token with admin access to the site; afterwards a view token is enough.
    One line per site on stdout; every site is tried even when one fails.
    Exit codes: 0 every site ready, 77 the token lacks admin (or view) access, 78 the name is
    taken by a visit-scope dimension, no action slot is free, or the CustomDimensions plugin is
    off, 69 Matomo unavailable, 2 no site given.
    """
    from matokit.cli.exit import worst_exit_code
    from matokit.cli.output import error_line
    from matokit.connect import client_for
    from matokit.exactlyonce.setup import WRITE_METHODS, SetupFailure, ensure_on_sites

    settings = state(ctx).settings()
    targets = _targets(sites, settings.site_id)
    with client_for(settings, allowed_writes=WRITE_METHODS) as client:
        results = ensure_on_sites(client, targets)
    failed = [r for r in results if isinstance(r, SetupFailure)]
    _remember(settings, [r for r in results if not isinstance(r, SetupFailure)])
    _render(results, fmt)
    for failure in failed:
        error_line(f"site {failure.site}: {failure.error.message}", failure.error.hint)
    raise typer.Exit(worst_exit_code(f.error for f in failed))


def _targets(sites: list[int] | None, default: int | None) -> list[int]:
    from matokit.errors import UsageError

    if sites:
        return list(dict.fromkeys(sites))
    if default is None:
        raise UsageError(
            "No site to set up.",
            hint="Pass --site ID (repeat for several), or set site_id in the profile "
            "(or MATOMO_SITE_ID).",
        )
    return [default]


def _render(results: list[SetupOutcome | SetupFailure], fmt: TextFormat) -> None:
    from matokit.cli.output import emit_json, emit_text
    from matokit.sanitize import printable

    views = [_view(result) for result in results]
    if fmt == "json":
        emit_json(views)
        return
    lines = [
        f"site {v['site']}: matokit_key is dimension {v['dimension_id']} "
        f"(action index {v['index']}): {v['action']}"
        for v in views
        if v["action"] != "failed"
    ]
    if lines:
        emit_text(printable("\n".join(lines), keep_newlines=True))


def _view(result: SetupOutcome | SetupFailure) -> dict[str, Any]:
    from matokit.exactlyonce.setup import SetupFailure

    if isinstance(result, SetupFailure):
        return {
            "site": result.site,
            "dimension_id": None,
            "index": None,
            "action": "failed",
            "error": result.error.message,
            "hint": result.error.hint,
        }
    return {
        "site": result.site,
        "dimension_id": result.dimension.id,
        "index": result.dimension.index,
        "action": result.action,
    }


def _remember(settings: Settings, outcomes: list[SetupOutcome]) -> None:
    """Record each site's dimension in the journal, so that tracking need not look it up."""
    if not outcomes:
        return
    from matokit.cli.output import say
    from matokit.errors import StorageError
    from matokit.journal.opening import open_journal

    try:
        with open_journal(settings) as journal:
            for outcome in outcomes:
                journal.remember_dimension(outcome.site, outcome.dimension.id)
    except StorageError as exc:
        # Matomo is set up either way; tracking looks the dimension up when none is recorded.
        say(
            f"warning: could not record the dimensions in the journal: {exc.message}", hint=exc.hint
        )
