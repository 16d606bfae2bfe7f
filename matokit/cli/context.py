"""What one run of `matokit` decided: the global options, the settings and logging.

Commands read it with `state(ctx)`; it lives apart from `matokit.cli` so that the command
modules do not import the entry point that imports them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    _logging: tuple[str, str, str] | None = None

    def settings(self) -> Settings:
        """Resolve the configuration once per run (flag > env > .env > file > default).

        Logging is set up again from the result: the profile may set log_format or log_level.
        """
        if self._settings is None:
            from matokit.config import resolve

            self._settings = resolve(self.flags)
            self.configure_logging(
                self._settings.log_format, self._settings.log_level, profile=self._settings.profile
            )
        return self._settings

    def configure_logging(self, fmt: str, level: str, *, profile: str) -> None:
        """Send logs to stderr in `fmt` at `level`; level debug also shows tracebacks."""
        from matokit.logs import setup_logging

        self.debug = level == "debug"
        if self._logging != (fmt, level, profile):
            self._logging = (fmt, level, profile)
            context = {"profile": profile, "command": self.command}
            setup_logging(fmt=fmt, level=LEVELS[level], context=context)


def state(ctx: typer.Context) -> AppState:
    """The run's AppState from any command's context."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj
