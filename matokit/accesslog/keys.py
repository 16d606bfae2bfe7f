"""Idempotency keys of log lines: the site, the line's bytes, and its occurrence number.

Two identical lines (same client, second, request, status, size, referrer and agent) are two
requests, so a line's key also holds how many identical lines came before it in the file: the
first is occurrence 0, the next 1. Identical lines share their time, so only lines of the last
WINDOW seconds (of log time) can still be repeated; older counts are forgotten, by a rule that
depends only on the lines read, never on where a run started or stopped: a run resumed from a
checkpoint (which keeps the counts of the window) numbers every line as a run from the start.

The key is 32 hex characters (128 bits), like every journal key; a line's digest (also 128
bits) stands for the line in the occurrence counts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

WINDOW: Final = 60
KEY_VERSION: Final = b"matokit access-log v1\x00"
_PRUNE_EVERY: Final = 20_000


def line_digest(raw: bytes) -> bytes:
    """The 16-byte digest of a line's bytes (without its line break)."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def line_key(site: int, digest: bytes, occurrence: int) -> str:
    """The journal key of the `occurrence`-th identical line with `digest`, on `site`."""
    material = b"%s%d\x00%s\x00%d" % (KEY_VERSION, site, digest, occurrence)
    return hashlib.blake2b(material, digest_size=16).hexdigest()


class Occurrences:
    """How many identical lines came before each line, within WINDOW seconds of log time."""

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[int, int]] = {}  # digest -> (count, line time)
        self.latest = 0  # the latest line time seen
        self._until_prune = _PRUNE_EVERY

    def next(self, digest: bytes, when: int) -> int:
        """The occurrence number of a line with `digest` at `when` (counting it)."""
        if when > self.latest:
            self.latest = when
        previous = self._seen.get(digest)
        count = 0
        if previous is not None and previous[1] >= self.latest - WINDOW:
            count = previous[0]
        self._seen[digest] = (count + 1, when)
        self._until_prune -= 1
        if self._until_prune <= 0:
            self.prune()
        return count

    def prune(self) -> None:
        """Forget counts older than the window (they would be ignored anyway)."""
        cutoff = self.latest - WINDOW
        self._seen = {d: v for d, v in self._seen.items() if v[1] >= cutoff}
        self._until_prune = _PRUNE_EVERY

    def dump(self) -> str:
        """The counts a resumed run needs, as text for the checkpoint."""
        cutoff = self.latest - WINDOW
        entries = [[d.hex(), c, t] for d, (c, t) in self._seen.items() if t >= cutoff]
        return json.dumps({"latest": self.latest, "seen": entries}, separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> Occurrences:
        """Counts from `dump()`; empty ones for an empty or damaged text."""
        counts = cls()
        try:
            data = json.loads(text) if text else {}
            counts.latest = int(data.get("latest", 0))
            for digest, count, when in data.get("seen", []):
                counts._seen[bytes.fromhex(digest)] = (int(count), int(when))
        except (ValueError, TypeError, AttributeError):
            return cls()
        return counts
