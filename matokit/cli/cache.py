"""`matokit cache stats|clear`: the profile's report cache."""

from __future__ import annotations

import typer

from matokit.cli.context import state
from matokit.cli.formats import TextFormat
from matokit.sizes import byte_text

app = typer.Typer(
    help="Inspect or empty this profile's report cache.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("stats")
def stats_command(
    ctx: typer.Context,
    fmt: TextFormat = typer.Option(TextFormat.TEXT, "--format", "-f", help="text or json."),
) -> None:
    """Entries (fresh/expired), size (on disk, or in Redis) and hit/miss counts of the report
    cache."""
    from matokit.cache import profile_stats
    from matokit.cli.output import emit_json, emit_table
    from matokit.durations import format_duration

    settings = state(ctx).settings()
    result = profile_stats(settings)
    view = {"profile": settings.profile, **result.as_dict()}
    view["ttl_today_s"], view["ttl_past_s"] = settings.ttl_today, settings.ttl_past
    if fmt == "json":
        emit_json(view)
        return
    rate = result.hit_rate
    on_redis = result.backend == "redis"
    empty = " (empty)" if on_redis else " (not created yet)"
    rows = [
        ("profile", settings.profile),
        ("redis" if on_redis else "file", result.path + ("" if result.exists else empty)),
        ("entries", f"{result.entries} ({result.fresh} fresh, {result.expired} expired)"),
        ("size in memory" if on_redis else "size on disk", byte_text(result.size_bytes)),
        ("hits", str(result.hits)),
        ("misses", str(result.misses)),
        ("hit rate", "-" if rate is None else f"{rate:.0%}"),
        (
            "ttl",
            f"today {format_duration(settings.ttl_today)}, "
            f"past {format_duration(settings.ttl_past)}",
        ),
    ]
    emit_table([{"what": k, "value": v} for k, v in rows], ["what", "value"])


@app.command("clear")
def clear_command(
    ctx: typer.Context,
    expired: bool = typer.Option(False, "--expired", help="Only delete expired entries."),
    fmt: TextFormat = typer.Option(TextFormat.TEXT, "--format", "-f", help="text or json."),
) -> None:
    """Delete every cached report (or, with --expired, only the stale ones)."""
    from matokit.cache import clear, location
    from matokit.cli.output import emit_json, say

    settings = state(ctx).settings()
    removed = clear(settings, expired_only=expired)
    where = location(settings)
    if fmt == "json":
        emit_json(
            {
                "profile": settings.profile,
                "path": where,
                "removed": removed,
                "expired_only": expired,
            }
        )
        return
    what = "expired entries" if expired else "entries"
    say(f"Removed {removed} {what} from {where}.")
