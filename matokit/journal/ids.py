"""Time-ordered entry ids: replay order is a sort by id."""

from __future__ import annotations

import random

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value
_ID_SHIFTS = tuple(range(120, -1, -10))


class IdGenerator:
    """Makes ULID-shaped ids (26 Crockford base32 characters) that sort by the hit's time.

    The 48-bit millisecond is the hit's own time, not the enqueue time, so a replay sends
    hits in the order they happened. The 80 bits after it start random (unique across
    processes) and count up within one millisecond (keeping this process's order).
    """

    _MAX_MS = (1 << 48) - 1

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_low = 0

    def reseed(self) -> None:
        """Forget the last id, so the next one starts from fresh random bits."""
        self._last_ms = -1

    def __call__(self, created_at: float) -> str:
        ms = min(max(int(created_at * 1000), 0), self._MAX_MS)
        # Fresh bits leave the top bit clear, so counting up within a millisecond cannot overflow.
        low = self._last_low + 1 if ms == self._last_ms else random.getrandbits(79)
        self._last_ms, self._last_low = ms, low
        value = (ms << 80) | low
        # base64.b32hexencode would also keep the order, but is pure Python and 3x slower.
        return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in _ID_SHIFTS])


class IdCollision(Exception):
    """Another process generated the same id: the chunk is retried with fresh ids."""
