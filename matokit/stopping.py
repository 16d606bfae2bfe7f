"""Graceful stop on SIGINT/SIGTERM: the first signal asks to drain, the second stops at once.

A request cut short after it was sent may already be stored by Matomo, so its hits must then
be re-sent as "maybe sent" (a possible duplicate). The first signal therefore only sets a
`StopRequest`; the work loops check it between units of work (a batch, a chunk of lines) and
stop there, after the request in flight has been answered and recorded. A second signal raises
`Interrupted` wherever the process is (the old, abrupt behaviour).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Final

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Stopped at once: a second signal, or a signal while waiting with no safe point.

    Not a KeyboardInterrupt, which click and typer turn into a bare exit 130: this one
    reaches `matokit.cli.run`, which says which signal stopped the run and exits 130 or 143.
    Like KeyboardInterrupt, `except Exception` does not catch it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


class StopRequest:
    """Set by a signal handler, read by the loops that can stop between units of work.

    `signum` is the first signal received (None: no stop asked). Inside `interruptible()`
    (a blocking wait with nothing to finish, such as waiting for the flush lock) a signal
    raises `Interrupted` at once instead.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._interruptible = 0

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask to stop (the first request's signal is kept)."""
        if self.signum is None:
            self.signum = signum

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """While inside, a signal raises `Interrupted` at once (there is nothing to drain)."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1

    def on_signal(self, signum: int) -> None:
        """What a signal does: the first asks to stop, a second (or in a wait) stops at once."""
        first = self.signum is None
        self.request(signum)
        if not first or self._interruptible:
            raise Interrupted(signum)


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM, ... (the number when unknown)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest | None = None) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to `stop` (a new one by default) while inside; yields it.

    Outside the main thread signals cannot be handled: the StopRequest is yielded unwired.
    """
    stop = stop or StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.on_signal(signum)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
