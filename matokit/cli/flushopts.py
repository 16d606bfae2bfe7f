"""Options shared by the commands that flush (`queue flush`, `track import`)."""

from __future__ import annotations

import typer


def check_concurrency(value: str | None) -> str | None:
    """Click callback: `--concurrency` is `auto` or 1-32 (a usage error otherwise)."""
    if value is None:
        return None
    from matokit.delivery.lanes import parse_concurrency

    try:
        parse_concurrency(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--concurrency") from None
    return value.strip().lower()


CONCURRENCY = typer.Option(
    None,
    "--concurrency",
    metavar="N|auto",
    callback=check_concurrency,
    help="Bulks in flight, one lane per visitor: 1-32 or auto (default: the profile's).",
)
