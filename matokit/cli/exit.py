"""Exit codes (README's exit-code table) and the only mapping from outcomes to codes.

Every command returns one of these codes, decided here and nowhere else: errors (`exit_code_for`,
`usage_exit_code`; several at once, one per site: `worst_exit_code`), and the outcomes of
`track` (`track_exit_code`), `track import` (`import_exit_code`), `track access-log`
(`access_log_exit_code`), `queue flush`
(`flush_exit_code`), `queue reconcile` (`reconcile_exit_code`), `queue migrate`
(`migrate_exit_code`) and `health` (`health_exit_code`).
The rules, in README's words:

- a value given on the command line that is invalid is a usage error (2); the same value from
  the environment, `.env` or the config file is a configuration error (78);
- data that MatoKit or Matomo rejects is a data error (65): a bad date, invalid import lines
  (with or without `--strict`), hits Matomo refused, a method Matomo does not know;
- no Matomo at the configured URL (HTTP 404/405/410 without Matomo's own error) is a
  configuration error (78) for every command;
- hits kept in the journal because of a refused token exit 77, because of a wrong URL 78, and
  because Matomo is out of reach for now 75;
- exactly-once needs the CustomDimensions plugin (off: 78) and a token that can see the site's
  dimensions (77);
- `health` follows the monitoring-plugin convention: its verdict is 0-3, and anything that is
  not a verdict (a bad argument, an unwritable `--output`, a bug) is UNKNOWN (3).
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import TYPE_CHECKING

from matokit import errors
from matokit.exactlyonce.dimension import NO_VIEW_ACCESS, DimensionUnavailable
from matokit.stopping import Interrupted

if TYPE_CHECKING:
    from matokit.accesslog import AccessLogResult
    from matokit.delivery import FlushResult, ImportResult, TrackOutcome
    from matokit.journal.migrate import MigrationResult


class ExitCode(IntEnum):
    """What `matokit` returns to the shell."""

    OK = 0  # success; for `queue flush`: nothing due is left
    INTERNAL = 1  # a bug: the message says to rerun with --debug
    USAGE = 2  # bad flag or argument given on the command line (Click's convention)
    DATA = 65  # input rejected: invalid import lines, hits Matomo refused, a bad date
    UNAVAILABLE = 69  # Matomo unreachable or failing, and nothing could be queued instead
    IOERR = 74  # the journal, cache or data directory cannot be used (sysexits EX_IOERR)
    TEMPFAIL = 75  # hits durably queued for retry, or a flush stopped with due hits left
    NOPERM = 77  # authentication or permission refused by Matomo
    CONFIG = 78  # configuration missing or invalid (env, .env, config file; no Matomo at the URL)
    INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2
    TERMINATED = 143  # SIGTERM (systemctl stop, container shutdown): 128 + 15


class HealthStatus(IntEnum):
    """`matokit health` follows the monitoring-plugin convention instead."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


# The commands whose codes follow the monitoring-plugin convention.
HEALTH_COMMANDS = frozenset({"health"})

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
    (errors.NoMatomoError, ExitCode.CONFIG),
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


def exit_code_for(error: BaseException, *, command: str = "") -> int:
    """The exit code for an error; unexpected errors are internal (1).

    Under `health` every error is UNKNOWN (3): it is not a verdict on what was checked.
    """
    if isinstance(error, Interrupted):
        return exit_code_for_signal(error.signum)
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if command in HEALTH_COMMANDS:
        return HealthStatus.UNKNOWN
    for cls, code in _MAPPING:
        if isinstance(error, cls):
            return code
    if isinstance(error, DimensionUnavailable):
        return ExitCode.NOPERM if error.kind == NO_VIEW_ACCESS else ExitCode.CONFIG
    return ExitCode.INTERNAL


# When one command ends with several failures (one per site), the code of the one an operator
# must act on first: a bug, then the token, the configuration, local storage, the data, and
# last what may pass by itself.
_URGENCY: tuple[ExitCode, ...] = (
    ExitCode.INTERNAL,
    ExitCode.NOPERM,
    ExitCode.CONFIG,
    ExitCode.IOERR,
    ExitCode.USAGE,
    ExitCode.DATA,
    ExitCode.UNAVAILABLE,
    ExitCode.TEMPFAIL,
)


def worst_exit_code(errors: Iterable[BaseException], *, command: str = "") -> int:
    """The code of the most urgent of several failures (`setup exactly-once`, one per site);
    0 when there are none."""
    codes = {exit_code_for(error, command=command) for error in errors}
    for code in _URGENCY:
        if code in codes:
            return code
    return max(codes, default=ExitCode.OK)


@contextmanager
def command_line_values() -> Iterator[None]:
    """Checking values given on the command line: a DataError there is a usage error (2).

    The same validation of a hit exits 65 for an import line (data) and 2 for `track`'s flags.
    """
    try:
        yield
    except errors.DataError as exc:
        raise errors.UsageError(exc.message, hint=exc.hint) from exc


def usage_exit_code(command: str = "") -> int:
    """The code of a command-line error Click detected (unknown option, bad type, missing value)."""
    return HealthStatus.UNKNOWN if command in HEALTH_COMMANDS else ExitCode.USAGE


def health_exit_code(status: int) -> int:
    """A health run's verdict: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    return HealthStatus(int(status))


def track_exit_code(outcome: TrackOutcome) -> int:
    """`track TYPE`: 0 delivered, duplicate, unconfirmed or `--queue`d; 65 refused as invalid;
    a hit journaled after a failure: 77 (token refused), 78 (no Matomo at the URL), else 75."""
    from matokit.delivery import TrackState

    if outcome.state is TrackState.REJECTED:
        return ExitCode.DATA
    if outcome.state is not TrackState.QUEUED or outcome.error is None:
        return ExitCode.OK
    return _queued_because(outcome.error)


def _queued_because(error: BaseException) -> int:
    """Hits are safe in the journal: 77/78 when an operator must fix the token or the URL."""
    code = exit_code_for(error)
    return code if code in (ExitCode.NOPERM, ExitCode.CONFIG) else ExitCode.TEMPFAIL


def flush_exit_code(result: FlushResult) -> int:
    """`queue flush`: 0 when nothing due is left, 75 when due hits remain after a stop, 77 on a
    refused token, the error's code when a failure stopped it (78 for no Matomo at the URL)."""
    if result.refused_access:
        return ExitCode.NOPERM
    from matokit.flushrecord import StopReason  # not on every command's start-up path

    if result.stopped_reason is StopReason.ERROR and result.error is not None:
        return exit_code_for(result.error)
    if result.remaining_due or (result.stopped_early and result.remaining_queued):
        return ExitCode.TEMPFAIL
    return ExitCode.OK


def reconcile_exit_code(result: FlushResult, *, waited: bool) -> int:
    """`queue reconcile`: 77 on a refused token, 75 when lookups failed (asked again later) or,
    with `--wait`, hits still await a lookup; else 0 (hits found missing are due for a flush)."""
    if result.refused_access:
        return ExitCode.NOPERM
    if result.lookup_failed or (waited and result.awaiting_lookup):
        return ExitCode.TEMPFAIL
    return ExitCode.OK


def migrate_exit_code(result: MigrationResult | None) -> int:
    """`queue migrate`: 0 when the source holds no hit any more; 75 when hits stay there
    (journaled or changed while it ran: run it again) or a flush held a lock (None)."""
    if result is None or not result.complete:
        return ExitCode.TEMPFAIL
    return ExitCode.OK


def import_exit_code(result: ImportResult, *, queue: bool) -> int:
    """`track import`, most urgent first: the flush's 77/78/74 (a refused token, a wrong URL, an
    unusable journal), 75 when hits stay queued, 65 when lines were invalid (with or without
    `--strict`) or Matomo refused hits, else 0."""
    flush = result.flush
    if flush is not None:
        code = flush_exit_code(flush)
        if code not in (ExitCode.OK, ExitCode.TEMPFAIL):
            return code
    if not queue and result.queued:
        return ExitCode.TEMPFAIL
    if result.invalid or (flush is not None and flush.rejected):
        return ExitCode.DATA
    return ExitCode.OK


def access_log_exit_code(result: AccessLogResult, *, queue: bool) -> int:
    """`track access-log`: the code of an error that stopped the run (77 token, 78 no token
    for old lines or no Matomo, 74 storage, 69 Matomo out of reach during a site lookup), else
    as `track import`: 75 when hits stay queued, 65 for unparsable lines or a file that is no
    log (binary, unknown format, cut short), else 0. A file another run was importing is no
    failure."""
    if result.error is not None:
        return exit_code_for(result.error)
    return import_exit_code(result.delivery, queue=queue)
