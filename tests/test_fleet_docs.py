"""docs/fleet.md's recipes: every `matokit` command in them parses as the CLI parses it, and
every YAML block is valid YAML (what can be checked without a cluster)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "fleet.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A shell command line inside a block: `matokit ...` up to a shell operator or a quote.
COMMAND = re.compile(r"(?:^|[\s\"'/$])matokit((?: [^;&|>\"'`\n]*)?)")
# Variables of the CI examples, with a value the command accepts.
VARIABLES = {"${{ matrix.report }}": "visits", "$REPORT": "visits"}


def blocks(kind: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if kind in (None, lang)]


def commands() -> list[list[str]]:
    found: list[list[str]] = []
    for body in blocks():
        for raw, value in VARIABLES.items():
            body = body.replace(raw, value)
        for line in body.splitlines():
            if line.lstrip().startswith("#"):
                continue
            listed = re.search(r"args: (\[.*\])", line)
            if listed:
                found.append(json.loads(listed.group(1)))
                continue
            for match in COMMAND.finditer(line):
                words = shlex.split(match.group(1))
                if words and (words[0].startswith("-") or words[0].isalpha()):
                    found.append(words)
    for span in re.findall(r"`matokit ([^`]+)`", DOC.read_text()):
        # A span naming a command in prose has no option; one with options is a command line.
        if " --" in f" {span}" and "..." not in span and "NAME" not in span:
            found.append(shlex.split(span))
    return found


def parses(args: list[str]) -> None:
    """Parse `matokit ARGS` down to the leaf command, converting every value (no run)."""
    import typer
    from typer.core import TyperGroup

    from matokit.cli.app import build_app
    from matokit.cli.context import AppState

    if args == ["--version"]:
        return  # answered by matokit.cli.main before the CLI is built
    command = typer.main.get_command(build_app())
    ctx = command.make_context("matokit", list(args), obj=AppState())
    while isinstance(command, TyperGroup):
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        words = [*protected, *ctx.args]
        name, command, rest = command.resolve_command(ctx, words)
        assert command is not None, args
        ctx = command.make_context(str(name), rest, parent=ctx)


def test_the_recipes_hold_commands() -> None:
    found = commands()
    assert len(found) >= 12, found
    assert ["queue", "flush", "--max-time", "4m"] in found
    assert [
        "health",
        "serve",
        "--listen",
        "0.0.0.0:9464",
        "--allow-remote",
        "--interval",
        "30s",
    ] in found


@pytest.mark.parametrize("args", commands(), ids=lambda a: " ".join(a)[:60])
def test_every_command_of_the_recipes_parses(args: list[str]) -> None:
    parses(args)


def test_every_yaml_block_is_valid_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    found = blocks("yaml")
    assert len(found) >= 6
    for body in found:
        documents = [d for d in yaml.safe_load_all(body) if d is not None]
        assert documents, body[:80]
