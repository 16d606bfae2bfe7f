"""JSON Lines to journal records: the import's line parser and its chunk sizes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Final, TypeVar

from matokit.delivery.records import hit_time, import_key
from matokit.errors import HitValidationError
from matokit.hits import hit_from_record
from matokit.journal import NewHit

if TYPE_CHECKING:
    from concurrent.futures import Future

# Lines per journal transaction during an import: each commit is an fsync, so larger chunks
# import several times faster; memory stays bounded (one chunk at a time per process). A pipe
# may be fed slowly (`tail -f | matokit track import -`): smaller chunks commit sooner.
IMPORT_CHUNK: Final = 10000
PIPE_CHUNK: Final = 1000
_BOM: Final = b"\xef\xbb\xbf"

T = TypeVar("T")


class LineParser:
    """Turns JSON Lines into journal records, reporting invalid lines with their numbers."""

    def __init__(
        self,
        *,
        site_id: int | None,
        clock: Callable[[], float],
        on_invalid: Callable[[int, str], None],
        first_line: int = 1,
    ) -> None:
        self.site_id = site_id
        self.clock = clock
        self.on_invalid = on_invalid
        self.first_line = first_line
        self.read = 0
        self.invalid = 0
        self.bytes_read = 0

    def hits(self, lines: Iterable[bytes]) -> Iterator[NewHit]:
        """Valid lines as NewHits; the others go to `on_invalid` and are counted."""
        site_id, clock = self.site_id, self.clock
        for number, raw in enumerate(lines, self.first_line):
            self.bytes_read += len(raw)
            if not raw.strip():
                continue
            self.read += 1
            try:
                # UTF-8 (a BOM dropped), decoded here: json.loads of bytes first guesses the
                # encoding, a third of its time on a typical line.
                record = json.loads((raw[3:] if raw[:3] == _BOM else raw).decode())
                hit = hit_from_record(record, site_id=site_id, now=clock())
                key = import_key(hit, record)
            except HitValidationError as exc:
                self._invalid(number, f"{exc.field}: {exc.message}" if exc.field else exc.message)
                continue
            except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors
                self._invalid(number, f"not a JSON object: {_json_reason(exc)}")
                continue
            yield NewHit(key, hit.params, hit_time(hit))

    def chunks(self, lines: Iterable[bytes], size: int) -> Iterator[list[NewHit]]:
        """`hits` in lists of up to `size` (the unit of one journal commit)."""
        chunk: list[NewHit] = []
        for hit in self.hits(lines):
            chunk.append(hit)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def committed(
        self, lines: Iterable[bytes], size: int, commit: Callable[[list[NewHit]], T]
    ) -> Iterator[T]:
        """`commit(chunk)` for each chunk of `size`, in order, each result yielded once its
        chunk is committed. The next chunk is parsed while the previous one commits (in a
        worker thread: a Redis round trip or an fsync waits without the GIL), so parsing and
        writing overlap. Nothing is committed past the result the caller holds: stopping at a
        yield, or a failed commit, leaves the chunk parsed ahead unwritten, and the counts
        (`read`, `invalid`, `bytes_read`) back at the end of the last chunk committed or tried.
        """
        from concurrent.futures import ThreadPoolExecutor  # only imports need it

        pending: Future[T] | None = None
        at_pending = self._counts()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="matokit-journal") as pool:
            chunks = self.chunks(lines, size)
            while True:
                try:
                    chunk = next(chunks, None)
                except BaseException:
                    if pending is not None:  # a read failed: what was committed still counts
                        self._restore(at_pending)
                        yield pending.result()
                    raise
                if pending is not None:
                    try:
                        result = pending.result()
                    except BaseException:
                        self._restore(at_pending)
                        raise
                    try:
                        yield result
                    except GeneratorExit:
                        self._restore(at_pending)
                        raise
                if chunk is None:
                    return
                at_pending = self._counts()
                pending = pool.submit(commit, chunk)

    def _counts(self) -> tuple[int, int, int]:
        return self.read, self.invalid, self.bytes_read

    def _restore(self, counts: tuple[int, int, int]) -> None:
        self.read, self.invalid, self.bytes_read = counts

    def _invalid(self, number: int, message: str) -> None:
        self.invalid += 1
        self.on_invalid(number, message)


def _json_reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc)[:200]


def tell(source: IO[bytes]) -> int | None:
    """Where a seekable source is (to read it twice), or None for a pipe."""
    try:
        return source.tell() if source.seekable() else None
    except (OSError, ValueError):
        return None
