"""The `matokit` command: global options -> Settings, commands, and errors -> exit codes.

Command modules (one per group) import only typer and the standard library at module level;
requests, requests_cache and rich are imported inside the commands that use them, so that
`matokit --help` and `matokit queue status` start fast.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from matokit import __version__

if TYPE_CHECKING:
    import typer

    from matokit.config import Settings

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass
class AppState:
    """What the global options decided; commands read it from `ctx.obj`."""

    flags: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    command: str = ""
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """Resolve the configuration once per run (flag > env > .env > file > default)."""
        if self._settings is None:
            from matokit.config import resolve

            self._settings = resolve(self.flags)
        return self._settings


def state(ctx: typer.Context) -> AppState:
    """The run's AppState from any command's context."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `matokit` executable and `python -m matokit`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # The common probe of scripts and package managers: answer without importing typer.
        sys.stdout.write(f"matokit {__version__}\n")
        sys.exit(0)
    if "report" in args:
        # A fresh cache hit is answered before typer, click and requests are imported; anything
        # unusual (an error, a miss, an option it does not know) falls through to the full CLI.
        from matokit.cli.report_show import try_cached

        code = try_cached(args)
        if code is not None:
            sys.exit(code)
    sys.exit(run(args))


def run(args: list[str]) -> int:
    """Run the CLI on `args` and return the exit code; the one place errors become codes."""
    from matokit.cli.exit import ExitCode, exit_code_for
    from matokit.cli.output import error_line
    from matokit.errors import MatokitError
    from matokit.stopping import Interrupted

    debug = "--debug" in args or os.environ.get("MATOKIT_LOG_LEVEL", "").lower() == "debug"
    app_state = AppState(debug=debug)
    try:
        import typer

        from matokit.cli import typerclick as click  # the Click Typer runs on, not `import click`
        from matokit.cli.app import build_app

        command = typer.main.get_command(build_app())
        result = command.main(args, prog_name="matokit", standalone_mode=False, obj=app_state)
        return int(result) if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.ClickException as exc:
        exc.show()
        return int(getattr(exc, "exit_code", ExitCode.USAGE))
    except (click.exceptions.Abort, KeyboardInterrupt, Interrupted) as exc:
        return _interrupted(exc)
    except MatokitError as exc:
        if app_state.debug:
            _print_traceback(exc)
        error_line(exc.message, exc.hint)
        return int(exit_code_for(exc))
    except BrokenPipeError:
        # The reader went away (`matokit ... | head`): not an error worth a traceback.
        _silence_stdout()
        return 0
    except Exception as exc:
        if app_state.debug:
            _print_traceback(exc)
        error_line(
            f"internal error: {exc.__class__.__name__}: {exc}",
            "This is a bug in MatoKit. Rerun with --debug to see the traceback, and report it.",
        )
        return int(ExitCode.INTERNAL)


def _interrupted(exc: BaseException) -> int:
    """Stopped at once by a signal (a second one, or where there was nothing to drain)."""
    from matokit.cli.exit import exit_code_for

    signum = getattr(exc, "signum", None)
    by = f" by {exc}" if signum is not None else ""
    sys.stderr.write(f"\nmatokit: interrupted{by}\n")
    return int(exit_code_for(exc))


def _print_traceback(exc: BaseException) -> None:
    import traceback

    from matokit.redact import redact

    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(redact(text))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
