"""`matokit describe` and `matokit completions`: the CLI describing itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from matokit.cli.formats import TextFormat

if TYPE_CHECKING:
    from matokit.cli.introspect import Command


def root_command(ctx: typer.Context) -> Command:
    """The root of this run's Click tree (what describe and the agent tools read)."""
    from typer.core import TyperGroup

    root = ctx.find_root().command
    if not isinstance(root, TyperGroup):
        raise TypeError(f"matokit's root command is a {type(root).__name__}, not a TyperGroup")
    return root


def describe_command(
    ctx: typer.Context,
    fmt: TextFormat = typer.Option(
        TextFormat.JSON, "--format", help="json (the manifest) or text (a summary)."
    ),
) -> None:
    """Print a machine-readable manifest of every command and option (for scripts and agents).

    Each command carries its effect: read-only, writes-matomo, writes-local or
    may-double-count, and `effect_flags` for options that change it (api --allow-write).
    """
    from matokit.cli.introspect import manifest, manifest_text
    from matokit.cli.output import emit_json, emit_text

    data = manifest(root_command(ctx))
    if fmt == "json":
        emit_json(data)
    else:
        emit_text(manifest_text(data))


def completions_command(
    ctx: typer.Context,
    shell: str = typer.Argument(..., help="bash, zsh or fish."),
) -> None:
    """Print a shell completion script (the same files as in completions/)."""
    from matokit.cli.introspect import completion_script
    from matokit.cli.output import emit_text

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter("must be bash, zsh or fish", param_hint="SHELL")
    emit_text(completion_script(root_command(ctx), shell))
