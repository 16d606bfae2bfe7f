"""The durable retry journal: one SQLite file per profile holding the hits not yet delivered.

Every write is one `BEGIN IMMEDIATE` transaction in WAL mode with `synchronous=FULL`, so a hit
that `enqueue` acknowledged survives a crash or a power loss. A claim is a lease: if the
flusher dies, the lease expires and the hits become due again. Delivered idempotency keys are
remembered for a window, so replaying an import or a retry never counts a hit twice.

A file that is not a MatoKit journal is never written, deleted or replaced: opening it raises
`JournalCorruptError`. Every sqlite3 failure leaves this package as a `StorageError`.

Modules: `records` (states and frozen records), `ids` (time-ordered ids), `lookup` (ids as
people type them: unique prefixes), `storage` (files on disk, errors), `schema` (tables,
migrations, the file's mark), `queries` (SQL, row conversion), `stats` (snapshots),
`connection` (opening, transactions), `reconciling` (exactly-once: hits awaiting a lookup,
the site -> key dimension map), `store` (the Journal's operations).
"""

from matokit.journal.connection import CACHE_KIB, DEFAULT_DEDUP_WINDOW
from matokit.journal.reconciling import DIMENSION_TTL, SiteRecord
from matokit.journal.records import (
    QUEUED_STATES,
    EnqueueResult,
    Entry,
    EntryState,
    JournalStats,
    NewHit,
)
from matokit.journal.schema import APPLICATION_ID, SCHEMA_VERSION
from matokit.journal.storage import BUSY_TIMEOUT, ensure_private_dir, storage_error
from matokit.journal.store import ENQUEUE_CHUNK, FLUSH_HISTORY, Journal

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT",
    "CACHE_KIB",
    "DEFAULT_DEDUP_WINDOW",
    "DIMENSION_TTL",
    "ENQUEUE_CHUNK",
    "FLUSH_HISTORY",
    "QUEUED_STATES",
    "SCHEMA_VERSION",
    "EnqueueResult",
    "Entry",
    "EntryState",
    "Journal",
    "JournalStats",
    "NewHit",
    "SiteRecord",
    "ensure_private_dir",
    "storage_error",
]
