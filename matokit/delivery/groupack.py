"""Group commit of acknowledgements: lanes that finish at once share one journal write.

Lanes answered at nearly the same moment would otherwise acknowledge one after another, each
in its own transaction (an fsync on SQLite, a script and its fsync on Redis), and the last lane
waits for all of them before its next request. Here the first lane to arrive writes; lanes
arriving meanwhile queue, and the next writer takes every queued acknowledgement in one call.
Each caller returns only once its own hits are written (or raises the write's error): nothing
is acknowledged later than before, so a kill -9 leaves no more hits uncertain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class _Ticket:
    ids: Sequence[str]
    done: bool = False
    error: BaseException | None = None


class GroupAck:
    """`ack(ids)` through `write` (the journal's ack), several callers' ids in one call."""

    def __init__(self, write: Callable[[Sequence[str]], object]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._queued: list[_Ticket] = []
        self._writing = False

    def ack(self, ids: Sequence[str]) -> None:
        """Write `ids` as delivered, alone or with other callers'; raises the write's error."""
        ticket = _Ticket(ids)
        with self._cond:
            self._queued.append(ticket)
            while not ticket.done and self._writing:
                self._cond.wait()
            if ticket.done:
                return self._outcome(ticket)
            self._writing = True
            group, self._queued = self._queued, []
        error: BaseException | None = None
        try:
            self._write([entry_id for member in group for entry_id in member.ids])
        except BaseException as exc:  # every member of the group learns it
            error = exc
        with self._cond:
            for member in group:
                member.done, member.error = True, error
            self._writing = False
            self._cond.notify_all()
        return self._outcome(ticket)

    @staticmethod
    def _outcome(ticket: _Ticket) -> None:
        if ticket.error is not None:
            raise ticket.error
