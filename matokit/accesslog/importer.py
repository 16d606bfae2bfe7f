"""`track access-log`: log files -> hits -> the journal, then one flush (as `track import`).

Before reading, keys a killed run left pending are settled from the journal and keys past the
horizon are forgotten. Each file is read from its checkpoint under a per-file lock; lines that
pass the filters become hits keyed by site, content and occurrence, and only keys never
journaled before are journaled (see `fileimport`). Lines older than 24 h are checked first
with the same rule as `track` and the flush (an admin token on their site), so a log that
cannot be replayed stops with a clear error instead of filling the dead letters.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from matokit.accesslog import checkpoint as checkpoints
from matokit.accesslog.fileimport import FileImport
from matokit.accesslog.filters import FilterOptions, Filters
from matokit.accesslog.formats import LineFormat, RegexFormat, by_name, detect
from matokit.accesslog.hits import HitOptions
from matokit.accesslog.locks import file_lock
from matokit.accesslog.reader import HEAD, BinaryFileError, Source, check_text
from matokit.accesslog.sites import Sites
from matokit.accesslog.state import FILE_NAME, AccessLogState, Checkpoint
from matokit.accesslog.summary import FileSummary, Summary
from matokit.closing import Closing
from matokit.delivery.matomo import OLD_HIT_AGE, TrackingClient, admin_sites, old_hit_refusal
from matokit.delivery.outcomes import FlushOptions, ImportResult, Progress
from matokit.errors import (
    ConfigError,
    FlushInProgressError,
    MatokitError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    StorageError,
    UnavailableError,
)
from matokit.journal import EnqueueResult, NewHit

if TYPE_CHECKING:
    from matokit.delivery import Delivery
    from matokit.stopping import StopRequest

log = logging.getLogger("matokit.accesslog")

DEFAULT_HORIZON: Final = 90 * 86400.0


@dataclass(frozen=True)
class AccessLogOptions:
    """Everything `track access-log` was asked to do (its options, parsed)."""

    log_format: str = "auto"
    log_format_regex: str | None = None
    log_date_format: str | None = None
    filters: FilterOptions = field(default_factory=FilterOptions)
    hits: HitOptions = field(default_factory=HitOptions)
    site: int | None = None
    site_from_host: bool = False
    site_url: str | None = None
    horizon: float = DEFAULT_HORIZON
    dry_run: bool = False
    queue: bool = False


@dataclass
class AccessLogResult:
    """What a run did: the summary of its files, the journal's side, and what stopped it."""

    summary: Summary
    delivery: ImportResult
    error: MatokitError | None = None  # stopped the run (nothing after it was read)
    interrupted: bool = False
    settled: tuple[int, int] = (0, 0)  # pending keys a killed run left: (seen, forgotten)


class AccessLogImport(Closing):
    """One run of `track access-log` (also the engine `--follow` pumps)."""

    def __init__(
        self,
        options: AccessLogOptions,
        *,
        delivery: Delivery | None,
        client: Callable[[], TrackingClient],
        data_dir: Path,
        stop: StopRequest | None = None,
        on_progress: Progress | None = None,
        on_open: Callable[[FileSummary], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if delivery is None and not options.dry_run:
            raise ValueError("a run that journals needs a Delivery")
        self.options = options
        self.delivery = delivery
        self.clock = clock
        self.stop = stop
        self.data_dir = data_dir
        self._regex = (
            RegexFormat(options.log_format_regex, options.log_date_format)
            if options.log_format_regex
            else None
        )
        self.state = None if options.dry_run else AccessLogState(data_dir / FILE_NAME, clock=clock)
        self.filters = Filters(options.filters)
        self.sites = Sites(
            site=options.site,
            from_host=options.site_from_host,
            site_url=options.site_url,
            state=self.state,
            client=client,
            clock=clock,
        )
        self._client = client
        self.summary = Summary()
        self.result = ImportResult()
        self.settled = (0, 0)
        self.error: MatokitError | None = None
        self._on_progress = on_progress
        self._on_open = on_open  # a file's format is known (to say which was detected)
        self._done_bytes = 0
        self._source: Source | None = None
        self._old_ok: set[int] = set()
        self._admin: frozenset[int] | None = None

    def close(self) -> None:
        """Close the state file."""
        if self.state is not None:
            self.state.close()
            self.state = None

    # -- the run --

    def prepare(self) -> None:
        """Settle keys a killed run left pending; forget keys and checkpoints past the horizon."""
        if self.state is None or self.delivery is None:
            return
        journal = self.delivery.journal
        self.result.mark = journal.mark()
        self.settled = self.state.resolve_pending(journal.has_key)
        self.state.prune(horizon=self.options.horizon)

    def run(self, names: Sequence[str], stdin: IO[bytes] | None = None) -> None:
        """Import every file of `names` (`-` is `stdin`) to its end, in order; an error that
        makes going on pointless (storage, Matomo refusing the token) ends the run."""
        for name in names:
            if self.stop is not None and self.stop.requested:
                break
            try:
                if name == "-":
                    if stdin is None:
                        raise ValueError("`-` needs a stdin stream")
                    self.import_stream(stdin, "-")
                else:
                    self.import_path(name)
            except MatokitError as exc:
                self.error = exc
                break

    def import_path(self, name: str) -> None:
        """Import one file to its current end, under its lock (a busy file is left alone)."""
        summary = self.summary.add(name)
        try:
            raw = open(name, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            summary.vanished = True  # not rotated yet, or rotated away: its lines are elsewhere
            return
        except OSError as exc:
            summary.error = f"cannot read it: {exc.strerror or exc}"
            return
        with raw:
            if self.options.dry_run:
                self._import(raw, summary, checkpointed=False)
                return
            with file_lock(self.data_dir, os.path.realpath(name)) as locked:
                if not locked:
                    summary.busy = True
                    return
                self._import(raw, summary, checkpointed=True)

    def import_stream(self, raw: IO[bytes], name: str) -> None:
        """Import a stream (stdin) to its end; no checkpoint (keys still decide)."""
        self._import(raw, self.summary.add(name), checkpointed=False)

    def _import(self, raw: IO[bytes], summary: FileSummary, *, checkpointed: bool) -> None:
        importer = self.open(raw, summary, checkpointed=checkpointed, final=not checkpointed)
        if importer is not None:
            importer.pump()
            self.finish_file(importer)

    def open(
        self, raw: IO[bytes], summary: FileSummary, *, checkpointed: bool, final: bool
    ) -> FileImport | None:
        """A FileImport ready to pump, or None when the file is not a log (noted in its
        summary). `final`: the end of the data is the end of the log (not a growing file)."""
        try:
            source = Source(raw, name=summary.name, final=final)
            head = source.head()
            check_text(head)
        except BinaryFileError as exc:
            summary.error = str(exc)
            return None
        except OSError as exc:
            summary.error = f"cannot read it: {exc.strerror or exc}"
            return None
        fmt = self._format(_head_lines(head, complete=source.final), summary, bool(head.strip()))
        if fmt is None:
            return None
        identity = resume = own = None
        unchanged = False
        if checkpointed and self.state is not None:
            identity = checkpoints.FileIdentity.of(
                raw.fileno(), head, compressed=source.compression is not None
            )
            mine = self.state.checkpoints(device=identity.device, inode=identity.inode)
            own = mine[0] if mine else None
            resume = checkpoints.find(self.state, identity, source.before)
            if resume is not None and checkpoints.unchanged(resume, identity):
                unchanged = True
            elif resume is not None:
                source, resume = self._resume(raw, source, resume)
        self._source = source
        return FileImport(
            self,
            source,
            fmt,
            summary,
            identity=identity,
            resume=resume,
            own=own,
            unchanged=unchanged,
        )

    def _resume(
        self, raw: IO[bytes], source: Source, resume: Checkpoint
    ) -> tuple[Source, Checkpoint | None]:
        """The source moved to the checkpoint; from the start again when the bytes before it
        are not the ones the checkpoint saw (another file that starts alike)."""
        reached, tail = source.skip_to(resume.offset, keep=resume.tail_len)
        if reached == resume.offset and checkpoints.tail_fits(resume, tail):
            return source, resume
        raw.seek(0)
        fresh = Source(raw, name=source.name, final=source.final)
        fresh.head()
        return fresh, None

    def finish_file(self, importer: FileImport) -> None:
        """Note how a file ended (a compressed file cut short), and count its bytes as done."""
        importer.finish()
        source = importer.source
        if source.truncated:
            importer.summary.error = (
                f"its {source.compression} data ends early (cut short?) after line "
                f"{importer.reader.line}: the lines before were imported"
            )
        self._done_bytes += source.raw_read
        self._source = None

    def _format(self, head: list[str], summary: FileSummary, text: bool) -> LineFormat | None:
        options = self.options
        if self._regex is not None:
            fmt: LineFormat | None = self._regex
        elif options.log_format != "auto":
            fmt = by_name(options.log_format)  # W3C learns its fields from its directives
        else:
            fmt = detect(head)
            summary.detected = fmt is not None
            if fmt is None:
                summary.error = (
                    "cannot tell its format from its first lines (common, combined, "
                    "vhost_combined, nginx_json, w3c)"
                    if text
                    else None
                )
                return None
        assert fmt is not None
        summary.format = fmt.name
        if options.site_from_host and not fmt.has_host:
            summary.error = (
                f"its format ({fmt.name}) logs no host, so --site-from-host cannot tell its "
                "site: use --site ID, or a format with the host (vhost_combined, nginx_json, "
                "w3c with cs-host, a regex with a host group)"
            )
            return None
        if self._on_open is not None:
            self._on_open(summary)
        return fmt

    # -- what FileImport calls --

    def journal_hits(self, hits: list[NewHit]) -> EnqueueResult:
        """Journal `hits` in one transaction."""
        assert self.delivery is not None
        added = self.delivery.journal.enqueue(hits, chunk_size=max(1, len(hits)))
        self.result.added += added.added
        self.result.duplicates += added.duplicates
        return added

    def check_old_lines(self, hits: Sequence[tuple[int, float]], name: str) -> None:
        """Refuse (raise) before journaling lines older than 24 h that Matomo would refuse:
        no token (ConfigError), or no admin access on their site (PermissionDeniedError).
        Unknown for now (Matomo out of reach): journaled, and the flush checks again."""
        if self.options.queue or self.delivery is None:
            return
        now = self.clock()
        for site, at in hits:
            if site in self._old_ok or now - at < OLD_HIT_AGE:
                continue
            try:
                refusal = old_hit_refusal(
                    now - at, site, has_token=self.delivery.has_token, admin=self._admin_sites
                )
            except (UnavailableError, RateLimitedError, ProtocolError) as exc:
                log.info("cannot check admin access for old lines now (%s)", exc)
                refusal = None
            if refusal is not None:
                raise _old_lines_error(refusal, site, name)
            self._old_ok.add(site)

    def _admin_sites(self) -> frozenset[int]:
        if self._admin is None:
            self._admin = admin_sites(self._client())
        return self._admin

    def progress(self) -> None:
        """Tell the caller how many bytes of the files were read so far."""
        if self._on_progress is not None:
            current = self._source.raw_read if self._source is not None else 0
            self._on_progress(self._done_bytes + current)

    # -- the end --

    def finish(
        self,
        flush: FlushOptions | None,
        *,
        on_flush_start: Callable[[int], None] | None = None,
        on_sent: Progress | None = None,
    ) -> AccessLogResult:
        """Flush (unless `flush` is None, the run was stopped or broke on storage) and say
        where the hits of this run ended."""
        result = self.result
        summary = self.summary
        result.read = summary.total("lines")
        result.invalid = summary.unparsable + len(summary.errors)
        result.interrupted = self.stop is not None and self.stop.requested
        delivery = self.delivery
        if delivery is not None and not self.options.dry_run:
            can_flush = not isinstance(self.error, StorageError) and not result.interrupted
            if flush is not None and can_flush:
                try:
                    result.flush = delivery.flush_locked(
                        flush, on_start=on_flush_start, on_progress=on_sent, stop=self.stop
                    )
                except FlushInProgressError as exc:
                    result.flush_busy = exc.message
            if not isinstance(self.error, StorageError):
                result.tally(delivery.journal.tally(result.mark))
        return AccessLogResult(
            summary=summary,
            delivery=result,
            error=self.error,
            interrupted=result.interrupted,
            settled=self.settled,
        )


def _old_lines_error(refusal: MatokitError, site: int, name: str) -> MatokitError:
    """The refusal of old lines, said for a log: where it stopped and how to go on."""
    where = (
        f"{name} has lines older than 24 h for site {site}: Matomo records them only with a "
        "token that has admin access on the site"
    )
    later = "lines before them were imported; the next run starts with them"
    leave_out = "or leave such lines out with --horizon 1d"
    if isinstance(refusal, PermissionDeniedError):
        return PermissionDeniedError(
            f"{where}, and this token has none ({later})",
            hint=f"use a token with admin access on site {site}, {leave_out}",
        )
    return ConfigError(
        f"{where}, and no token is configured ({later})",
        hint=f"set MATOMO_TOKEN or --token-file (an admin or superuser token), {leave_out}",
    )


def _head_lines(head: bytes, *, complete: bool) -> list[str]:
    """The whole lines of a file's head, as text (the last one dropped if it may be cut:
    the head is not the whole file, or the file is still being written)."""
    lines = head.decode("utf-8", "replace").splitlines()
    cut = len(head) >= HEAD or (not complete and not head.endswith((b"\n", b"\r")))
    if cut and lines:
        lines.pop()
    return lines
