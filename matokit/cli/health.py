"""`matokit health` and `matokit health serve`: checks for CI, cron and monitoring.

Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
(also for bad arguments and an `--output` file that cannot be written: `cli.exit` decides).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from matokit.cli.context import state
from matokit.cli.formats import HealthFormat

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.health import HealthReport, Thresholds

app = typer.Typer(
    help="Check Matomo, the token, the site, the tracker, the queue and the cache; "
    "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    no_args_is_help=False,
)

_CHECK_HELP = (
    "Comma-separated checks to run: config, api, site, replay-access, tracking, "
    "tracking-failures, journal, queue, cache (default: all)."
)


def _duration_opt(name: str, default: str, what: str) -> Any:
    return typer.Option(
        None, name, help=f"{what} (a duration like 90s, 15m, 6h) [default: {default}]"
    )


def _depth_opt(name: str, default: int, what: str) -> Any:
    return typer.Option(None, name, min=0, help=f"{what} [default: {default}]")


CHECK_OPT = typer.Option(None, "--check", help=_CHECK_HELP)
# The library names its knobs in words; here they get their flags.
SLOW_HINT = "Matomo or the network is too slow; raise --max-time or --timeout."
WARN_LATENCY = _duration_opt("--warn-latency", "2s", "API latency that warns")
CRIT_LATENCY = _duration_opt("--crit-latency", "5s", "API latency that is critical")
WARN_QUEUE_AGE = _duration_opt("--warn-queue-age", "1h", "Queued-hit age that warns")
CRIT_QUEUE_AGE = _duration_opt("--crit-queue-age", "6h", "Queued-hit age that is critical")
WARN_QUEUE_DEPTH = _depth_opt("--warn-queue-depth", 1000, "Queued hits that warn")
CRIT_QUEUE_DEPTH = _depth_opt("--crit-queue-depth", 10000, "Queued hits that are critical")


@app.callback(invoke_without_command=True)
def health(
    ctx: typer.Context,
    check: str | None = CHECK_OPT,
    fmt: HealthFormat = typer.Option(
        HealthFormat.TEXT, "--format", help="Output: text, json, prometheus or nagios."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        help="Write the output to FILE atomically (e.g. for node_exporter's textfile "
        "collector) instead of stdout.",
        dir_okay=False,
    ),
    warn_latency: str | None = WARN_LATENCY,
    crit_latency: str | None = CRIT_LATENCY,
    warn_queue_age: str | None = WARN_QUEUE_AGE,
    crit_queue_age: str | None = CRIT_QUEUE_AGE,
    warn_queue_depth: int | None = WARN_QUEUE_DEPTH,
    crit_queue_depth: int | None = CRIT_QUEUE_DEPTH,
    max_time: str | None = typer.Option(
        None,
        "--max-time",
        help="Overall time limit; checks still running are UNKNOWN [default: 20s].",
    ),
) -> None:
    """Run the health checks; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    given = {
        "warn_latency": warn_latency,
        "crit_latency": crit_latency,
        "warn_queue_age": warn_queue_age,
        "crit_queue_age": crit_queue_age,
        "warn_queue_depth": warn_queue_depth,
        "crit_queue_depth": crit_queue_depth,
    }
    if ctx.invoked_subcommand is not None:
        # `health --check api serve`: the subcommand inherits what was given here.
        ctx.meta["matokit.health"] = {"check": check, "max_time": max_time, **given}
        return
    from matokit.cli.exit import health_exit_code
    from matokit.health import run_health

    checks = _checks(check)
    thresholds = _thresholds(given)
    limit = _duration(max_time or "20s", "--max-time")
    _check_global_flags(ctx)
    report = run_health(
        state(ctx).settings,
        checks=checks,
        thresholds=thresholds,
        max_time=limit,
        slow_hint=SLOW_HINT,
    )
    _deliver(report, fmt, output)
    raise typer.Exit(health_exit_code(report.status))


def _check_global_flags(ctx: typer.Context) -> None:
    """A bad global flag value (`--site abc`) is a usage error (UNKNOWN), before any check;
    a configuration problem is left to the `config` check's verdict."""
    import contextlib

    from matokit.errors import ConfigError

    with contextlib.suppress(ConfigError):
        state(ctx).settings()


def _deliver(report: HealthReport, fmt: str, output: Path | None) -> None:
    from matokit.cli.exit import exit_code_for
    from matokit.cli.health_render import print_text, render
    from matokit.cli.output import console, emit_text, error_line, is_tty

    if output is not None:
        try:
            write_atomic(output, render(report, fmt))
        except OSError as exc:
            error_line(
                f"cannot write {output}: {exc.strerror or exc}; the old file is unchanged.",
                "Check that the directory exists and is writable by this user.",
            )
            raise typer.Exit(exit_code_for(exc, command="health")) from None
        return
    if fmt == "text":
        print_text(report, console("stdout"))
    elif fmt == "json":
        from matokit.cli.health_render import render_json

        emit_text(render_json(report, pretty=is_tty()))
    else:
        emit_text(render(report, fmt))


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` atomically; keep the old file's mode, else 0644 minus the umask.

    node_exporter's textfile collector usually runs as another user, hence readable.
    """
    import stat

    from matokit.private_files import write_atomic as replace_file

    path = path.expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o644 & ~umask
    replace_file(path, text, mode=mode)


def _duration(text: str | None, flag: str) -> float:
    from matokit.durations import parse_duration

    try:
        return parse_duration(text or "")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def _flag(name: str) -> str:
    """The flag of a threshold field: `warn_queue_age` -> `--warn-queue-age`."""
    return "--" + name.replace("_", "-")


def _checks(text: str | None) -> tuple[str, ...]:
    """The checks `--check` selects (the library's error, worded with the flag)."""
    from matokit.errors import UsageError
    from matokit.health import CHECKS, NoCheckSelectedError, parse_checks

    try:
        return parse_checks(text)
    except NoCheckSelectedError as exc:
        raise UsageError(
            f"--check {exc.text!r} names no check.",
            hint=f"Name at least one of: {', '.join(CHECKS)} (or leave --check out: all).",
        ) from None


def _thresholds(given: dict[str, Any]) -> Thresholds:
    """The thresholds given, with a note on stderr for each default moved to keep a pair
    ordered (`--crit-queue-age 1s` alone also moves the warning to 1s)."""
    from matokit.cli.output import say
    from matokit.errors import UsageError
    from matokit.health import ThresholdError, thresholds_from

    values: dict[str, float] = {}
    for name, value in given.items():
        if value is None:
            continue
        values[name] = float(value) if "depth" in name else _duration(value, _flag(name))
    try:
        thresholds, moved = thresholds_from(values)
    except ThresholdError as exc:
        message, hint = exc.describe(_flag)
        raise UsageError(message, hint=hint) from None
    for note in moved:
        say(f"matokit: note: {note.describe(_flag)}")
    return thresholds


@app.command("serve")
def serve(
    ctx: typer.Context,
    listen: str = typer.Option(
        "127.0.0.1:9464", "--listen", help="HOST:PORT to listen on (port 0: any free port)."
    ),
    interval: str = typer.Option(
        "30s", "--interval", help="Reuse a health run for this long (scrapes never hammer Matomo)."
    ),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="Allow a non-loopback listen address (the endpoints have no authentication).",
    ),
    check: str | None = CHECK_OPT,
    warn_latency: str | None = WARN_LATENCY,
    crit_latency: str | None = CRIT_LATENCY,
    warn_queue_age: str | None = WARN_QUEUE_AGE,
    crit_queue_age: str | None = CRIT_QUEUE_AGE,
    warn_queue_depth: int | None = WARN_QUEUE_DEPTH,
    crit_queue_depth: int | None = CRIT_QUEUE_DEPTH,
    max_time: str | None = typer.Option(
        None,
        "--max-time",
        help="Time limit of one health run [default: 8s, below Prometheus' 10 s scrape timeout].",
    ),
) -> None:
    """Serve /metrics (Prometheus), /healthz and /tools/get-health-status (JSON) over HTTP."""
    from matokit.cli.health_serve import parse_listen, serve_forever
    from matokit.cli.output import say
    from matokit.health import CachedHealth, run_health

    inherited: dict[str, Any] = ctx.meta.get("matokit.health", {})
    local = {
        "warn_latency": warn_latency,
        "crit_latency": crit_latency,
        "warn_queue_age": warn_queue_age,
        "crit_queue_age": crit_queue_age,
        "warn_queue_depth": warn_queue_depth,
        "crit_queue_depth": crit_queue_depth,
    }
    given = {k: v if v is not None else inherited.get(k) for k, v in local.items()}
    checks = _checks(check if check is not None else inherited.get("check"))
    thresholds = _thresholds(given)
    limit = _duration(max_time or inherited.get("max_time") or "8s", "--max-time")
    every = _duration(interval, "--interval")
    if every < 1:
        raise typer.BadParameter("must be at least 1s", param_hint="--interval")
    host, port = parse_listen(listen, allow_remote=allow_remote)
    _check_global_flags(ctx)
    app_state = state(ctx)
    flags = dict(app_state.flags)

    def load_settings() -> Settings:
        # Resolved afresh for every run: a fixed token or config is used without a restart.
        from matokit.config import resolve

        settings = resolve(flags)
        app_state.configure_logging(
            settings.log_format, settings.log_level, profile=settings.profile
        )
        return settings

    cache = CachedHealth(
        lambda: run_health(
            load_settings,
            checks=checks,
            thresholds=thresholds,
            max_time=limit,
            slow_hint=SLOW_HINT,
        ),
        interval=every,
    )
    code = serve_forever(host, port, cache, announce=say)
    raise typer.Exit(code)
