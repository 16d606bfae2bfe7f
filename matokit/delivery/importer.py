"""`track import`: stream JSON Lines into the journal, a chunk per transaction.

A large regular file is split in two: the second half goes to a helper process
(`importhelper`); pipes and small files are read by this process alone.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import IO, TYPE_CHECKING

from matokit.delivery.importhelper import ImportHelper, split_point, until
from matokit.delivery.lines import IMPORT_CHUNK, PIPE_CHUNK, LineParser, tell
from matokit.delivery.outcomes import ImportResult, Progress
from matokit.errors import DataError, StorageError

if TYPE_CHECKING:
    from matokit.delivery.ports import Importing, Journaling
    from matokit.stopping import StopRequest

log = logging.getLogger("matokit.delivery")


def import_lines(
    delivery: Importing,
    source: IO[bytes],
    *,
    site_id: int | None,
    strict: bool,
    on_invalid: Callable[[int, str], None],
    on_progress: Progress | None,
    stop: StopRequest | None = None,
) -> ImportResult:
    """`Delivery.import_lines`: the strict pass if asked, then the lines chunk by chunk."""
    if strict:
        source = _strict_pass(delivery, source, site_id=site_id, on_invalid=on_invalid, stop=stop)
    # Entries journaled before this mark are not the file's, whatever the import's flush does.
    result = ImportResult(mark=delivery.journal.mark())
    parser = LineParser(site_id=site_id, clock=delivery.clock, on_invalid=on_invalid)
    helper: ImportHelper | None = None
    try:
        helper, lines = _start_helper(delivery, source, site_id=site_id, on_invalid=on_invalid)
        size = IMPORT_CHUNK if tell(source) is not None else PIPE_CHUNK
        _journal_chunks(
            delivery,
            lines,
            parser=parser,
            size=size,
            result=result,
            helper=helper,
            on_progress=on_progress,
            stop=stop,
        )
    except StorageError as exc:
        if helper is not None:
            helper.stop(result)
        # Say exactly what is safe: the chunks committed before the failure, no more.
        raise StorageError(
            f"{exc.message}. {result.added} new hit(s) of this import were journaled "
            "before the error and stay queued; the following lines were NOT queued "
            "(re-run the import once fixed: journaled hits are skipped as duplicates).",
            path=exc.path,
            hint=exc.hint,
        ) from exc
    finally:
        if helper is not None:
            helper.close()
    result.read += parser.read
    result.invalid += parser.invalid
    return result


def _start_helper(
    delivery: Importing,
    source: IO[bytes],
    *,
    site_id: int | None,
    on_invalid: Callable[[int, str], None],
) -> tuple[ImportHelper | None, Iterable[bytes]]:
    """A helper process for the second half of a large file, and the lines left to this one."""
    split = split_point(source)
    if split is None:
        return None, source
    try:
        helper = ImportHelper.start(
            source, split, site_id=site_id, delivery=delivery, on_invalid=on_invalid
        )
    except OSError as exc:  # no second process: one does it all, slower
        log.info("import helper could not start (%s); importing alone", exc)
        return None, source
    return helper, until(source, split[0])


def _journal_chunks(
    delivery: Journaling,
    lines: Iterable[bytes],
    *,
    parser: LineParser,
    size: int,
    result: ImportResult,
    helper: ImportHelper | None,
    on_progress: Progress | None,
    stop: StopRequest | None,
) -> None:
    """Journal this process's lines in chunks of `size`, then wait for the helper's.

    A `stop` request ends it after the chunk being committed (the helper's too), with
    `result.interrupted` set: the rest of the file is not read.
    """
    # One enqueue call per journal transaction, so `added` is exactly what is committed.
    commit = partial(delivery.journal.enqueue, chunk_size=size)
    for added in parser.committed(lines, size, commit):
        result.added += added.added
        result.duplicates += added.duplicates
        if helper is not None:
            helper.poll()
        if on_progress is not None:
            on_progress(parser.bytes_read + (helper.bytes_read if helper else 0))
        if stop is not None and stop.requested:
            break  # the helper is asked to stop in `finish`
    if helper is not None:
        helper.finish(result, on_progress=on_progress, base=parser.bytes_read, stop=stop)
    # Asked during the last chunk, the file may be complete: "interrupted" then only means
    # nothing is sent, which is what was asked; a re-run finds every line a duplicate.
    result.interrupted = stop is not None and stop.requested


def _strict_pass(
    delivery: Journaling,
    source: IO[bytes],
    *,
    site_id: int | None,
    on_invalid: Callable[[int, str], None],
    stop: StopRequest | None,
) -> IO[bytes]:
    from matokit.stopping import Interrupted

    start = tell(source)
    spool: IO[bytes] | None = None
    if start is None:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed back to the caller
    parser = LineParser(site_id=site_id, clock=delivery.clock, on_invalid=on_invalid)
    for _ in parser.hits(_tee(source, spool)):
        if stop is not None and stop.signum is not None:
            raise Interrupted(stop.signum)  # nothing is journaled yet: stop at once
    if parser.invalid:
        if spool is not None:
            spool.close()
        raise DataError(
            f"{parser.invalid} of {parser.read} lines are invalid; --strict: nothing was "
            "queued or sent.",
            hint="fix the lines reported above, or drop --strict to skip them",
        )
    if spool is not None:
        spool.seek(0)
        return spool
    source.seek(start or 0)
    return source


def _tee(source: IO[bytes], spool: IO[bytes] | None) -> Iterator[bytes]:
    for line in source:
        if spool is not None:
            spool.write(line)
        yield line
