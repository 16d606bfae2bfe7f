"""An open journal file: opening or creating it, and the transactions every operation runs in.

Every write is one `BEGIN IMMEDIATE` transaction in WAL mode with `synchronous=FULL`; every
sqlite3 failure leaves as a `StorageError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Self, TypeVar

from matokit.closing import Closing
from matokit.journal.ids import IdGenerator
from matokit.journal.schema import (
    SCHEMA_VERSION,
    check_header,
    check_schema,
    create_file,
    migrate,
)
from matokit.journal.storage import (
    BUSY_TIMEOUT,
    ensure_private_dir,
    sqlite_error,
    tighten_modes,
    transaction,
)

T = TypeVar("T")

DEFAULT_DEDUP_WINDOW: Final = 7 * 86400.0
CACHE_KIB: Final = 16384


class JournalConnection(Closing):
    """The SQLite connection to one journal file; `Journal` adds the operations on hits."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
    ) -> None:
        """Open the journal at `path`, creating it (and its 0700 directory) if missing."""
        self.path = Path(path)
        self._clock = clock
        self._dedup_window = dedup_window
        self._lock = threading.RLock()
        self._ids = IdGenerator()
        self._conn: sqlite3.Connection | None = None
        ensure_private_dir(self.path.parent)
        if not self.path.exists():
            create_file(self.path)
        check_header(self.path)
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path) from exc
        try:
            self._configure()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
    ) -> Self:
        """Open (or create) the journal at `path`; same as calling the class."""
        return cls(path, clock=clock, dedup_window=dedup_window)

    @property
    def location(self) -> str:
        """Where the journal lives, as shown to people: its file."""
        return str(self.path)

    @property
    def remote(self) -> bool:
        """False: the journal's work (SQL and fsync) is this process's own."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _configure(self) -> None:
        conn = self._connection()
        with self._translate():
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            # 16 MiB of page cache (allocated only as used): with SQLite's 2 MiB default a
            # large journal's key index no longer fits and every insert goes to the OS.
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        version = self._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            self._write(lambda c: migrate(c, self.path))
        # Checked before anything else writes, so a damaged file is refused unchanged.
        self._read(lambda c: check_schema(c, self.path))
        with self._translate():
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
        tighten_modes(self.path)

    # -- transactions --

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the journal {self.path} is closed")
        return self._conn

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path) from exc

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, begin: str) -> T:
        """Run `fn` in one transaction, retrying the whole of it while the file is busy."""
        with self._lock, self._translate():
            return transaction(self._connection(), fn, begin=begin)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn, begin="BEGIN IMMEDIATE")

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # A deferred transaction gives several SELECTs one consistent snapshot.
        return self._run(fn, begin="BEGIN")

    def _update(self, sql: str, rows: Sequence[Any]) -> int:
        """Run `sql` once per row in one write transaction; how many rows it changed."""
        if not rows:
            return 0
        return self._write(lambda conn: conn.executemany(sql, rows).rowcount)
