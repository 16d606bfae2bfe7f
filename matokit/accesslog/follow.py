"""`--follow`: tail one log across rotation (like `tail -F`), journaling as it reads, while a
background thread flushes, until a signal asks to stop.

The file is read to its end every POLL seconds. When its path names another file (renamed by
logrotate, then created anew) the old file is read to its end first, then the new one from its
start; when it got shorter, or its first bytes changed (copytruncate), it is read again from
its start: keys skip what was already journaled. A stop request ends after the chunk being
committed; the hits journaled and not yet sent stay queued (the next run or `queue flush`
sends them). Lines the server wrote to the old file after the switch are imported by a run
over the rotated file (`access.log.1`), exactly once like every other line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from matokit.accesslog.fileimport import FileImport
from matokit.accesslog.locks import file_lock
from matokit.errors import DataError, FlushInProgressError, MatokitError
from matokit.stopping import StopRequest

if TYPE_CHECKING:
    from matokit.accesslog.importer import AccessLogImport
    from matokit.delivery import Delivery, FlushOptions, FlushResult

log = logging.getLogger("matokit.accesslog")

POLL: Final = 0.25
FLUSH_EVERY: Final = 1.0


class BackgroundFlush:
    """A thread that flushes the profile's journal every FLUSH_EVERY seconds (sooner when
    poked), with its own Delivery; `close()` lets the request in flight finish."""

    def __init__(
        self,
        make_delivery: Callable[[], Delivery],
        options: FlushOptions,
        *,
        interval: float = FLUSH_EVERY,
    ) -> None:
        self._make = make_delivery
        self.options = options
        self.interval = interval
        self._stop = StopRequest()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="matokit-flush", daemon=True)
        self.delivered = 0
        self.flushes = 0
        self.last: FlushResult | None = None
        self.error: MatokitError | None = None

    def start(self) -> BackgroundFlush:
        """Start the thread."""
        self._thread.start()
        return self

    def poke(self) -> None:
        """New hits were journaled: flush soon."""
        self._wake.set()

    def close(self, timeout: float = 60.0) -> None:
        """Stop after the request in flight (if any) and wait for the thread."""
        self._stop.request(signal.SIGTERM)
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            with self._make() as delivery:
                while not self._stop.requested:
                    self._wake.wait(self.interval)
                    self._wake.clear()
                    if self._stop.requested:
                        break
                    self._flush(delivery)
        except MatokitError as exc:  # the journal cannot even be opened
            self.error = exc

    def _flush(self, delivery: Delivery) -> None:
        try:
            result = delivery.flush_locked(self.options, stop=self._stop)
        except FlushInProgressError:
            return  # another flush (a cron `queue flush`) sends them
        except MatokitError as exc:
            self.error = exc
            log.warning("background flush failed: %s", exc)
            return
        self.flushes += 1
        self.delivered += result.delivered + result.confirmed
        self.last = result
        self.error = result.error


def follow(
    run: AccessLogImport,
    name: str,
    *,
    stop: StopRequest,
    flusher: BackgroundFlush | None = None,
    poll: float = POLL,
) -> None:
    """Import `name` as it grows and rotates until `stop` is requested (see the module)."""
    with file_lock(run.data_dir, os.path.realpath(name)) as locked:
        if not locked:
            run.summary.add(name).busy = True
            return
        current: FileImport | None = None
        try:
            while not stop.requested:
                if current is None:
                    current = _open(run, name)
                    if current is None:
                        if run.error is not None:
                            return
                        _sleep(poll, stop)
                        continue
                before = current.summary.imported
                current.pump()
                if flusher is not None and current.summary.imported > before:
                    flusher.poke()
                if current.done or stop.requested:
                    break
                change = _changed(name, current)
                if change is None:
                    _sleep(poll, stop)
                    continue
                if change == "rotated":
                    current.pump()  # the old file's last lines
                _close(run, current)
                current = None
        finally:
            if current is not None:
                _close(run, current)


def _open(run: AccessLogImport, name: str) -> FileImport | None:
    """The file at `name` ready to pump; None while it is missing or empty."""
    try:
        raw = open(name, "rb")  # noqa: SIM115 - closed by _close
    except FileNotFoundError:
        return None
    except OSError as exc:
        run.error = DataError(f"cannot read {name}: {exc.strerror or exc}")
        return None
    if os.fstat(raw.fileno()).st_size == 0:
        raw.close()
        return None
    summary = run.summary.add(name)
    importer = run.open(raw, summary, checkpointed=True, final=False)
    if importer is None:
        raw.close()
        if summary.error:
            run.error = DataError(f"{name}: {summary.error}")
        else:
            run.summary.files.remove(summary)
    return importer


def _close(run: AccessLogImport, importer: FileImport) -> None:
    run.finish_file(importer)
    with contextlib.suppress(OSError):
        importer.source.raw.close()


def _changed(name: str, importer: FileImport) -> str | None:
    """ "rotated" when `name` is now another file (or gone), "truncated" when the file got
    shorter or its first bytes changed, else None."""
    identity = importer.identity
    if identity is None:
        return None
    try:
        info = os.stat(name)
    except FileNotFoundError:
        return "rotated"
    if (info.st_dev, info.st_ino) != (identity.device, identity.inode):
        return "rotated"
    if info.st_size < importer.offset:
        return "truncated"
    head = identity.head
    if head:
        try:
            now = os.pread(importer.source.raw.fileno(), len(head), 0)
        except OSError:
            return "truncated"
        if now != head:
            return "truncated"
    return None


def _sleep(seconds: float, stop: StopRequest) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
