"""One log file's import: from its checkpoint (if any) to its current end, chunk by chunk.

Each chunk of hits is committed in three steps: its keys noted as pending in the access-log
state, the hits journaled (skipping keys imported before), then the keys marked seen with the
file's checkpoint in one transaction. A run killed anywhere in between leaves nothing
ambiguous: pending keys are settled by the next run from the journal itself.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

from matokit.accesslog import checkpoint as checkpoints
from matokit.accesslog.filters import Reason
from matokit.accesslog.formats import HEADER, LineFormat
from matokit.accesslog.hits import hit_params
from matokit.accesslog.keys import Occurrences, line_digest, line_key
from matokit.accesslog.reader import MAX_LINE, TOO_LONG, LineReader, Source
from matokit.accesslog.state import Checkpoint, day_of
from matokit.accesslog.summary import FileSummary
from matokit.journal import NewHit

if TYPE_CHECKING:
    from matokit.accesslog.importer import AccessLogImport

CHUNK: Final = 10_000  # hits per journal transaction
CHECKPOINT_LINES: Final = 200_000  # lines without a hit between checkpoints


class FileImport:
    """Reads one Source into the journal; `pump()` may be called again as the file grows."""

    chunk = CHUNK  # hits per journal transaction (tests make it small)

    def __init__(
        self,
        run: AccessLogImport,
        source: Source,
        fmt: LineFormat,
        summary: FileSummary,
        *,
        identity: checkpoints.FileIdentity | None,
        resume: Checkpoint | None,
        own: Checkpoint | None,
        unchanged: bool = False,
    ) -> None:
        """`source` is already at `resume`'s offset (when resuming); `unchanged`: a compressed
        file read to its end before, so there is nothing to read."""
        self.run = run
        self.source = source
        self.fmt = fmt
        self.summary = summary
        self.identity = identity
        self._own = own  # this file's checkpoint row (updated in place)
        self.occurrences = Occurrences()
        offset = line = 0
        if resume is not None:
            offset, line = resume.offset, resume.line
            self.occurrences = Occurrences.load(resume.window)
            if resume.format == fmt.name:
                fmt.restore(resume.format_state)
        summary.start_line = line
        self.reader = LineReader(source, offset=offset, line=line)
        self._batch: list[tuple[int, str, dict[str, str], int]] = []
        self._committed = (offset, line)
        self.unchanged = unchanged
        self.done = unchanged  # stopped (by a signal), or nothing to read

    @property
    def offset(self) -> int:
        """Decompressed bytes read up to the end of the last line handled."""
        return self.reader.offset

    def pump(self) -> None:
        """Import every complete line available now; commit what was read."""
        if self.unchanged:
            return
        run = self.run
        summary = self.summary
        skipped = summary.skipped
        reader = self.reader
        parse, timestamp = self.fmt.parse, self.fmt.timestamp
        check = run.filters.check
        sites = run.sites
        fixed = sites.fixed
        dry = run.options.dry_run
        hit_options = run.options.hits
        now = int(run.clock())
        oldest = now - run.options.horizon
        occurrences = self.occurrences
        batch = self._batch
        stop = run.stop
        name = self.fmt.name
        chunk = self.chunk
        read = 0  # lines of the format's kind (not blank, not directives)
        try:
            for raw in reader.lines():
                if raw is TOO_LONG:
                    read += 1
                    summary.skip(Reason.UNPARSABLE, reader.line, f"longer than {MAX_LINE} bytes")
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", "replace")
                record = parse(text)
                if record is None:
                    if not text or text.isspace():
                        continue  # blank lines are no lines
                    read += 1
                    why = f"not a line of the {name} format"
                    summary.skip(Reason.UNPARSABLE, reader.line, why)
                    continue
                if record is HEADER:
                    continue
                read += 1
                verdict = check(record)
                if isinstance(verdict, Reason):
                    skipped[verdict] += 1
                    continue
                try:
                    when = timestamp(record)
                except (ValueError, OverflowError):
                    why = f"invalid time {record.stamp!r}"
                    summary.skip(Reason.UNPARSABLE, reader.line, why)
                    continue
                if when < oldest:
                    skipped[Reason.TOO_OLD] += 1
                    continue
                site = fixed if fixed is not None else sites.site_for(record.host)
                if site is None:
                    skipped[Reason.UNKNOWN_HOST] += 1
                    continue
                summary.hits += 1
                if verdict.download:
                    summary.downloads += 1
                if dry:
                    continue
                digest = line_digest(raw)
                key = line_key(site, digest, occurrences.next(digest, when))
                at = when if when < now else now  # Matomo records future times as "now"
                params = hit_params(
                    record,
                    site=site,
                    when=at,
                    base=sites.base(site, record.host),
                    verdict=verdict,
                    key=key,
                    options=hit_options,
                )
                batch.append((day_of(when), key, params, at))
                stopping = stop is not None and stop.signum is not None
                if (
                    stopping
                    or len(batch) >= chunk
                    or reader.line - self._committed[1] >= CHECKPOINT_LINES
                ):
                    summary.lines += read
                    read = 0
                    self.commit()
                    if stopping:
                        self.done = True
                        return
        finally:
            summary.lines += read
        self.commit()

    def commit(self) -> None:
        """Journal the hits read so far and move the file's checkpoint past their lines."""
        batch = self._batch[:]
        self._batch.clear()  # in place: pump() holds this list
        run = self.run
        state = run.state
        position = (self.reader.offset, self.reader.line)
        if state is None or (not batch and position == self._committed):
            return
        pairs = [(day, bytes.fromhex(key)) for day, key, _, _ in batch]
        fresh_flags = state.unseen(pairs)
        fresh = [hit for hit, new in zip(batch, fresh_flags, strict=True) if new]
        fresh_pairs = [pair for pair, new in zip(pairs, fresh_flags, strict=True) if new]
        self.summary.duplicates += len(batch) - len(fresh)
        run.result.duplicates += len(batch) - len(fresh)
        pending = None
        if fresh:
            run.check_old_lines([(site_of(p), at) for _, _, p, at in fresh], self.summary.name)
            pending = state.begin_keys(fresh_pairs)
            added = run.journal_hits([NewHit(key, p, float(at)) for _, key, p, at in fresh])
            self.summary.imported += added.added
            self.summary.duplicates += added.duplicates
        saved = self._checkpoint()
        row = state.commit_keys(fresh_pairs, saved, pending)
        if saved is not None and row is not None:
            self._own = dataclasses.replace(saved, id=row)
        self._committed = position
        run.progress()

    def finish(self) -> None:
        """After the last pump: a compressed file read to its very end is marked complete, so
        that runs over it while it is unchanged do not even decompress it."""
        state = self.run.state
        source = self.source
        if self.done or state is None or source.compression is None or source.truncated:
            return
        saved = self._checkpoint(complete=True)
        if saved is not None:
            self._own = dataclasses.replace(saved, id=state.save_checkpoint(saved))

    def _checkpoint(self, *, complete: bool = False) -> Checkpoint | None:
        if self.identity is None:
            return None
        offset = self.reader.offset
        return checkpoints.at(
            self.identity,
            offset=offset,
            line=self.reader.line,
            tail=self.source.before(offset, checkpoints.TAIL_BYTES),
            window=self.occurrences.dump(),
            format_name=self.fmt.name,
            format_state=self.fmt.state(),
            path=self.summary.name,
            previous=self._own,
            complete=complete,
        )


def site_of(params: dict[str, str]) -> int:
    """A hit's idsite."""
    return int(params["idsite"])
