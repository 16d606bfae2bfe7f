"""`queue migrate`: move a profile's journal to Redis, back to SQLite, or between two of either.

Everything moves: every hit with its key, state and history (attempts, errors, lost answers,
the exactly-once fields), the delivered keys of the dedup window, the flush history and the
sites' key dimensions. The order makes it safe to kill at any moment and run again:

1. site records, flush records and delivered keys are merged into the destination (each
   idempotent: the later record wins);
2. entries are copied a page at a time, in one atomic step per page, only under keys the
   destination does not hold yet (`adopt_entries`); then exactly those the destination now
   holds are deleted from the source, and only if unchanged since they were read (`discard`);
3. deliveries remembered meanwhile (a direct `track`) are merged again.

A hit is therefore always in the source, the destination or both (between steps of a page),
never in neither; a re-run finds the ones in both already held and only deletes them from the
source. It runs under the flush lock of both sides, so no flush sends from either meanwhile,
and refuses (FlushInProgressError) while a flush holds one. Hits journaled while it runs stay
in the source and are counted in `left`: run it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from matokit.errors import UsageError
from matokit.journal.contract import JournalStore, Transferable
from matokit.journal.queries import chunks

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.stopping import StopRequest

PAGE: Final = 500
SQLITE: Final = "sqlite"


@dataclass(frozen=True)
class MigrationResult:
    """What one `queue migrate` run did.

    `moved` entries left the source for the destination (by state in `by_state`): `written`
    of them were new there, `already` were held from an earlier, interrupted run, and
    `delivered` had their key delivered there within the dedup window (not queued again).
    `left` entries are still in the source (journaled or changed while it ran).
    """

    source: str
    destination: str
    moved: int = 0
    written: int = 0
    already: int = 0
    delivered: int = 0
    left: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    delivered_keys: int = 0
    flushes: int = 0
    sites: int = 0
    stopped: bool = False
    source_exists: bool = True

    @property
    def complete(self) -> bool:
        """Whether the source holds no hit any more."""
        return self.left == 0 and not self.stopped

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {**dataclasses.asdict(self), "complete": self.complete}


def migrate(
    source: JournalStore,
    destination: JournalStore,
    *,
    page: int = PAGE,
    stop: StopRequest | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> MigrationResult:
    """Move everything from `source` to `destination` (see the module docstring).

    The caller holds both flush locks. Stops between pages once `stop` is requested;
    `on_progress(n)` hears how many entries each page moved.
    """
    src = _transferable(source, "source")
    dst = _transferable(destination, "destination")
    if _identity(src) == _identity(dst):
        raise UsageError(
            f"the journal is already at {dst.location}",
            hint="Give another destination with --to (redis://..., sqlite or sqlite:PATH).",
        )
    sites = dst.adopt_sites(list(src.site_dimensions().values()))
    flushes = dst.adopt_flushes(list(reversed(src.flush_history())))
    delivered_keys = _copy_delivered(src, dst)
    moved = written = already = delivered = 0
    by_state: dict[str, int] = {}
    stopped = False
    for chunk in chunks(src.iter_entries(), page):
        if stop is not None and stop.requested:
            stopped = True
            break
        adopted = dst.adopt_entries(chunk)
        held = [entry for entry in chunk if entry.key in adopted.held]
        gone = src.discard(held)
        moved += gone
        written += adopted.written
        already += adopted.present
        delivered += adopted.delivered
        for entry in held:
            by_state[entry.state.value] = by_state.get(entry.state.value, 0) + 1
        if on_progress is not None:
            on_progress(gone)
    delivered_keys += _copy_delivered(src, dst)
    return MigrationResult(
        source=src.location,
        destination=dst.location,
        left=src.stats().total,
        by_state=by_state,
        delivered_keys=delivered_keys,
        flushes=flushes,
        sites=sites,
        stopped=stopped,
        moved=moved,
        written=written,
        already=already,
        delivered=delivered,
    )


def _transferable(journal: JournalStore, side: str) -> Transferable:
    if not isinstance(journal, Transferable):
        raise UsageError(
            f"the {side} journal ({journal.location}) cannot take part in a migration: "
            f"{type(journal).__name__} has no transfer operations",
            hint="Upgrade MatoKit on this host.",
        )
    return journal


def _copy_delivered(src: Transferable, dst: Transferable) -> int:
    added = 0
    for chunk in chunks(src.delivered_keys(), PAGE * 2):
        added += dst.adopt_delivered(chunk)
    return added


# --- the profile's journal and a destination named on the command line ------------------------


@dataclass(frozen=True)
class Destination:
    """Where `--to` points: a Redis URL, the profile's SQLite file, or a SQLite file at `path`."""

    settings: Settings
    path: Path | None = None

    @property
    def lock_path(self) -> Path:
        """The flush lock guarding the journal there."""
        from matokit.locking import LOCK_NAME

        directory = self.path.parent if self.path is not None else self.settings.data_dir
        return directory / LOCK_NAME


def destination(settings: Settings, to: str) -> Destination:
    """The destination `to` names for the profile `settings`: `redis://...`, `rediss://...`,
    `unix://...`, `sqlite` (the profile's journal file) or `sqlite:PATH`; UsageError else."""
    from matokit.config import KEYS_BY_NAME
    from matokit.redact import register_url_credentials

    text = to.strip()
    if text == SQLITE:
        return Destination(dataclasses.replace(settings, redis_url=None))
    if text.startswith(f"{SQLITE}:"):
        path = Path(text[len(SQLITE) + 1 :]).expanduser()
        if not str(path) or str(path) == ".":
            raise UsageError("--to sqlite:PATH needs a path", hint="e.g. --to sqlite:./j.sqlite")
        return Destination(dataclasses.replace(settings, redis_url=None), path.absolute())
    register_url_credentials(text)  # never shown, whatever happens next
    try:
        url = KEYS_BY_NAME["redis_url"].parse(text)
    except ValueError as exc:
        raise UsageError(
            f"--to {_shown(text)} {exc}",
            hint="Use redis://HOST:PORT/DB, rediss://... (TLS), unix:///path, sqlite or "
            "sqlite:PATH.",
        ) from None
    return Destination(dataclasses.replace(settings, redis_url=url))


def _shown(text: str) -> str:
    from matokit.redact import display_url, redact

    return display_url(text) or redact(text)


def open_destination(target: Destination) -> JournalStore:
    """The journal at `target` (created when missing)."""
    from matokit.journal.opening import open_journal

    if target.path is None:
        return open_journal(target.settings)
    from matokit.journal import Journal

    return Journal(target.path, dedup_window=target.settings.dedup_window)


def source_lock_path(settings: Settings) -> Path:
    """The flush lock guarding the profile's own journal."""
    from matokit.locking import LOCK_NAME

    return settings.data_dir / LOCK_NAME


@contextlib.contextmanager
def flush_locks(sides: list[tuple[Settings, Path]]) -> Iterator[None]:
    """Hold the flush lock of each side (each one once): the file lock in its directory, or the
    profile's Redis lock (shared by every host) when the side is on Redis; FlushInProgressError
    if one is held."""
    from matokit.redisstore.connection import RedisTarget
    from matokit.shared import profile_flush_lock

    with contextlib.ExitStack() as held:
        seen: set[object] = set()
        for settings, directory in sides:
            redis = RedisTarget.from_settings(settings)
            identity: object = (
                (redis.url, redis.namespace) if redis is not None else directory.resolve()
            )
            if identity in seen:
                continue
            seen.add(identity)
            held.enter_context(profile_flush_lock(directory, redis=redis, wait=False))
        yield


def describe(target: Destination) -> str:
    """Where `target` is, as shown to people (never a password)."""
    if target.path is not None:
        return str(target.path)
    from matokit.redisstore.connection import RedisTarget

    redis = RedisTarget.from_settings(target.settings)
    if redis is None:
        return str(target.settings.journal_path)
    return f"{redis.display} {redis.keys.journal('*')}"


def migrate_profile(
    settings: Settings,
    to: str,
    *,
    stop: StopRequest | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> MigrationResult:
    """Move the profile's journal (SQLite, or Redis with `redis_url`) to `to`, under both
    flush locks (see `destination` for what `to` may be). A profile without a journal file
    has nothing to move: nothing is created anywhere."""
    from matokit.journal.opening import journal_exists, open_journal

    target = destination(settings, to)
    if not journal_exists(settings):
        if target.settings.redis_url is None and _same_file(settings, target):
            raise UsageError(
                f"the journal is already at {settings.journal_path}",
                hint="Give another destination with --to (redis://..., sqlite:PATH).",
            )
        return MigrationResult(
            describe(Destination(settings)), describe(target), source_exists=False
        )
    with (
        flush_locks(
            [
                (settings, source_lock_path(settings).parent),
                (target.settings, target.lock_path.parent),
            ]
        ),
        open_journal(settings) as source,
        open_destination(target) as dest,
    ):
        result = migrate(source, dest, stop=stop, on_progress=on_progress)
    # Both sides named alike, whatever the backends call themselves.
    return dataclasses.replace(
        result, source=describe(Destination(settings)), destination=describe(target)
    )


def _same_file(settings: Settings, target: Destination) -> bool:
    path = target.path or target.settings.journal_path
    return path.absolute() == settings.journal_path.absolute()


def _identity(journal: object) -> tuple[str, str]:
    """Where a journal lives: its location, and on Redis the profile's namespace too (two
    profiles may share one server)."""
    target = getattr(journal, "target", None)
    namespace = str(getattr(target, "namespace", ""))
    return str(getattr(journal, "location", "")), namespace
