"""The Click that Typer runs on, reached only through what Typer exports.

Typer up to 0.25 runs on the installed `click`; 0.26 to 0.28 carry their own copy
(`typer._click`), and from 0.29 `typer.Exit` and `typer.Abort` are Typer's own classes. A
separately installed Click is then not the one raising, so MatoKit never imports Click: the
classes that `run()` catches are Typer's exports and the bases of `typer.BadParameter`, and
`matokit.cli.introspect` reads the command tree through Typer's own classes.
"""

from __future__ import annotations

from typing import Any

import typer


def _base_of_bad_parameter(name: str) -> Any:
    """Click's UsageError or ClickException, as a base class of `typer.BadParameter`."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise ImportError(f"typer.BadParameter has no base class {name} (an unknown Typer release)")


class exceptions:  # lower case: read as `click.exceptions.Exit` in `matokit.cli.run`
    """The exceptions MatoKit catches from a command run, whichever Click Typer uses."""

    Exit = typer.Exit
    Abort = typer.Abort
    ClickException: Any = _base_of_bad_parameter("ClickException")
    UsageError: Any = _base_of_bad_parameter("UsageError")
