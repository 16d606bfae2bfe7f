"""How `matokit queue migrate` reports: a JSON object on stdout, or lines on stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.journal.migrate import MigrationResult


def migrate_output(result: MigrationResult, fmt: str, *, settings: Settings, to: str) -> None:
    """What a migration did, what is left, and what to do next."""
    from matokit.cli.output import emit_json, say

    if fmt == "json":
        emit_json({"profile": settings.profile, **result.as_dict()})
        return
    if not result.source_exists:
        say(f"matokit: {result.source} does not exist: nothing to move.")
        return
    states = ", ".join(f"{n:,} {state}" for state, n in sorted(result.by_state.items()))
    say(
        f"matokit: moved {result.moved:,} hit(s) from {result.source} to {result.destination}"
        + (f" ({states})" if states else "")
        + f"; {result.delivered_keys:,} delivered key(s), {result.flushes} flush record(s) and "
        f"{result.sites} site record(s) copied."
    )
    if result.already:
        say(f"matokit: {result.already:,} of them were already there (an interrupted run).")
    if result.delivered:
        say(
            f"matokit: {result.delivered:,} of them had been delivered from there within the "
            "dedup window: not queued again."
        )
    if result.left:
        say(
            f"matokit: {result.left:,} hit(s) are still in {result.source} (journaled or changed "
            f"while it ran): run `matokit queue migrate --to {to}` again."
        )
    elif not result.stopped:
        say(f"matokit: the source is empty. {next_step(to, settings)}")


def next_step(to: str, settings: Settings) -> str:
    """What to change so that the profile uses the destination."""
    if to == "sqlite":
        return "Unset redis_url (MATOKIT_REDIS_URL) for this profile to use it."
    if to.startswith("sqlite:"):
        return f"A profile uses it as its DATA_DIR/journal.sqlite (here {settings.journal_path})."
    return "Set redis_url (MATOKIT_REDIS_URL) to it on every host of this profile."
