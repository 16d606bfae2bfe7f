"""Exit codes (the table in ../shared/cli.md) and the only mapping from errors to codes."""

from __future__ import annotations

import signal
from enum import IntEnum

from matokit import errors
from matokit.stopping import Interrupted


class ExitCode(IntEnum):
    """What `matokit` returns to the shell."""

    OK = 0  # success; for `queue flush`: nothing due is left
    INTERNAL = 1  # a bug: the message says to rerun with --debug
    USAGE = 2  # bad flag or argument (Click's convention)
    DATA = 65  # input rejected: invalid import lines (--strict), hits Matomo refused
    UNAVAILABLE = 69  # Matomo unreachable or failing, and nothing could be queued instead
    IOERR = 74  # the journal, cache or data directory cannot be used (sysexits EX_IOERR)
    TEMPFAIL = 75  # hits durably queued for retry, or a flush stopped with due hits left
    NOPERM = 77  # authentication or permission refused by Matomo
    CONFIG = 78  # configuration missing or invalid
    INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2
    TERMINATED = 143  # SIGTERM (systemctl stop, container shutdown): 128 + 15


# Most specific first: the first matching class decides.
_MAPPING: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (errors.ConfigError, ExitCode.CONFIG),
    (errors.UsageError, ExitCode.USAGE),
    (errors.DataError, ExitCode.DATA),
    (errors.StorageError, ExitCode.IOERR),
    (errors.FlushWaitTimeoutError, ExitCode.TEMPFAIL),
    (errors.FlushInProgressError, ExitCode.OK),
    (errors.AuthenticationError, ExitCode.NOPERM),
    (errors.PermissionDeniedError, ExitCode.NOPERM),
    (errors.LockedOutError, ExitCode.NOPERM),
    (errors.NotFoundError, ExitCode.DATA),
    (errors.InvalidRequestError, ExitCode.DATA),
    (errors.RejectedHitError, ExitCode.DATA),
    (errors.RateLimitedError, ExitCode.UNAVAILABLE),
    (errors.UnavailableError, ExitCode.UNAVAILABLE),
    (errors.ProtocolError, ExitCode.UNAVAILABLE),
)


def exit_code_for_signal(signum: int | None) -> ExitCode:
    """The exit code after stopping on a signal: 143 for SIGTERM, else 130 (Ctrl-C)."""
    return ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error; unexpected errors are internal (1)."""
    if isinstance(error, Interrupted):
        return exit_code_for_signal(error.signum)
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    for cls, code in _MAPPING:
        if isinstance(error, cls):
            return code
    return ExitCode.INTERNAL
