"""The durable retry journal: one SQLite file per profile holding the hits not yet delivered.

Every write is one `BEGIN IMMEDIATE` transaction in WAL mode with `synchronous=FULL`, so a hit
that `enqueue` acknowledged survives a crash or a power loss. A claim is a lease: if the
flusher dies, the lease expires and the hits become due again. Delivered idempotency keys are
remembered for a window, so replaying an import or a retry never counts a hit twice.

A file that is not a MatoKit journal is never written, deleted or replaced: opening it raises
`JournalCorruptError`. Every sqlite3 failure leaves this module as a `StorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from matokit.errors import JournalCorruptError, StorageError

T = TypeVar("T")

APPLICATION_ID: Final = 0x4D744B4A  # b"MtKJ": marks a SQLite file as a MatoKit journal
DEFAULT_DEDUP_WINDOW: Final = 7 * 86400.0
BUSY_TIMEOUT: Final = 30.0
ENQUEUE_CHUNK: Final = 1000
CACHE_KIB: Final = 16384
FLUSH_HISTORY: Final = 20

_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_ERROR_LENGTH = 2000
_PAGE_SIZE = 500


class EntryState(StrEnum):
    """Where a journaled hit stands."""

    PENDING = "pending"
    INFLIGHT = "inflight"
    SENT_UNCONFIRMED = "sent_unconfirmed"
    UNATTRIBUTED = "unattributed"
    DEAD = "dead"


# States whose hits are still to be delivered.
QUEUED_STATES: Final = frozenset(
    {EntryState.PENDING, EntryState.INFLIGHT, EntryState.SENT_UNCONFIRMED}
)


@dataclass(frozen=True, slots=True)
class NewHit:
    """A hit to journal: its idempotency key, token-free Tracking API params and its time."""

    key: str
    params: Mapping[str, str]
    created_at: float

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a journaled hit needs a non-empty idempotency key")
        if not math.isfinite(self.created_at):
            raise ValueError(f"hit {self.key!r} has no valid time: {self.created_at!r}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One journaled hit as stored.

    `id` sorts like the hit's time (to the millisecond), so replay order is a sort by id.
    `reason` says why a hit is `dead` or `unattributed`; `sent_unconfirmed` counts the sends
    whose answer was lost (Matomo may have stored the hit that many extra times).
    """

    id: str
    key: str
    params: dict[str, str] = field(hash=False)
    created_at: float
    enqueued_at: float
    attempts: int
    next_attempt_at: float
    state: EntryState
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    reason: str | None
    sent_unconfirmed: int

    @property
    def dead_reason(self) -> str | None:
        """Why the hit is dead (None unless it is)."""
        return self.reason if self.state is EntryState.DEAD else None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """How many hits `enqueue` added and how many it skipped as already known."""

    added: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class JournalStats:
    """A snapshot of the journal for `queue status` and the health checks.

    `oldest_created_at` and `oldest_age` concern hits still to deliver (pending, inflight,
    sent_unconfirmed). `next_attempt_at` is when the next of them is (or was) due; `due` how
    many are due now. `sent_unconfirmed_total` sums the lost-answer sends of entries still in
    the journal; `delivered_unconfirmed` counts remembered deliveries that followed one.
    """

    path: Path
    counts: Mapping[EntryState, int]
    due: int
    oldest_created_at: float | None
    oldest_age: float | None
    next_attempt_at: float | None
    sent_unconfirmed_total: int
    delivered_unconfirmed: int
    unattributed_by_reason: Mapping[str, int]
    dead_by_reason: Mapping[str, int]
    delivered_keys: int
    file_size: int
    last_flush: Mapping[str, Any] | None

    @property
    def queued(self) -> int:
        """Hits still to deliver: pending, inflight and sent_unconfirmed."""
        return sum(self.counts[state] for state in QUEUED_STATES)

    @property
    def dead(self) -> int:
        """Hits given up on."""
        return self.counts[EntryState.DEAD]

    @property
    def total(self) -> int:
        """Every entry in the journal, whatever its state."""
        return sum(self.counts.values())


# --- schema ---------------------------------------------------------------------------------

# _MIGRATIONS[n] upgrades schema version n to n + 1; append, never edit a released step.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE entries (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            params TEXT NOT NULL,
            created_at REAL NOT NULL,
            enqueued_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('pending', 'inflight', 'sent_unconfirmed', 'unattributed', 'dead')),
            last_error TEXT,
            lease_owner TEXT,
            lease_expires_at REAL,
            reason TEXT,
            sent_unconfirmed INTEGER NOT NULL DEFAULT 0
        )""",
        # Claims, listings and counts all walk one state in id (= time) order.
        "CREATE INDEX entries_state_id ON entries (state, id)",
        """CREATE TABLE delivered (
            key TEXT PRIMARY KEY,
            delivered_at REAL NOT NULL,
            sent_unconfirmed INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        "CREATE INDEX delivered_at ON delivered (delivered_at)",
        """CREATE TABLE flushes (
            id INTEGER PRIMARY KEY,
            recorded_at REAL NOT NULL,
            result TEXT NOT NULL
        )""",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_ENTRY_COLUMNS = (
    "id, key, params, created_at, enqueued_at, attempts, next_attempt_at, state, last_error,"
    " lease_owner, lease_expires_at, reason, sent_unconfirmed"
)
_REQUIRED_TABLES = {
    "entries": set(_ENTRY_COLUMNS.replace(" ", "").split(",")),
    "delivered": {"key", "delivered_at", "sent_unconfirmed"},
    "flushes": {"id", "recorded_at", "result"},
}
# A hit once sent with its answer lost stays flagged: Matomo may hold a copy whatever follows.
_REQUEUED_STATE = "CASE WHEN sent_unconfirmed > 0 THEN 'sent_unconfirmed' ELSE 'pending' END"
_QUEUED_SQL = "('pending', 'inflight', 'sent_unconfirmed')"

_INSERT_SQL = """
    INSERT INTO entries (id, key, params, created_at, enqueued_at, next_attempt_at, state)
    SELECT ?1, ?2, ?3, ?4, ?5, ?5, 'pending'
    WHERE NOT EXISTS (SELECT 1 FROM delivered WHERE key = ?2 AND delivered_at >= ?6)
    ON CONFLICT (key) DO NOTHING
"""

# Each branch walks the (state, id) index and stops after :limit rows, so a claim stays cheap
# however many entries wait behind the due ones. A lease found expired means its flusher died
# or hung, possibly mid-send: that send is counted as unconfirmed.
_CLAIM_SQL = f"""
    UPDATE entries SET
        state = 'inflight',
        lease_owner = :owner,
        lease_expires_at = :expires,
        attempts = attempts + 1,
        sent_unconfirmed = sent_unconfirmed + (state = 'inflight'),
        last_error = CASE WHEN state = 'inflight'
            THEN 'lease of ' || coalesce(lease_owner, '?') || ' expired' ELSE last_error END
    WHERE id IN (
        SELECT id FROM (SELECT id FROM entries WHERE state = 'pending'
                        AND next_attempt_at <= :now ORDER BY id LIMIT :limit)
        UNION ALL
        SELECT id FROM (SELECT id FROM entries WHERE state = 'sent_unconfirmed'
                        AND next_attempt_at <= :now ORDER BY id LIMIT :limit)
        UNION ALL
        SELECT id FROM (SELECT id FROM entries WHERE state = 'inflight'
                        AND lease_expires_at <= :now ORDER BY id LIMIT :limit)
        ORDER BY id LIMIT :limit
    )
    RETURNING {_ENTRY_COLUMNS}
"""


# --- ids --------------------------------------------------------------------------------------


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value
_ID_SHIFTS = tuple(range(120, -1, -10))


class _IdGenerator:
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


class _IdCollision(Exception):
    """Another process generated the same id: the chunk is retried with fresh ids."""


_encode_params = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _params_json(params: Mapping[str, str]) -> str:
    # The token is added at send time; a journal never holds it, even if a caller slips.
    if type(params) is not dict or "token_auth" in params:
        params = {k: v for k, v in params.items() if k != "token_auth"}
    return _encode_params(params)


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(
        id=row[0],
        key=row[1],
        params=json.loads(row[2]),
        created_at=row[3],
        enqueued_at=row[4],
        attempts=row[5],
        next_attempt_at=row[6],
        state=EntryState(row[7]),
        last_error=row[8],
        lease_owner=row[9],
        lease_expires_at=row[10],
        reason=row[11],
        sent_unconfirmed=row[12],
    )


def _fetch_all(conn: sqlite3.Connection, *, sql: str, args: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _id_list(ids: Iterable[str]) -> list[tuple[str]]:
    if isinstance(ids, str):
        raise TypeError("pass a sequence of entry ids, not a single string")
    return [(entry_id,) for entry_id in ids]


# --- files and errors -----------------------------------------------------------------------


def _aside_hint(path: Path) -> str:
    return (
        f"MatoKit never deletes it: move it aside (mv {path} {path}.bad) and run again to "
        "start an empty journal, or point MATOKIT_DATA_DIR elsewhere"
    )


def storage_error(exc: OSError, path: Path, action: str) -> StorageError:
    """Translate a filesystem failure to `action` `path` into a StorageError naming the fix."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = f"free space on the disk holding {path.parent}"
    elif code == errno.EROFS:
        hint = f"{path.parent} is on a read-only filesystem; set MATOKIT_DATA_DIR to a writable one"
    elif code in (errno.EACCES, errno.EPERM):
        hint = f"make {path.parent} writable by this user, or set MATOKIT_DATA_DIR"
    elif code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        hint = f"something that is not a directory is in the way of {path}; move it aside"
    else:
        hint = "check the path, its permissions and the disk"
    reason = exc.strerror or str(exc)
    return StorageError(f"cannot {action} {path}: {reason}", path=str(path), hint=hint)


def _sqlite_error(exc: sqlite3.Error, path: Path) -> StorageError:
    """Translate a sqlite3 failure into a StorageError (or JournalCorruptError) with its fix."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    where = str(path)
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return JournalCorruptError(
            f"the journal {path} is damaged ({exc})", path=where, hint=_aside_hint(path)
        )
    if primary == sqlite3.SQLITE_FULL:
        return StorageError(
            f"the disk holding the journal {path} is full",
            path=where,
            hint=f"free space on the disk holding {path.parent}, then run again",
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        if _on_read_only_filesystem(path):
            return StorageError(
                f"the journal {path} is on a read-only filesystem ({exc})",
                path=where,
                hint="set MATOKIT_DATA_DIR to a directory on a writable filesystem",
            )
        return StorageError(
            f"cannot write the journal {path} ({exc})",
            path=where,
            hint=f"make {path.parent} and the files in it writable by this user "
            "(SQLite also writes -wal and -shm files there), or set MATOKIT_DATA_DIR",
        )
    if primary == sqlite3.SQLITE_IOERR:
        return StorageError(
            f"disk I/O error on the journal {path} ({exc})",
            path=where,
            hint="check the disk and the filesystem (free space, dmesg), then run again",
        )
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageError(
            f"the journal {path} stayed locked by another process for over {BUSY_TIMEOUT:.0f}s",
            path=where,
            hint="another matokit process is holding it; run again when it has finished",
        )
    return StorageError(f"cannot use the journal {path}: {exc}", path=where)


def _on_read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _is_busy(exc: sqlite3.Error) -> bool:
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def ensure_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700; existing directories are kept."""
    missing: list[Path] = []
    try:
        current = path
        while not current.exists():
            missing.append(current)
            current = current.parent
        if not current.is_dir():
            raise StorageError(
                f"{current} is a file, where the directory {path} should be",
                path=str(current),
                hint=f"move {current} aside, or set MATOKIT_DATA_DIR",
            )
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                continue  # another process made it first
            os.chmod(directory, 0o700)  # mkdir's mode went through the umask
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    except OSError as exc:
        raise storage_error(exc, path, "create the directory") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_header(path: Path) -> None:
    """Refuse, without writing anything, a file that is not a MatoKit journal."""
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise storage_error(exc, path, "read the journal") from exc
    if not header:
        problem = "is empty"
    elif len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        problem = "is not a SQLite database"
    else:
        app_id = int.from_bytes(header[68:72], "big")
        if app_id == APPLICATION_ID:
            return
        problem = f"is a SQLite database of another application (application_id {app_id:#x})"
    raise JournalCorruptError(
        f"{path} {problem}, not a MatoKit journal; it was left untouched",
        path=str(path),
        hint=_aside_hint(path),
    )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION; call inside a write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the journal {path} has schema version {version}; this MatoKit knows up to "
            f"{SCHEMA_VERSION}",
            path=str(path),
            hint="a newer MatoKit wrote it: upgrade matokit",
        )
    for step in _MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# --- the journal ----------------------------------------------------------------------------


class Journal:
    """The retry journal of one profile, stored in the SQLite file at `path`."""

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
        self._ids = _IdGenerator()
        self._conn: sqlite3.Connection | None = None
        ensure_private_dir(self.path.parent)
        if not self.path.exists():
            self._create()
        _check_header(self.path)
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, self.path) from exc
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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    # -- opening --

    def _create(self) -> None:
        """Build a complete empty journal under a temporary name, then link it into place.

        So a journal file is never half-initialised: a crash leaves at most a stray temporary
        file, and two processes creating it at once both end up using the same file.
        """
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{random.getrandbits(32):x}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)  # the umask may have cut the mode further
            os.close(fd)
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                _migrate(conn, self.path)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                # No hard links on this filesystem; a concurrent first creation could now
                # replace the other's file, a tiny window accepted over not working at all.
                os.rename(tmp, self.path)
            _fsync_dir(self.path.parent)
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, self.path) from exc
        except OSError as exc:
            raise storage_error(exc, self.path, "create the journal") from exc
        finally:
            for leftover in (tmp, *(Path(f"{tmp}-{end}") for end in ("journal", "wal", "shm"))):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)

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
            self._write(lambda c: _migrate(c, self.path))
        # Checked before anything else writes, so a damaged file is refused unchanged.
        self._read(self._check_schema)
        with self._translate():
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
        self._tighten_modes()

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        for table, wanted in _REQUIRED_TABLES.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if not wanted <= have:
                raise JournalCorruptError(
                    f"{self.path} carries the MatoKit journal mark but its table {table!r} "
                    "is missing or incomplete; it was left untouched",
                    path=str(self.path),
                    hint=_aside_hint(self.path),
                )

    def _tighten_modes(self) -> None:
        # SQLite gives -wal and -shm the main file's mode; this repairs files copied in by hand.
        for name in (str(self.path), f"{self.path}-wal", f"{self.path}-shm"):
            with contextlib.suppress(OSError):
                info = os.stat(name)
                if info.st_uid == os.geteuid() and info.st_mode & 0o077:
                    os.chmod(name, 0o600)

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
            raise _sqlite_error(exc, self.path) from exc

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, begin: str) -> T:
        """Run `fn` in one transaction, retrying the whole of it while the file is busy.

        busy_timeout already waits for locks; this covers the cases where SQLite returns
        SQLITE_BUSY without waiting (WAL recovery by another connection).
        """
        deadline = time.monotonic() + BUSY_TIMEOUT
        with self._lock, self._translate():
            conn = self._connection()
            while True:
                try:
                    conn.execute(begin)
                    try:
                        result = fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            with contextlib.suppress(sqlite3.Error):
                                conn.execute("ROLLBACK")
                        raise
                    return result
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(random.uniform(0.005, 0.05))

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn, begin="BEGIN IMMEDIATE")

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # A deferred transaction gives several SELECTs one consistent snapshot.
        return self._run(fn, begin="BEGIN")

    # -- adding hits --

    def enqueue(self, hits: Iterable[NewHit], *, chunk_size: int = ENQUEUE_CHUNK) -> EnqueueResult:
        """Journal `hits`, skipping keys already queued, dead, unattributed or recently delivered.

        The iterable is consumed in chunks of `chunk_size`, each committed in one transaction
        before the next is read, so any size streams through in bounded memory. If this raises,
        the chunks committed before stay journaled. Bulk imports pass larger chunks: fewer
        commits (each an fsync) make them several times faster.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        added = duplicates = 0
        for chunk in _chunks(hits, chunk_size):
            count = self._insert_chunk(chunk)
            added += count
            duplicates += len(chunk) - count
        return EnqueueResult(added=added, duplicates=duplicates)

    def enqueue_one(self, hit: NewHit) -> bool:
        """Journal one hit; False when its key is already known (a duplicate)."""
        return self.enqueue((hit,)).added == 1

    def _insert_chunk(self, chunk: list[NewHit]) -> int:
        encoded = [(hit.key, _params_json(hit.params), float(hit.created_at)) for hit in chunk]
        for _ in range(3):
            try:
                return self._write(functools.partial(self._insert_rows, encoded=encoded))
            except _IdCollision:
                self._ids.reseed()
        raise StorageError(
            f"could not find unused ids for new hits in {self.path}", path=str(self.path)
        )

    def _insert_rows(self, conn: sqlite3.Connection, encoded: list[tuple[str, str, float]]) -> int:
        now = self._clock()
        cutoff = now - self._dedup_window
        new_id = self._ids
        rows = [(new_id(at), key, params, at, now, cutoff) for key, params, at in encoded]
        try:
            return conn.executemany(_INSERT_SQL, rows).rowcount
        except sqlite3.IntegrityError as exc:
            if "entries.id" in str(exc):
                raise _IdCollision from exc
            raise

    # -- the delivery cycle --

    def claim(
        self, owner: str, *, limit: int, lease_seconds: float, now: float | None = None
    ) -> list[Entry]:
        """Lease up to `limit` due hits to `owner`, oldest first, counting one attempt each.

        Due means pending or sent_unconfirmed with `next_attempt_at <= now`, or inflight with an
        expired lease (its flusher died; that send counts as unconfirmed). The claimed hits are
        inflight until acked, rescheduled, released, killed or their lease expires.
        """
        if limit <= 0:
            return []
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        at = self._now(now)
        params = {"owner": owner, "expires": at + lease_seconds, "now": at, "limit": limit}
        rows = self._write(lambda conn: conn.execute(_CLAIM_SQL, params).fetchall())
        return sorted((_entry(row) for row in rows), key=lambda entry: entry.id)

    def ack(self, ids: Sequence[str]) -> int:
        """Mark hits delivered: delete them, remember their keys for the dedup window; how many."""
        id_rows = _id_list(ids)

        def run(conn: sqlite3.Connection) -> int:
            now = self._clock()
            conn.executemany(
                """INSERT INTO delivered (key, delivered_at, sent_unconfirmed)
                   SELECT key, ?, sent_unconfirmed FROM entries WHERE id = ?
                   ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at,
                       sent_unconfirmed = excluded.sent_unconfirmed""",
                [(now, entry_id) for (entry_id,) in id_rows],
            )
            deleted = conn.executemany("DELETE FROM entries WHERE id = ?", id_rows).rowcount
            # Pruning here is an index range scan, nearly free when nothing has expired.
            conn.execute(
                "DELETE FROM delivered WHERE delivered_at < ?", (now - self._dedup_window,)
            )
            return deleted

        return self._write(run) if id_rows else 0

    def reschedule(
        self,
        ids: Sequence[str],
        *,
        error: str,
        next_attempt_at: float,
        sent_unconfirmed: bool = False,
    ) -> int:
        """Put hits back to wait until `next_attempt_at`, noting `error`.

        With `sent_unconfirmed`, the request was sent and its answer lost: the hit's counter
        goes up and it stays in the sent_unconfirmed state from then on. Dead and unattributed
        hits are left alone. Returns how many hits changed.
        """
        bump = 1 if sent_unconfirmed else 0
        sql = f"""UPDATE entries SET
                sent_unconfirmed = sent_unconfirmed + :bump,
                state = CASE WHEN sent_unconfirmed + :bump > 0
                    THEN 'sent_unconfirmed' ELSE 'pending' END,
                last_error = :error, next_attempt_at = :next,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = :id AND state IN {_QUEUED_SQL}"""
        common = {"bump": bump, "error": error[:_MAX_ERROR_LENGTH], "next": next_attempt_at}
        return self._update(sql, [{**common, "id": entry_id} for (entry_id,) in _id_list(ids)])

    def release(self, ids: Sequence[str]) -> int:
        """Hand inflight hits back as due without counting the attempt (none was made); how many."""
        sql = f"""UPDATE entries SET attempts = max(attempts - 1, 0), state = {_REQUEUED_STATE},
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state = 'inflight'"""
        return self._update(sql, _id_list(ids))

    def kill(self, items: Sequence[tuple[str, str]]) -> int:
        """Give up on hits: each `(id, reason)` becomes dead with that reason; how many changed."""
        sql = """UPDATE entries SET state = 'dead', reason = ?,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state != 'dead'"""
        return self._update(sql, [(reason, entry_id) for entry_id, reason in items])

    def mark_unattributed(self, ids: Sequence[str], *, reason: str) -> int:
        """Set queued hits aside, never re-sent, when Matomo's counts cannot say which failed."""
        sql = f"""UPDATE entries SET state = 'unattributed', reason = ?,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = ? AND state IN {_QUEUED_SQL}"""
        return self._update(sql, [(reason, entry_id) for (entry_id,) in _id_list(ids)])

    def _update(self, sql: str, rows: Sequence[Any]) -> int:
        if not rows:
            return 0
        return self._write(lambda conn: conn.executemany(sql, rows).rowcount)

    # -- operator actions --

    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Make dead hits due again with their attempts reset; None means every dead hit."""
        sql = f"""UPDATE entries SET state = {_REQUEUED_STATE}, attempts = 0,
                next_attempt_at = ?, reason = NULL
            WHERE state = 'dead'"""
        now = self._clock()
        if ids is None:
            return self._write(lambda conn: conn.execute(sql, (now,)).rowcount)
        return self._update(sql + " AND id = ?", [(now, entry_id) for (entry_id,) in _id_list(ids)])

    def purge_dead(self, *, older_than: float | None = None, now: float | None = None) -> int:
        """Delete dead hits; with `older_than` (seconds), only hits older than that."""
        if older_than is None:
            return self._write(
                lambda c: c.execute("DELETE FROM entries WHERE state = 'dead'").rowcount
            )
        cutoff = self._now(now) - older_than
        sql = "DELETE FROM entries WHERE state = 'dead' AND created_at < ?"
        return self._write(lambda conn: conn.execute(sql, (cutoff,)).rowcount)

    # -- reading --

    def entries(
        self, *, states: Collection[EntryState] | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Entries in the given states (all when None), oldest first."""
        where, args = self._state_filter(states)
        sql = f"SELECT {_ENTRY_COLUMNS} FROM entries {where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._read(functools.partial(_fetch_all, sql=sql, args=args))
        return [_entry(row) for row in rows]

    def iter_entries(self, *, states: Collection[EntryState] | None = None) -> Iterator[Entry]:
        """Stream entries oldest first, a page at a time, for exports of any size.

        Each page is its own short read, so a slow consumer never holds the file; entries that
        change state meanwhile may be seen in their new state or missed.
        """
        where, args = self._state_filter(states)
        joiner = "AND" if where else "WHERE"
        sql = (
            f"SELECT {_ENTRY_COLUMNS} FROM entries {where} {joiner} id > ? "
            f"ORDER BY id LIMIT {_PAGE_SIZE}"
        )
        after = ""
        while True:
            rows = self._read(functools.partial(_fetch_all, sql=sql, args=[*args, after]))
            for row in rows:
                yield _entry(row)
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1][0]

    @staticmethod
    def _state_filter(states: Collection[EntryState] | None) -> tuple[str, list[Any]]:
        if states is None:
            return "", []
        values = [EntryState(state).value for state in states]
        if not values:
            return "WHERE 0", []
        return f"WHERE state IN ({', '.join('?' * len(values))})", values

    def has_key(self, key: str) -> bool:
        """True when `key` is in the journal or was delivered within the dedup window."""
        cutoff = self._clock() - self._dedup_window
        sql = """SELECT EXISTS (SELECT 1 FROM entries WHERE key = ?1)
                     OR EXISTS (SELECT 1 FROM delivered WHERE key = ?1 AND delivered_at >= ?2)"""
        return bool(self._read(lambda conn: conn.execute(sql, (key, cutoff)).fetchone()[0]))

    def find(self, key: str) -> Entry | None:
        """The entry journaled under idempotency key `key`, or None."""
        sql = f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE key = ?"
        row = self._read(lambda conn: conn.execute(sql, (key,)).fetchone())
        return None if row is None else _entry(row)

    def remember_delivered(self, keys: Sequence[str]) -> int:
        """Remember keys of hits delivered without being journaled (a direct `track`).

        Within the dedup window they are then duplicates, like keys of acknowledged entries.
        Returns how many keys were written.
        """
        if isinstance(keys, str):
            raise TypeError("pass a sequence of keys, not a single string")
        sql = """INSERT INTO delivered (key, delivered_at, sent_unconfirmed) VALUES (?, ?, 0)
                 ON CONFLICT (key) DO UPDATE SET delivered_at = excluded.delivered_at"""
        now = self._clock()
        rows = [(key, now) for key in keys]
        return self._update(sql, rows)

    def stats(self, *, now: float | None = None) -> JournalStats:
        """Counts, ages and sizes for `queue status` and the health checks."""
        at = self._now(now)
        return self._read(functools.partial(self._stats, at=at))

    def _stats(self, conn: sqlite3.Connection, *, at: float) -> JournalStats:
        counts = dict.fromkeys(EntryState, 0)
        unconfirmed_total = 0
        for state, count, unconfirmed in conn.execute(
            "SELECT state, count(*), sum(sent_unconfirmed) FROM entries GROUP BY state"
        ):
            counts[EntryState(state)] = count
            unconfirmed_total += unconfirmed
        # Ids sort by the hit's millisecond, so each state's first id is its oldest hit.
        oldest_values = [
            row[0]
            for state in QUEUED_STATES
            for row in conn.execute(
                "SELECT created_at FROM entries WHERE state = ? ORDER BY id LIMIT 1", (state,)
            )
        ]
        due, next_at = conn.execute(
            f"""SELECT coalesce(sum(t <= ?), 0), min(t) FROM (
                  SELECT CASE WHEN state = 'inflight' THEN lease_expires_at
                              ELSE next_attempt_at END AS t
                  FROM entries WHERE state IN {_QUEUED_SQL})""",
            (at,),
        ).fetchone()
        reasons: dict[str, dict[str, int]] = {"unattributed": {}, "dead": {}}
        for state, reason, count in conn.execute(
            """SELECT state, coalesce(reason, ''), count(*) FROM entries
               WHERE state IN ('unattributed', 'dead') GROUP BY state, reason"""
        ):
            reasons[state][reason] = count
        delivered, delivered_unconfirmed = conn.execute(
            """SELECT count(*), coalesce(sum(sent_unconfirmed > 0), 0) FROM delivered
               WHERE delivered_at >= ?""",
            (at - self._dedup_window,),
        ).fetchone()
        oldest = min(oldest_values, default=None)
        flushes = self._last_flushes(conn, 1)
        return JournalStats(
            path=self.path,
            counts=counts,
            due=due,
            oldest_created_at=oldest,
            oldest_age=None if oldest is None else max(at - oldest, 0.0),
            next_attempt_at=next_at,
            sent_unconfirmed_total=unconfirmed_total,
            delivered_unconfirmed=delivered_unconfirmed,
            unattributed_by_reason=reasons["unattributed"],
            dead_by_reason=reasons["dead"],
            delivered_keys=delivered,
            file_size=self._file_size(),
            last_flush=flushes[0] if flushes else None,
        )

    def _file_size(self) -> int:
        total = 0
        for name in (str(self.path), f"{self.path}-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(name).st_size
        return total

    # -- flush records --

    def record_flush(self, result: Mapping[str, Any]) -> None:
        """Keep the outcome of a flush (JSON-able values) with the time; the last 20 are kept."""
        blob = json.dumps(dict(result), default=str, sort_keys=True)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO flushes (recorded_at, result) VALUES (?, ?)", (self._clock(), blob)
            )
            conn.execute(
                "DELETE FROM flushes WHERE id <= (SELECT max(id) FROM flushes) - ?",
                (FLUSH_HISTORY,),
            )

        self._write(run)

    def last_flush(self) -> dict[str, Any] | None:
        """The last recorded flush result plus its `recorded_at` time, or None."""
        records = self._read(lambda conn: self._last_flushes(conn, 1))
        return records[0] if records else None

    def flush_history(self, *, limit: int = FLUSH_HISTORY) -> list[dict[str, Any]]:
        """The recorded flush results, newest first, each with its `recorded_at` time."""
        return self._read(lambda conn: self._last_flushes(conn, limit))

    @staticmethod
    def _last_flushes(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
        rows = conn.execute(
            "SELECT recorded_at, result FROM flushes ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [{"recorded_at": recorded_at, **json.loads(blob)} for recorded_at, blob in rows]
