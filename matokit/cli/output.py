"""Everything that reaches stdout or stderr: data on stdout, people and logs on stderr.

Rich is imported only when a table, chart or progress bar is drawn. Values are text, never
rich markup, and their control characters are shown escaped (see `sanitize`). `NO_COLOR`
means no ANSI styling at all (not even bold); a non-TTY stream gets plain text at its
natural width (`COLUMNS`, when set, wins), so piped tables are never cut. With
`--log-format json` every stderr line (errors, hints, summaries, warnings) is a JSON object.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from matokit.redact import redact
from matokit.sanitize import csv_safe, printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

_consoles: dict[str, Console] = {}
# Wide enough for any table, so rich never folds or cuts one written to a pipe or a file.
UNBOUNDED = 100_000


def console(stream: str = "stdout") -> Console:
    """A rich Console on stdout or stderr (created on first use), markup off."""
    handle = sys.stdout if stream == "stdout" else sys.stderr
    if stream not in _consoles or _consoles[stream].file is not handle:
        from rich.console import Console

        no_color = bool(os.environ.get("NO_COLOR"))
        _consoles[stream] = Console(
            file=handle,
            stderr=stream == "stderr",
            width=console_width(stream),
            no_color=no_color or None,
            color_system=None if no_color else "auto",
            markup=False,
            emoji=False,
            highlight=False,
            soft_wrap=stream == "stderr",
        )
    return _consoles[stream]


def console_width(stream: str = "stdout") -> int | None:
    """`COLUMNS` when set; the terminal's width (rich asks) on a TTY; unbounded otherwise."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if is_tty(stream) else UNBOUNDED


def human(value: Any) -> Text:
    """A table cell or line from data: plain text (never markup), controls escaped."""
    from rich.text import Text

    return Text(printable(value))


def is_tty(stream: str = "stdout") -> bool:
    """Whether a person is likely watching that stream."""
    handle = sys.stdout if stream == "stdout" else sys.stderr
    try:
        return handle.isatty()
    except (AttributeError, ValueError):
        return False


def say(message: str, *, hint: str | None = None) -> None:
    """A line for people on stderr, redacted, controls escaped; a JSON object in json mode."""
    from matokit import logs

    if logs.stderr_format() == "json":
        sys.stderr.write(logs.json_line(redact(message), hint=redact(hint or "") or None) + "\n")
    else:
        text = redact(message) + (f"\n  hint: {redact(hint)}" if hint else "")
        sys.stderr.write(printable(text, keep_newlines=True) + "\n")
    sys.stderr.flush()


def error_line(message: str, hint: str | None = None) -> None:
    """The one stderr line (plus hint) that an expected error produces."""
    say(f"matokit: error: {message}", hint=hint)


def emit_text(text: str) -> None:
    """Plain data on stdout."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit_json(data: Any, *, pretty: bool | None = None) -> None:
    """JSON on stdout: indented on a TTY (or when asked), compact otherwise."""
    if pretty is None:
        pretty = is_tty()
    text = json.dumps(data, indent=2 if pretty else None, ensure_ascii=False, default=str)
    emit_text(text)


def emit_ndjson(rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line on stdout."""
    out = sys.stdout
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    out.flush()


def emit_csv(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, safe: bool = False
) -> None:
    """UTF-8 CSV with a header row on stdout; `safe` defuses spreadsheet formulas."""
    cell = csv_safe if safe else _same
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([cell(c) for c in columns])
    for row in rows:
        writer.writerow([cell("" if row.get(c) is None else row.get(c)) for c in columns])
    sys.stdout.flush()


def _same(value: Any) -> Any:
    return value


def emit_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
    numeric: Iterable[str] = (),
    whole: Iterable[str] = (),
) -> None:
    """A rich table on stdout; numeric columns right-aligned, `whole` ones never cut (ids)."""
    from rich.table import Table

    numeric, whole = set(numeric), set(whole)
    table = Table(title=human(title) if title else None, show_lines=False, header_style="bold")
    for column in columns:
        label = (headers or {}).get(column, column)
        table.add_column(
            human(label), justify="right" if column in numeric else "left", no_wrap=column in whole
        )
    for row in rows:
        table.add_row(*[human(_cell(row.get(c))) for c in columns])
    console("stdout").print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@contextmanager
def progress(total: int | None, description: str) -> Iterator[Any]:
    """A progress bar with rate and ETA on a TTY stderr; a no-op elsewhere.

    Yields a callable `advance(n)`.
    """
    if not is_tty("stderr"):
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:,.0f}/s" if task.speed else "-/s")

    columns = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console("stderr"), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def interrupted(by: str = "") -> None:
    """The stderr line of a run ended by Ctrl-C or a signal (a JSON object in json mode)."""
    from matokit import logs

    if logs.stderr_format() == "json":
        sys.stderr.write(logs.json_line(f"interrupted{by}", level="error") + "\n")
    else:
        sys.stderr.write(f"\nmatokit: interrupted{by}\n")


class PhasedProgress(contextlib.ExitStack):
    """Two progress bars one after the other, as an import runs: reading its input (bytes,
    `reached(position)`), then sending (`sending(due)`, `sent(count)`). No-ops off a TTY."""

    def __init__(self, size: int | None, reading: str) -> None:
        super().__init__()
        self._size = size
        self._reading = reading
        self._done = 0
        self._advance: Callable[[int], object] = lambda n: None

    def __enter__(self) -> PhasedProgress:
        super().__enter__()
        self._open(self._size, self._reading)
        return self

    def _open(self, total: int | None, description: str) -> None:
        self.close()
        self._advance = self.enter_context(progress(total, description))

    def reached(self, position: int) -> None:
        """The input was read (or journaled) up to byte `position`."""
        self._advance(position - self._done)
        self._done = position

    def sending(self, due: int) -> None:
        self._open(due or None, "Sending")

    def sent(self, count: int) -> None:
        self._advance(count)
