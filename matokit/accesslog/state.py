"""The access-log state of a profile: one SQLite file (0600) in its data directory.

It holds what makes re-runs cheap and exact:
- `seen`: the key of every line journaled, by the UTC day of the line, for as long as a line
  of that day may be imported (the horizon): the journal forgets delivered keys after its
  dedup window (7 days), rotated logs are re-read much later. 16 bytes per key.
- `pending`: the keys of a chunk being journaled right now (one row per chunk). A run killed
  between the journal's commit and this file's has them here; the next run (any file) asks the
  journal which of them it holds.
- `checkpoints`: per file, where the last run stopped (see `checkpoint`).
- `hosts`, `sites`: host -> site (SitesManager.getSitesIdFromSiteUrl) and a site's main URL,
  remembered a day, so a run needs no API call while Matomo is down.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from matokit.closing import Closing
from matokit.errors import StorageError
from matokit.journal.storage import (
    BUSY_TIMEOUT,
    ensure_private_dir,
    is_busy,
    tighten_modes,
    transaction,
)

T = TypeVar("T")

FILE_NAME: Final = "access-log.sqlite"
APPLICATION_ID: Final = 0x4D744B41  # b"MtKA"
DAY: Final = 86400
LOOKUP_TTL: Final = 86400.0  # hosts and main URLs are asked again after a day
_BATCH: Final = 500

_SCHEMA: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE seen (day INTEGER NOT NULL, key BLOB NOT NULL, PRIMARY KEY (day, key))"
    " WITHOUT ROWID",
    # One row per chunk being journaled: its (day, key) pairs packed (4 + 16 bytes each).
    "CREATE TABLE pending (id INTEGER PRIMARY KEY, since REAL NOT NULL, pairs BLOB NOT NULL)",
    """CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        head_len INTEGER NOT NULL,
        head TEXT NOT NULL,
        offset INTEGER NOT NULL,
        line INTEGER NOT NULL,
        tail_len INTEGER NOT NULL,
        tail TEXT NOT NULL,
        raw_size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        complete INTEGER NOT NULL,
        window TEXT NOT NULL,
        format TEXT NOT NULL,
        format_state TEXT NOT NULL,
        path TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX checkpoints_inode ON checkpoints (device, inode)",
    "CREATE INDEX checkpoints_head ON checkpoints (head_len, head)",
    "CREATE TABLE hosts (host TEXT PRIMARY KEY, site INTEGER, checked_at REAL NOT NULL)",
    "CREATE TABLE sites (site INTEGER PRIMARY KEY, main_url TEXT, checked_at REAL NOT NULL)",
)


@dataclass(frozen=True)
class Checkpoint:
    """Where a run stopped in a file: after `line` lines, `offset` decompressed bytes."""

    device: int
    inode: int
    head_len: int  # the file's first head_len bytes hash to `head`
    head: str
    offset: int
    line: int
    tail_len: int  # the tail_len bytes before `offset` hash to `tail` (0: not known)
    tail: str
    raw_size: int  # the file's size on disk and mtime when it was saved
    mtime_ns: int
    complete: bool  # a compressed file read to its end (unchanged since: nothing to read)
    window: str  # the occurrence counts (keys.Occurrences.dump)
    format: str
    format_state: str
    path: str
    updated_at: float = 0.0
    id: int | None = None


def day_of(seconds: float) -> int:
    """The UTC day number of a Unix time."""
    return int(seconds // DAY)


class AccessLogState(Closing):
    """The profile's access-log state file, opened (and created, 0600) on construction."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        ensure_private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except OSError as exc:
            raise StorageError(
                f"cannot create {self.path}: {exc.strerror or exc}",
                path=str(self.path),
                hint=f"make {self.path.parent} writable by this user, or set MATOKIT_DATA_DIR",
            ) from exc
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False
            )
            self._setup()
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc) from exc
        tighten_modes(self.path)

    def _setup(self) -> None:
        conn = self._connection()
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and tables:
            raise StorageError(
                f"{self.path} is not MatoKit's access-log state (another application's file)",
                path=str(self.path),
                hint=f"move it aside (mv {self.path} {self.path}.bad) and run again",
            )
        if not tables:

            def create(c: sqlite3.Connection) -> None:
                if c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    return  # another process created it meanwhile
                for statement in _SCHEMA:
                    c.execute(statement)
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute("PRAGMA user_version = 1")

            self._write(create)
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")

    def close(self) -> None:
        """Close the file; twice is harmless."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- transactions --

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self.path} is closed")
        return self._conn

    def _error(self, exc: sqlite3.Error) -> StorageError:
        hint = (
            "another matokit holds it: run again later"
            if is_busy(exc)
            else f"check the disk and permissions of {self.path.parent}; the file only "
            "speeds re-runs up and remembers imported lines: moving it aside is safe within "
            "the journal's dedup window"
        )
        return StorageError(f"cannot use {self.path}: {exc}", path=str(self.path), hint=hint)

    def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        try:
            return transaction(self._connection(), fn, begin=begin)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn, "BEGIN IMMEDIATE")

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn, "BEGIN")

    # -- keys --

    def unseen(self, keys: Sequence[tuple[int, bytes]]) -> list[bool]:
        """For each (day, key): True when it was never journaled by an access-log run."""
        by_day: dict[int, list[bytes]] = {}
        for day, key in keys:
            by_day.setdefault(day, []).append(key)

        def run(conn: sqlite3.Connection) -> set[tuple[int, bytes]]:
            found: set[tuple[int, bytes]] = set()
            for day, day_keys in by_day.items():  # a seek per key on the (day, key) index
                for start in range(0, len(day_keys), _BATCH):
                    batch = day_keys[start : start + _BATCH]
                    marks = ",".join("?" * len(batch))
                    sql = f"SELECT key FROM seen WHERE day = ? AND key IN ({marks})"
                    found.update((day, bytes(k)) for (k,) in conn.execute(sql, [day, *batch]))
            return found

        found = self._read(run) if keys else set()
        return [pair not in found for pair in keys]

    def begin_keys(self, keys: Sequence[tuple[int, bytes]]) -> int:
        """Note keys about to be journaled, before the journal commits them; the note's id."""
        packed = _pack(keys)
        sql = "INSERT INTO pending (since, pairs) VALUES (?, ?)"
        return self._write(lambda c: int(c.execute(sql, (self._clock(), packed)).lastrowid or 0))

    def commit_keys(
        self,
        keys: Sequence[tuple[int, bytes]],
        checkpoint: Checkpoint | None,
        pending: int | None = None,
    ) -> int | None:
        """Keys now in the journal: remembered as seen, their `pending` note dropped; the
        file's checkpoint moves on with them, in the same transaction. Returns the
        checkpoint's id."""

        def run(conn: sqlite3.Connection) -> int | None:
            conn.executemany("INSERT OR IGNORE INTO seen (day, key) VALUES (?, ?)", keys)
            if pending is not None:
                conn.execute("DELETE FROM pending WHERE id = ?", (pending,))
            if checkpoint is None:
                return None
            return _save_checkpoint(conn, checkpoint, self._clock())

        return self._write(run)

    def resolve_pending(self, journaled: Callable[[str], bool]) -> tuple[int, int]:
        """Settle keys a killed run left pending: seen when the journal holds (or delivered)
        them, forgotten otherwise (their lines were not journaled: a re-read imports them).
        Returns (seen, forgotten)."""
        rows = self._read(lambda c: c.execute("SELECT id, pairs FROM pending").fetchall())
        if not rows:
            return 0, 0
        held: list[tuple[int, bytes]] = []
        lost = 0
        for _, packed in rows:
            for day, key in _unpack(bytes(packed)):
                if journaled(key.hex()):
                    held.append((day, key))
                else:
                    lost += 1

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR IGNORE INTO seen (day, key) VALUES (?, ?)", held)
            conn.executemany("DELETE FROM pending WHERE id = ?", [(row[0],) for row in rows])

        self._write(run)
        return len(held), lost

    def prune(self, *, horizon: float) -> int:
        """Forget keys of lines older than the largest horizon ever used (never shrinks), and
        checkpoints untouched for as long; returns how many keys went."""
        now = self._clock()

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM meta WHERE name = 'horizon'").fetchone()
            largest = max(horizon, float(row[0]) if row else 0.0)
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('horizon', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (repr(largest),),
            )
            cutoff = day_of(now - largest) - 1
            gone = conn.execute("DELETE FROM seen WHERE day < ?", (cutoff,)).rowcount
            conn.execute("DELETE FROM checkpoints WHERE updated_at < ?", (now - largest,))
            return int(gone)

        return self._write(run)

    def horizon(self) -> float:
        """The largest horizon ever used (0 when none yet)."""
        row = self._read(
            lambda c: c.execute("SELECT value FROM meta WHERE name = 'horizon'").fetchone()
        )
        return float(row[0]) if row else 0.0

    def count_seen(self) -> int:
        """How many keys are remembered (tests, `describe`-style reports)."""
        return int(self._read(lambda c: c.execute("SELECT count(*) FROM seen").fetchone()[0]))

    # -- checkpoints --

    def checkpoints(self, *, device: int, inode: int) -> list[Checkpoint]:
        """Checkpoints of the file with this device and inode (newest first)."""
        sql = f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE device = ? AND inode = ?"
        sql += " ORDER BY updated_at DESC"
        rows = self._read(lambda c: c.execute(sql, (device, inode)).fetchall())
        return [_checkpoint(row) for row in rows]

    def head_lengths(self) -> list[int]:
        """The distinct head lengths stored (to look a file up by its first bytes)."""
        sql = "SELECT DISTINCT head_len FROM checkpoints WHERE head_len > 0"
        return [int(r[0]) for r in self._read(lambda c: c.execute(sql).fetchall())]

    def checkpoints_by_head(self, head_len: int, head: str) -> list[Checkpoint]:
        """Checkpoints of files whose first `head_len` bytes hash to `head` (largest offset
        first)."""
        sql = (
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE head_len = ? AND head = ? "
            "ORDER BY offset DESC"
        )
        rows = self._read(lambda c: c.execute(sql, (head_len, head)).fetchall())
        return [_checkpoint(row) for row in rows]

    def save_checkpoint(self, checkpoint: Checkpoint) -> int:
        """Record a checkpoint on its own (a stretch of lines with no new key); its id."""
        return self._write(lambda c: _save_checkpoint(c, checkpoint, self._clock()))

    # -- sites --

    def host_site(self, host: str) -> tuple[int | None, float] | None:
        """The remembered site of `host` (None: no site) and when it was asked; None if never."""
        sql = "SELECT site, checked_at FROM hosts WHERE host = ?"
        row = self._read(lambda c: c.execute(sql, (host,)).fetchone())
        return None if row is None else (None if row[0] is None else int(row[0]), float(row[1]))

    def remember_host(self, host: str, site: int | None) -> None:
        """Remember `host`'s site (None: Matomo has none for it), as of now."""
        sql = "INSERT OR REPLACE INTO hosts (host, site, checked_at) VALUES (?, ?, ?)"
        self._write(lambda c: c.execute(sql, (host, site, self._clock())))

    def main_url(self, site: int) -> tuple[str, float] | None:
        """The remembered main URL of `site` and when it was asked; None if never."""
        sql = "SELECT main_url, checked_at FROM sites WHERE site = ?"
        row = self._read(lambda c: c.execute(sql, (site,)).fetchone())
        return None if row is None or row[0] is None else (str(row[0]), float(row[1]))

    def remember_main_url(self, site: int, url: str) -> None:
        """Remember `site`'s main URL, as of now."""
        sql = "INSERT OR REPLACE INTO sites (site, main_url, checked_at) VALUES (?, ?, ?)"
        self._write(lambda c: c.execute(sql, (site, url, self._clock())))


_CHECKPOINT_COLUMNS: Final = (
    "device, inode, head_len, head, offset, line, tail_len, tail, raw_size, mtime_ns, complete,"
    " window, format, format_state, path, updated_at, id"
)


def _pack(pairs: Sequence[tuple[int, bytes]]) -> bytes:
    return b"".join(day.to_bytes(4, "big") + key for day, key in pairs)


def _unpack(packed: bytes) -> list[tuple[int, bytes]]:
    return [
        (int.from_bytes(packed[i : i + 4], "big"), packed[i + 4 : i + 20])
        for i in range(0, len(packed) - 19, 20)
    ]


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    (device, inode, head_len, head, offset, line, tail_len, tail, raw_size, mtime_ns) = row[:10]
    complete, window, fmt, state, path, at, ident = row[10:]
    return Checkpoint(
        device=int(device),
        inode=int(inode),
        head_len=int(head_len),
        head=str(head),
        offset=int(offset),
        line=int(line),
        tail_len=int(tail_len),
        tail=str(tail),
        raw_size=int(raw_size),
        mtime_ns=int(mtime_ns),
        complete=bool(complete),
        window=str(window),
        format=str(fmt),
        format_state=str(state),
        path=str(path),
        updated_at=float(at),
        id=int(ident),
    )


def _save_checkpoint(conn: sqlite3.Connection, cp: Checkpoint, now: float) -> int:
    values = (
        cp.device,
        cp.inode,
        cp.head_len,
        cp.head,
        cp.offset,
        cp.line,
        cp.tail_len,
        cp.tail,
        cp.raw_size,
        cp.mtime_ns,
        int(cp.complete),
        cp.window,
        cp.format,
        cp.format_state,
        cp.path,
        now,
    )
    if cp.id is not None:
        changed = conn.execute(
            "UPDATE checkpoints SET device = ?, inode = ?, head_len = ?, head = ?, offset = ?,"
            " line = ?, tail_len = ?, tail = ?, raw_size = ?, mtime_ns = ?, complete = ?,"
            " window = ?, format = ?, format_state = ?, path = ?, updated_at = ? WHERE id = ?",
            (*values, cp.id),
        ).rowcount
        if changed:
            return cp.id
    cursor = conn.execute(
        "INSERT INTO checkpoints (device, inode, head_len, head, offset, line, tail_len, tail,"
        " raw_size, mtime_ns, complete, window, format, format_state, path, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
    )
    return int(cursor.lastrowid or 0)


@contextlib.contextmanager
def opened(path: Path, *, clock: Callable[[], float] = time.time) -> Iterator[AccessLogState]:
    """The state file at `path`, closed on exit."""
    state = AccessLogState(path, clock=clock)
    try:
        yield state
    finally:
        state.close()
