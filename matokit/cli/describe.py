"""`matokit describe` and `matokit completions`: the CLI describing itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import click


def _root(ctx: typer.Context) -> click.Command:
    return ctx.find_root().command


def describe_command(
    ctx: typer.Context,
    fmt: str = typer.Option("json", "--format", help="Output format (json)."),
) -> None:
    """Print a machine-readable manifest of every command and option (for scripts and agents)."""
    from matokit.cli.introspect import manifest
    from matokit.cli.output import emit_json

    if fmt != "json":
        raise typer.BadParameter("only json is supported", param_hint="--format")
    emit_json(manifest(_root(ctx)))


def completions_command(
    ctx: typer.Context,
    shell: str = typer.Argument(..., help="bash, zsh or fish."),
) -> None:
    """Print a shell completion script (the same files as in completions/)."""
    from matokit.cli.introspect import completion_script
    from matokit.cli.output import emit_text

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter("must be bash, zsh or fish", param_hint="SHELL")
    emit_text(completion_script(_root(ctx), shell))
