"""The helper process that journals the second half of a large import file.

Parsing and validating is pure Python (one core), so two processes import nearly twice as
fast. The helper (`_import_worker`, run as `python -c`) opens the same journal (the SQLite
file, or the profile's journal on Redis), reports progress, invalid lines and its counts as
JSON lines on its stdout; closing its stdin asks it to stop. The Redis target comes as the first
line on its stdin, never in its command line: a Redis URL or password there would be visible to
every user of the host (`ps`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from matokit.delivery.lines import IMPORT_CHUNK, LineParser, tell
from matokit.delivery.outcomes import ImportResult, Progress
from matokit.errors import StorageError
from matokit.journal.opening import open_store

if TYPE_CHECKING:
    from matokit.delivery.ports import Importing
    from matokit.stopping import StopRequest

# A file this large is split in two halves, the second journaled by a helper process: parsing
# and validating is pure Python (one core), so two processes import nearly twice as fast.
PARALLEL_MIN_BYTES: Final = 4 << 20
_WORKER_MAX_INVALID_REPORTS: Final = 1000
# The helper ignores SIGINT and SIGTERM (blocked from its start, see `ImportHelper.start`):
# the main process decides (it asks the helper to stop by closing its stdin), and a Ctrl-C on
# the terminal must never print the helper's traceback.
_STOP_SIGNALS: Final = {signal.SIGINT, signal.SIGTERM}
_WORKER_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "import sys; from matokit.delivery.importhelper import _import_worker; "
    "sys.exit(_import_worker(sys.argv[1]))"
)


def split_point(source: IO[bytes]) -> tuple[int, int] | None:
    """Where a large regular file splits: (byte offset of a line start, its line number)."""
    if (os.cpu_count() or 1) < 2:
        return None
    start = tell(source)
    name = getattr(source, "name", None)
    if start is None or not isinstance(name, str):
        return None
    try:
        size = os.fstat(source.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        return None
    if size - start < PARALLEL_MIN_BYTES:
        return None
    source.seek(start + (size - start) // 2)
    source.readline()  # to the start of the next line
    split = source.tell()
    source.seek(start)
    lines, left = 1, split - start
    while left > 0:
        block = source.read(min(left, 1 << 20))
        if not block:
            break
        lines += block.count(b"\n")
        left -= len(block)
    source.seek(start)
    return (split, lines) if split < size else None


def until(source: IO[bytes], end: int) -> Iterator[bytes]:
    """The lines of `source` up to byte offset `end` (a line start)."""
    position = source.tell()
    for line in source:
        yield line
        position += len(line)
        if position >= end:
            return


class ImportHelper:
    """The process journaling the second half of a large import (`_import_worker`).

    It reports progress, invalid lines and its counts as JSON lines on its stdout; closing its
    stdin asks it to stop after the chunk it is committing.
    """

    def __init__(self, proc: subprocess.Popen[bytes], on_invalid: Callable[[int, str], None]):
        self.proc = proc
        self.on_invalid = on_invalid
        self.bytes_read = 0
        self.buffer = b""
        self.done: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stopped = False  # asked to stop before the end of its half

    @classmethod
    def start(
        cls,
        source: IO[bytes],
        split: tuple[int, int],
        *,
        site_id: int | None,
        delivery: Importing,
        on_invalid: Callable[[int, str], None],
    ) -> ImportHelper:
        args = {
            "path": os.path.abspath(source.name),
            "start": split[0],
            "first_line": split[1],
            "site_id": site_id,
            "journal": str(delivery.journal_path),
            "dedup_window": delivery.dedup_window,
            "clock_offset": delivery.clock() - time.time(),
        }
        redis = delivery.redis
        secret = {"redis": None if redis is None else dataclasses.asdict(redis)}
        delivery.journal  # noqa: B018 - created before the helper opens it
        # Blocked while it starts, the helper inherits the mask: a Ctrl-C that reaches it
        # while Python starts up cannot raise there (this process gets its own after that).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, json.dumps(args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        helper = cls(proc, on_invalid)
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(secret).encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            helper.close()
            raise
        return helper

    def poll(self, *, block: bool = False) -> bool:
        """Handle what the helper said so far; False once its output has ended."""
        stdout = self.proc.stdout
        assert stdout is not None
        while block or select.select([stdout], [], [], 0)[0]:
            data = os.read(stdout.fileno(), 1 << 16)
            if not data:
                self._lines(self.buffer)
                self.buffer = b""
                return False
            *complete, self.buffer = (self.buffer + data).split(b"\n")
            self._lines(b"\n".join(complete))
            if block:
                return True
        return True

    def _lines(self, data: bytes) -> None:
        for raw in data.splitlines():
            if not raw.strip():
                continue
            message = json.loads(raw)
            if "p" in message:
                self.bytes_read = int(message["p"])
            elif "i" in message:
                self.on_invalid(int(message["i"][0]), str(message["i"][1]))
            elif "d" in message:
                self.done = message["d"]
            elif "e" in message:
                self.error = message["e"]

    def finish(
        self,
        result: ImportResult,
        *,
        on_progress: Progress | None,
        base: int,
        stop: StopRequest | None = None,
    ) -> None:
        """Wait for the helper, add its counts to `result`; StorageError if it failed.

        Once `stop` is requested the helper is asked to stop after its current chunk.
        """
        while True:
            if stop is not None and stop.requested and not self.stopped:
                self._ask_to_stop()
            if not self.poll(block=True):
                break
            if on_progress is not None:
                on_progress(base + self.bytes_read)
        self.proc.wait()
        self._add(result)
        if self.error is not None:
            raise StorageError(
                str(self.error.get("message")),
                path=self.error.get("path"),
                hint=self.error.get("hint"),
            )
        if self.done is None:
            raise StorageError(
                f"the import helper process ended without a result (exit {self.proc.returncode})",
                hint="re-run the import: what was journaled is skipped as duplicates",
            )

    def stop(self, result: ImportResult) -> None:
        """Ask the helper to stop after its current chunk and add what it committed."""
        self._ask_to_stop()
        with contextlib.suppress(OSError, ValueError):
            while self.poll(block=True):
                pass
        self.proc.wait()
        self._add(result)

    def _ask_to_stop(self) -> None:
        self.stopped = True
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def _add(self, result: ImportResult) -> None:
        counts = self.done or self.error or {}
        result.read += int(counts.get("read", 0))
        result.invalid += int(counts.get("invalid", 0))
        result.added += int(counts.get("added", 0))
        result.duplicates += int(counts.get("duplicates", 0))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


def _read_line(fd: int) -> bytes:
    """One line from `fd`, read unbuffered: what follows it (the end of input) is left for
    `select` to see."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data


def _import_worker(raw_args: str) -> int:
    """Entry point of the import helper process (see `ImportHelper`)."""
    args = json.loads(raw_args)
    secret = json.loads(_read_line(sys.stdin.fileno()) or b"{}")
    out = sys.stdout.buffer
    offset = float(args["clock_offset"])

    def say(message: Mapping[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    reported = [0]

    def invalid(number: int, message: str) -> None:
        reported[0] += 1
        if reported[0] <= _WORKER_MAX_INVALID_REPORTS:
            say({"i": [number, message]})

    def clock() -> float:
        return time.time() + offset

    parser = LineParser(
        site_id=args["site_id"], clock=clock, on_invalid=invalid, first_line=args["first_line"]
    )
    counts = {"added": 0, "duplicates": 0}
    redis = None
    if secret.get("redis") is not None:
        from matokit.redisstore.connection import RedisTarget

        redis = RedisTarget(**secret["redis"])
    try:
        with (
            open_store(
                Path(args["journal"]),
                redis,
                clock=clock,
                dedup_window=float(args["dedup_window"]),
            ) as journal,
            open(args["path"], "rb") as source,
        ):
            source.seek(int(args["start"]))
            commit = partial(journal.enqueue, chunk_size=IMPORT_CHUNK)
            for added in parser.committed(source, IMPORT_CHUNK, commit):
                counts["added"] += added.added
                counts["duplicates"] += added.duplicates
                say({"p": parser.bytes_read})
                if select.select([sys.stdin], [], [], 0)[0]:
                    break  # stdin closed: the main process asks us to stop (or died)
    except StorageError as exc:
        say(
            {
                "e": {
                    "message": exc.message,
                    "path": exc.path,
                    "hint": exc.hint,
                    "read": parser.read,
                    "invalid": parser.invalid,
                    **counts,
                }
            }
        )
        return 1
    say({"d": {"read": parser.read, "invalid": parser.invalid, **counts}})
    return 0
