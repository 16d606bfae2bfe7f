"""The journal's schema: its tables, the application id that marks the file, migrations.

A file that is not a MatoKit journal is never written, deleted or replaced: `check_header` and
`check_schema` refuse it with `JournalCorruptError` before anything writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sqlite3
from pathlib import Path
from typing import Final

from matokit.errors import JournalCorruptError, StorageError
from matokit.journal.storage import aside_hint, fsync_dir, sqlite_error, storage_error

APPLICATION_ID: Final = 0x4D744B4A  # b"MtKJ": marks a SQLite file as a MatoKit journal

_SQLITE_MAGIC = b"SQLite format 3\x00"

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
    (
        # Exactly-once (ADR-0008): the key dimension a hit's last send carried, when that send
        # began, whether it must be looked up in Matomo before any re-send, and whether its
        # re-send goes alone (its batch was refused in part without saying which hit).
        "ALTER TABLE entries ADD COLUMN dimension INTEGER",
        "ALTER TABLE entries ADD COLUMN sent_at REAL",
        "ALTER TABLE entries ADD COLUMN verify INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE entries ADD COLUMN alone INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX entries_verify ON entries (next_attempt_at) WHERE verify = 1",
        "ALTER TABLE delivered ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0",
        # Each site's matokit_key dimension (NULL: none), as discovered or set up, and whether
        # Matomo refused lookups there (Live off, no view access) and since when.
        """CREATE TABLE key_dimensions (
            site INTEGER PRIMARY KEY,
            dimension INTEGER,
            checked_at REAL NOT NULL,
            unavailable TEXT,
            unavailable_at REAL
        )""",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# The columns of `entries` in the order `queries.entry_from_row` reads them.
ENTRY_COLUMNS: Final = (
    "id, key, params, created_at, enqueued_at, attempts, next_attempt_at, state, last_error,"
    " lease_owner, lease_expires_at, reason, sent_unconfirmed, dimension, sent_at, verify, alone"
)
_REQUIRED_TABLES = {
    "entries": set(ENTRY_COLUMNS.replace(" ", "").split(",")),
    "delivered": {"key", "delivered_at", "sent_unconfirmed", "confirmed"},
    "flushes": {"id", "recorded_at", "result"},
    "key_dimensions": {"site", "dimension", "checked_at", "unavailable", "unavailable_at"},
}


def check_header(path: Path) -> None:
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
        hint=aside_hint(path),
    )


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a journal-marked file whose tables lack columns this MatoKit needs."""
    for table, wanted in _REQUIRED_TABLES.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not wanted <= have:
            raise JournalCorruptError(
                f"{path} carries the MatoKit journal mark but its table {table!r} "
                "is missing or incomplete; it was left untouched",
                path=str(path),
                hint=aside_hint(path),
            )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
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


def create_file(path: Path) -> None:
    """Build a complete empty journal under a temporary name, then link it into place at `path`.

    So a journal file is never half-initialised: a crash leaves at most a stray temporary
    file, and two processes creating it at once both end up using the same file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(32):x}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # the umask may have cut the mode further
        os.close(fd)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            migrate(conn, path)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # No hard links on this filesystem; a concurrent first creation could now
            # replace the other's file, a tiny window accepted over not working at all.
            os.rename(tmp, path)
        fsync_dir(path.parent)
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path) from exc
    except OSError as exc:
        raise storage_error(exc, path, "create the journal") from exc
    finally:
        for leftover in (tmp, *(Path(f"{tmp}-{end}") for end in ("journal", "wal", "shm"))):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
