"""Regenerate the lean report path's option table from the live Click tree.

    python -m matokit.cli.regenerate > matokit/cli/report_options.py

Its own module (imported by nothing) so that `introspect`, which `describe` uses, does not
import the app that imports `describe`.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from matokit.cli.app import build_app
from matokit.cli.introspect import report_options_source


def main() -> None:
    """Write the source of `matokit/cli/report_options.py` to stdout."""
    root = typer.main.get_command(build_app())
    assert isinstance(root, TyperGroup)
    sys.stdout.write(report_options_source(root))


if __name__ == "__main__":
    main()
