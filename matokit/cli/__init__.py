"""The `matokit` command: global options -> Settings, commands, and errors -> exit codes.

Command modules (one per group) import only typer and the standard library at module level;
requests, requests_cache and rich are imported inside the commands that use them, so that
`matokit --help` and `matokit queue status` start fast.
"""

from __future__ import annotations

import os
import sys
from itertools import pairwise
from typing import Any

from matokit import __version__
from matokit.cli.context import AppState, state

__all__ = ["AppState", "main", "run", "state"]


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
    """Run the CLI on `args` and return the exit code; `cli.exit` decides every code."""
    from matokit.cli.exit import exit_code_for, usage_exit_code
    from matokit.cli.output import error_line
    from matokit.errors import MatokitError
    from matokit.stopping import Interrupted

    # Until the global options are parsed (and the configuration after them), only the flag
    # can ask for tracebacks.
    app_state = AppState(debug="--debug" in args)
    command = command_of(args)
    if "--log-format=json" in args or ("--log-format", "json") in pairwise(args):
        # A usage error among the global options comes before logging is set up: JSON too.
        from matokit import logs

        logs.set_format("json")
        from matokit.config import early_profile

        named = dict(pair for pair in pairwise(args) if pair[0] == "--profile")
        logs.set_context(profile=early_profile(named), command="")
    try:
        import typer

        from matokit.cli import typerclick as click  # the Click Typer runs on, not `import click`
        from matokit.cli.app import build_app

        cli = typer.main.get_command(build_app())
        result = cli.main(args, prog_name="matokit", standalone_mode=False, obj=app_state)
        return int(result) if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.ClickException as exc:
        _show_click_error(exc)
        if isinstance(exc, click.exceptions.UsageError):
            return int(usage_exit_code(command))
        return int(exit_code_for(exc, command=command))
    except (click.exceptions.Abort, KeyboardInterrupt, Interrupted) as exc:
        return _interrupted(exc)
    except MatokitError as exc:
        if app_state.debug:
            _print_traceback(exc)
        error_line(exc.message, exc.hint)
        return int(exit_code_for(exc, command=command))
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
        return int(exit_code_for(exc, command=command))


# The global options that take a value (`--profile NAME`): their value is not the command.
_VALUED_GLOBALS = frozenset(
    {"--profile", "--url", "--site", "--token-file", "--config", "--timeout", "--log-format"}
)


def command_of(args: list[str]) -> str:
    """The command group `args` invoke (`health`, `track`...), found without parsing them.

    Known even when the global options fail to parse, so that `matokit --bogus health` is
    still answered by health's exit-code convention.
    """
    words = iter(args)
    for word in words:
        if word == "--":
            return next(words, "")
        if word in _VALUED_GLOBALS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def _interrupted(exc: BaseException) -> int:
    """Stopped at once by a signal (a second one, or where there was nothing to drain)."""
    from matokit.cli.exit import exit_code_for
    from matokit.stopping import Interrupted

    signum = getattr(exc, "signum", None)
    from matokit.cli.output import interrupted

    interrupted(f" by {exc}" if signum is not None else "")
    return int(exit_code_for(exc if isinstance(exc, Interrupted) else KeyboardInterrupt()))


def _show_click_error(exc: Any) -> None:
    """Click's usage message, or one JSON object with the message and the usage in json mode."""
    from matokit import logs

    if logs.stderr_format() != "json":
        exc.show()
        return
    usage = exc.ctx.get_usage() if getattr(exc, "ctx", None) is not None else None
    sys.stderr.write(logs.json_line(exc.format_message(), level="error", usage=usage) + "\n")


def _print_traceback(exc: BaseException) -> None:
    import traceback

    from matokit import logs
    from matokit.redact import redact

    text = "".join(traceback.format_exception(exc))
    if logs.stderr_format() == "json":
        line = logs.json_line(f"{exc.__class__.__name__}: {exc}", level="debug", exception=text)
        sys.stderr.write(line + "\n")
        return
    sys.stderr.write(redact(text))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
