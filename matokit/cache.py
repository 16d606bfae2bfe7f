"""The report cache: requests-cache on SQLite (one database per profile) or, with `redis_url`,
on Redis under the profile's namespace (`matokit.redisstore.cache`); never a token inside.

What is cached: only Reporting API answers that can be reused (a report with `period` and
`date`, and `SitesManager.getSiteFromId` / `API.getReportMetadata` for a day). Never tracking
(the client sends hits over a separate session anyway), never `Live.*`, never health probes or
any other method, never an error (including Matomo's `{"result":"error"}` inside an HTTP 200).

How long: a period that includes the site's today (in the site's time zone) for `ttl_today`
(300 s), a finished period for `ttl_past` (1 day). Relative dates (`today`, `yesterday`,
`lastN`...) never outlive the site's midnight, when their meaning changes. The session learns a
site's time zone from the `SitesManager.getSiteFromId` answers it passes on (cached or not), so
ask for the site first (`matokit.reportfetch` does); a site of unknown zone gets the short TTLs.

The token travels in the POST body, so POST is cacheable; `token_auth` (and the usual auth
headers) are requests-cache `ignored_parameters`: left out of the cache key *and* replaced by
`REDACTED` in the stored request. Responses that followed a redirect are never stored (their
history would keep the original body).

A cache hit of `matokit report` can be answered without importing requests or requests-cache
(`lookup`). It reads only MatoKit's own table, never requests-cache's storage: whenever
requests-cache stores an answer (`save_response`), MatoKit writes a row keyed by (URL, method,
format, parameters without the token) with the same expiry and the JSON text of the answer.
`cache clear` empties both; `--refresh` replaces both. `cache stats` counts MatoKit's rows.
On Redis, MatoKit's rows are keys expiring with the answer (`matokit.redisstore.answers`), and
the lean path reads them with a standard-library client (`matokit.redisstore.resp`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from matokit.dates import site_today, site_tzinfo, span, validate
from matokit.errors import MatokitError, StorageError
from matokit.sizes import database_size

if TYPE_CHECKING:
    from requests_cache import CachedSession

    from matokit.config import Settings
    from matokit.reports import Report

log = logging.getLogger("matokit.cache")

DAY = 86400.0
DIR_MODE = 0o700
FILE_MODE = 0o600
# Cached for a day whatever their parameters: a site's settings, the report metadata.
SITE_METHOD = "SitesManager.getSiteFromId"  # its answer tells the session the site's time zone
DAILY_METHODS = frozenset({SITE_METHOD, "API.getReportMetadata"})
NEVER_PREFIXES = ("live.",)  # lower case: PHP resolves module names case-insensitively
# requests-cache's defaults plus Matomo's token: out of the key and redacted when stored.
IGNORED_PARAMETERS = (
    "token_auth",
    "Authorization",
    "Proxy-Authorization",
    "X-API-Key",
    "X-Auth-Token",
    "X-API-Token",
    "X-Access-Token",
    "access_token",
    "api_key",
    "apikey",
)
_SIDE_TABLES = (
    "CREATE TABLE IF NOT EXISTS matokit_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # One row per answer requests-cache stores: its expiry (Unix time) and JSON text (NULL for
    # other formats). The lean path and `cache stats` read only this.
    "CREATE TABLE IF NOT EXISTS matokit_answers "
    "(fast_key TEXT PRIMARY KEY, expires REAL, body TEXT)",
    "DROP TABLE IF EXISTS matokit_index",  # an older layout that pointed into requests-cache
)


# --- TTL policy (pure) ----------------------------------------------------------------------


def _moment(now: datetime | float) -> datetime:
    moment = now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_to_midnight(tz: str | None, now: datetime | float) -> float | None:
    """Seconds until the next midnight in the site's zone (DST-aware); None if unknown."""
    zone = site_tzinfo(tz)
    if zone is None:
        return None
    local = _moment(now).astimezone(zone)
    following = datetime.combine(local.date() + timedelta(days=1), clock_time(0), tzinfo=zone)
    return (following.astimezone(UTC) - local.astimezone(UTC)).total_seconds()


def ttl_for(
    period: str,
    date: str,
    *,
    tz: str | None,
    now: datetime | float,
    ttl_today: float = 300.0,
    ttl_past: float = DAY,
) -> float:
    """Seconds to keep a report for `period`/`date` of a site in time zone `tz`.

    A period that includes today (or lies in the future) in the site's zone can still change:
    `ttl_today`. A finished period: `ttl_past`. A relative date (`today`, `yesterday`, `lastN`,
    `previousN`, `A,today`) changes meaning at the site's midnight, so it never outlives it;
    with an unknown zone it is kept at most `ttl_today`. Raises UsageError for a bad period or
    date (see `matokit.dates.validate`).
    """
    spec = validate(period, date)
    today = site_today(tz, now)
    _, last = span(spec, today)
    ttl = ttl_today if last >= today else ttl_past
    relative = spec.kind == "relative" or spec.end_keyword is not None
    relative = relative or spec.date in ("today", "yesterday")
    if relative:
        left = seconds_to_midnight(tz, now)
        ttl = min(ttl, ttl_today if left is None else left)
    return ttl


def request_ttl(
    method: str,
    params: Mapping[str, str],
    *,
    timezones: Mapping[str, str],
    now: datetime | float,
    ttl_today: float = 300.0,
    ttl_past: float = DAY,
) -> float | None:
    """Seconds to cache the answer to one API call, or None when it must not be cached."""
    if method in DAILY_METHODS:
        return DAY
    if never_cached(method):
        return None
    if method == "API.getBulkRequest":
        return _bulk_ttl(params, timezones=timezones, now=now, ttl_today=ttl_today, past=ttl_past)
    if "period" not in params or "date" not in params:
        return None  # not a report (version, users, settings...): always asked afresh
    tz = timezones.get(str(params.get("idSite", "")))
    try:
        return ttl_for(
            params["period"], params["date"], tz=tz, now=now, ttl_today=ttl_today, ttl_past=ttl_past
        )
    except MatokitError:
        # A date form we do not know (e.g. lastWeek via `matokit api`): treat it as live data.
        return min(ttl_today, seconds_to_midnight(tz, now) or ttl_today)


def _bulk_ttl(
    params: Mapping[str, str],
    *,
    timezones: Mapping[str, str],
    now: datetime | float,
    ttl_today: float,
    past: float,
) -> float | None:
    inner = [v for k, v in sorted(params.items()) if k.startswith("urls[")]
    if not inner:
        return None
    ttls = []
    for query in inner:
        fields = dict(parse_qsl(query, keep_blank_values=True))
        method = fields.pop("method", "")
        ttl = request_ttl(
            method, fields, timezones=timezones, now=now, ttl_today=ttl_today, ttl_past=past
        )
        if ttl is None:
            return None  # one live entry makes the whole answer live
        ttls.append(ttl)
    return min(ttls)


def site_timezone(content: bytes) -> str | None:
    """The time zone in a `SitesManager.getSiteFromId` JSON answer, or None."""
    try:
        info = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None
    zone = info.get("timezone") if isinstance(info, dict) else None
    return str(zone) if zone else None


def never_cached(method: str) -> bool:
    """Whether `method`'s answers are never stored, whatever its parameters: `Live.*` (the
    visitor log changes every second), in any letter case."""
    return method.strip().lower().startswith(NEVER_PREFIXES)


def api_request(url: str, body: bytes | str | None) -> tuple[str, str, str, dict[str, str]] | None:
    """(base URL, method, format, form fields) of a Reporting API POST; None for anything else."""
    parts = urlsplit(url)
    if not parts.path.endswith("/index.php"):
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if query.get("module") != "API" or not query.get("method"):
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    fields = dict(parse_qsl(body or "", keep_blank_values=True))
    host = parts.netloc.rsplit("@", 1)[-1]  # never a user:password@ in the index
    base = f"{parts.scheme}://{host}{parts.path[: -len('/index.php')]}"
    return base, query["method"], query.get("format", "XML").upper(), fields


def fast_key(base_url: str, method: str, fmt: str, params: Iterable[tuple[str, str]]) -> str:
    """The index key of a request: URL, method, format and parameters, never the token.

    Canonical JSON rather than a hash: no secret is in it, and the lean path then does not pay
    for importing hashlib (OpenSSL) on every cache hit.
    """
    pairs = sorted((str(k), str(v)) for k, v in params if k not in IGNORED_PARAMETERS)
    parts = urlsplit(base_url.strip())
    host = parts.netloc.rsplit("@", 1)[-1].lower()  # user:password@ is not part of the key
    base = f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"
    return json.dumps([base, method, fmt.upper(), pairs], ensure_ascii=False, separators=(",", ":"))


def is_cacheable_answer(status: int, content: bytes, *, fmt: str, redirected: bool) -> bool:
    """Whether an answer may be stored: a 200 that is not one of Matomo's errors."""
    if status != 200 or redirected or not content:
        return False
    head = content.lstrip()[:64]
    if fmt == "JSON":
        if head[:1] not in (b"{", b"["):
            return False  # a login page or a proxy's HTML under a 200
        if b'"result"' not in content:
            return True  # cheap: no error object can be inside
        try:
            data = json.loads(content.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return False
        entries = data if isinstance(data, list) else [data]
        return not any(isinstance(e, dict) and e.get("result") == "error" for e in entries)
    if head.startswith((b"Error:", b"\xff\xfeE\x00r\x00r\x00o\x00r\x00:")):
        return False
    return not (fmt == "XML" and b"<error message=" in content[:4096])


# --- files ------------------------------------------------------------------------------


def prepare_path(path: Path) -> None:
    """Create the cache directory (0700) and database file (0600) before SQLite opens it."""
    from matokit.private_files import make_private_dir  # here: it imports tempfile (lean path)

    try:
        make_private_dir(path.parent)
        os.chmod(path.parent, DIR_MODE)  # also tighten a directory that already existed
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.close(fd)
        os.chmod(path, FILE_MODE)
    except OSError as exc:
        raise StorageError(
            f"The report cache {path} cannot be used: {exc.strerror or exc}.",
            path=str(path),
            hint="Check the directory's permissions, point cache_dir elsewhere, or use --no-cache.",
        ) from exc


def discard(path: Path) -> None:
    """Delete a cache database with its WAL and shared-memory files (a cache is disposable)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


# --- the session -------------------------------------------------------------------------


def cached_session(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    refresh: bool = False,
) -> CachedSession:
    """The profile's caching requests session, to pass to MatomoClient as its `session`.

    `refresh=True` fetches every report afresh and stores the new answer (site settings are
    still read from the cache). On SQLite a corrupt database is deleted and rebuilt, with a
    warning; on Redis (`redis_url`) the session goes without the cache, with a warning, once
    Redis fails (see `matokit.redisstore.cache`).
    """
    from matokit.redisstore.connection import RedisTarget

    options: dict[str, Any] = {
        "ttl_today": settings.ttl_today,
        "ttl_past": settings.ttl_past,
        "clock": clock,
        "refresh": refresh,
    }
    cls = _session_class()
    target = RedisTarget.from_settings(settings)
    if target is not None:
        from matokit.redisstore.cache import redis_backend

        return cls(redis_backend(target, answer_of=answer_of), **options)
    path = settings.cache_path
    prepare_path(path)
    try:
        return cls(_sqlite_backend(path), path=path, **options)
    except sqlite3.DatabaseError as exc:
        log.warning("report cache %s was unreadable (%s); rebuilt it empty", path, exc)
        discard(path)
        prepare_path(path)
        return cls(_sqlite_backend(path), path=path, **options)


def _sqlite(storage: object) -> Any:
    """requests-cache types its storages as BaseStorage; ours are SQLite ones (SQLiteDict)."""
    return storage


def _sqlite_backend(path: Path) -> Any:
    """requests-cache's SQLite cache at `path`, with MatoKit's own table next to it."""
    return _storage_class()(str(path), serializer="pickle", wal=True, busy_timeout=5000)


@functools.cache
def _storage_class() -> type[Any]:
    """The SQLite storage class, built on first use so importing this module stays cheap."""
    from requests_cache.backends.sqlite import SQLiteCache  # typed here, not in the package root

    class ReportCacheStorage(SQLiteCache):
        """requests-cache's SQLite storage; each answer it stores also gets MatoKit's own row."""

        def save_response(
            self, response: Any, cache_key: str | None = None, expires: datetime | None = None
        ) -> None:
            super().save_response(response, cache_key, expires)
            _remember(self.responses, response, expires)

        def prepare(self) -> None:
            """Create MatoKit's own tables (idempotent)."""
            _create_side_tables(self.responses)

        def bump(self, name: str) -> None:
            """Count a hit or a miss; counters are a convenience, never a failure."""
            try:
                with _sqlite(self.responses).connection(commit=True) as con:
                    _bump(con, name)
            except sqlite3.Error as exc:
                log.debug("cache counters not updated: %s", exc)

    return ReportCacheStorage


@functools.cache
def _session_class() -> type[CachedSession]:
    """The CachedSession subclass, built on first use so importing this module stays cheap."""
    from requests_cache import CachedSession
    from requests_cache.policy import DO_NOT_CACHE

    from matokit.client import mount_connect_retries

    class ReportCacheSession(CachedSession):
        """Caches Reporting API answers with a TTL computed from each request's parameters.

        `backend` is MatoKit's SQLite storage (`path` is its file) or its Redis one: either
        stores MatoKit's copy of each answer with requests-cache's (`save_response`) and
        counts hits and misses (`bump`).
        """

        def __init__(
            self,
            backend: Any,
            *,
            path: Path | None = None,
            ttl_today: float,
            ttl_past: float,
            clock: Callable[[], float],
            refresh: bool = False,
        ) -> None:
            super().__init__(
                backend=backend,
                expire_after=DO_NOT_CACHE,
                allowable_methods=("GET", "POST"),
                allowable_codes=(200,),
                ignored_parameters=IGNORED_PARAMETERS,
                match_headers=False,
                filter_fn=_filter,
                stale_if_error=False,
                cache_control=False,
            )
            self.path = path
            self.ttl_today = ttl_today
            self.ttl_past = ttl_past
            self.clock = clock
            self.refresh = refresh
            self.timezones: dict[str, str] = {}
            # Like MatomoClient's own reporting session: retry connection failures only.
            mount_connect_retries(self)
            self.store.prepare()

        @property
        def store(self) -> Any:
            """The backend as MatoKit's storage (with `prepare` and `bump`)."""
            return self.cache

        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            described = api_request(request.url or "", request.body)
            ttl = None
            if described is not None:
                _, method, _, fields = described
                ttl = request_ttl(
                    method,
                    fields,
                    timezones=self.timezones,
                    now=self.clock(),
                    ttl_today=self.ttl_today,
                    ttl_past=self.ttl_past,
                )
            if ttl is None or ttl < 1:
                kwargs["expire_after"] = DO_NOT_CACHE
                return super().send(request, **kwargs)
            assert described is not None
            kwargs["expire_after"] = ttl
            if self.refresh and described[1] not in DAILY_METHODS:
                kwargs["force_refresh"] = True
            try:
                response = super().send(request, **kwargs)
            except sqlite3.DatabaseError as exc:
                self._rebuild(exc)
                response = super().send(request, **kwargs)
            self._after(described, response)
            return response

        def _after(self, described: tuple[str, str, str, dict[str, str]], response: Any) -> None:
            _, method, fmt, fields = described
            if method == SITE_METHOD and fmt == "JSON" and response.status_code == 200:
                zone = site_timezone(response.content or b"")
                if zone:  # what "today" means for this site's reports from now on
                    self.timezones[str(fields.get("idSite", ""))] = zone
            self.store.bump("hits" if getattr(response, "from_cache", False) else "misses")

        def _rebuild(self, exc: Exception) -> None:
            if self.path is None:
                raise exc
            log.warning("report cache %s is corrupt (%s); rebuilt it empty", self.path, exc)
            self.cache.close()
            discard(self.path)
            prepare_path(self.path)
            _sqlite(self.cache.responses).init_db()
            _sqlite(self.cache.redirects).init_db()
            self.store.prepare()

    return ReportCacheSession


def _filter(response: Any) -> bool:
    """requests-cache filter_fn: store (and reuse) only a clean 200 answer of Matomo."""
    described = api_request(response.url or "", getattr(response.request, "body", None))
    fmt = described[2] if described else "JSON"
    return is_cacheable_answer(
        response.status_code, response.content or b"", fmt=fmt, redirected=bool(response.history)
    )


def _create_side_tables(storage: object) -> None:
    """MatoKit's own tables, in requests-cache's database file (idempotent)."""
    with _sqlite(storage).connection(commit=True) as con:
        for statement in _SIDE_TABLES:
            con.execute(statement)


def answer_of(response: Any) -> tuple[str, str | None] | None:
    """(fast key, JSON text or None for other formats) of an answer requests-cache stores;
    None for a request that is not a Reporting API call."""
    request = response.request
    described = api_request(request.url or "", request.body)
    if described is None:
        return None
    base, method, fmt, fields = described
    body = None
    if fmt == "JSON":
        with contextlib.suppress(UnicodeDecodeError):
            body = (response.content or b"").decode("utf-8-sig")
    return fast_key(base, method, fmt, fields.items()), body


def _remember(storage: object, response: Any, expires: datetime | None) -> None:
    """Write MatoKit's row of an answer requests-cache has just stored (same expiry)."""
    answer = answer_of(response)
    if answer is None:
        return
    key, body = answer
    with _sqlite(storage).connection(commit=True) as con:
        con.execute(
            "INSERT OR REPLACE INTO matokit_answers (fast_key, expires, body) VALUES (?, ?, ?)",
            (key, None if expires is None else expires.timestamp(), body),
        )


def _bump(con: sqlite3.Connection, name: str, by: int = 1) -> None:
    con.execute(
        "INSERT INTO matokit_stats (name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


# --- the lean path: answer a hit without requests -----------------------------------------


def cached_answer(settings: Settings, report: Report, params: Mapping[str, str]) -> Any | None:
    """The fresh cached answer to `report` with `params`, or None; never asks Matomo.

    The one cache lookup of a report: the lean path of `matokit report NAME` and
    `matokit.reportfetch.fetch` both ask here. A report that is never cached gets None.
    """
    if not report.cacheable:
        return None
    if settings.redis_url:
        return lookup_on_redis(
            settings, base_url=settings.require_url(), method=report.method, params=params
        )
    return lookup(
        settings.cache_path,
        base_url=settings.require_url(),
        method=report.method,
        params=params,
    )


def lookup(
    path: Path,
    *,
    base_url: str,
    method: str,
    params: Mapping[str, str],
    fmt: str = "JSON",
    now: float | None = None,
) -> Any | None:
    """The cached, fresh JSON answer to a Reporting API call, or None (then ask normally).

    Uses only the standard library and reads only MatoKit's own table; counts the hit. Any
    doubt (no file, no row, expired, unreadable) is a miss, and the normal path decides.
    """
    if not path.is_file():
        return None
    key = fast_key(base_url, method, fmt, params.items())
    moment = time.time() if now is None else now
    try:
        con = sqlite3.connect(path, timeout=5, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        row = con.execute(
            "SELECT body, expires FROM matokit_answers WHERE fast_key = ?", (key,)
        ).fetchone()
        if row is None or row[0] is None or row[1] is None or row[1] <= moment:
            return None
        data = json.loads(row[0])
        _bump(con, "hits")  # autocommit: one atomic statement
        return data
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        con.close()


def lookup_on_redis(
    settings: Settings,
    *,
    base_url: str,
    method: str,
    params: Mapping[str, str],
    fmt: str = "JSON",
    now: float | None = None,
) -> Any | None:
    """`lookup` on the profile's Redis (`redis_url`): standard library only, counts the hit."""
    from matokit.redisstore.answers import lookup as read

    return read(settings, fast_key(base_url, method, fmt, params.items()), now=now)


# --- stats and clear ---------------------------------------------------------------------


@dataclass(frozen=True)
class CacheStats:
    """What `matokit cache stats` shows.

    `path` is where the cache lives: the SQLite file, or on Redis the server (without its
    password) and the profile's key prefix; `size_bytes` is its size on disk or in memory.
    """

    path: str
    exists: bool
    entries: int = 0
    fresh: int = 0
    expired: int = 0
    size_bytes: int = 0
    hits: int = 0
    misses: int = 0
    backend: str = "sqlite"

    @property
    def hit_rate(self) -> float | None:
        """Hits / (hits + misses), or None before the first lookup."""
        total = self.hits + self.misses
        return round(self.hits / total, 4) if total else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "backend": self.backend,
            "path": self.path,
            "exists": self.exists,
            "entries": self.entries,
            "fresh": self.fresh,
            "expired": self.expired,
            "size_bytes": self.size_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
        }


def location(settings: Settings) -> str:
    """Where the profile's report cache lives, as shown to people (never a password)."""
    from matokit.redisstore.connection import RedisTarget

    target = RedisTarget.from_settings(settings)
    if target is None:
        return str(settings.cache_path)
    from matokit.redisstore.cache import location as redis_location

    return redis_location(target)


def profile_stats(settings: Settings, *, now: float | None = None) -> CacheStats:
    """The stats of the profile's report cache, on SQLite or Redis (never creates it)."""
    from matokit.redisstore.connection import RedisTarget

    target = RedisTarget.from_settings(settings)
    if target is None:
        return stats(settings.cache_path, now=now)
    from matokit.redisstore.cache import location as redis_location
    from matokit.redisstore.cache import stats as redis_stats

    found = redis_stats(target, now=now)
    return CacheStats(
        redis_location(target),
        found.exists,
        entries=found.entries,
        fresh=found.fresh,
        expired=found.entries - found.fresh,
        size_bytes=found.size_bytes,
        hits=found.hits,
        misses=found.misses,
        backend="redis",
    )


def stats(path: Path, *, now: float | None = None) -> CacheStats:
    """Entries, size on disk and hit counters of a profile's SQLite cache (never creates it)."""
    if not path.is_file():
        return CacheStats(str(path), False)
    moment = time.time() if now is None else now
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            entries = fresh = 0
            if "matokit_answers" in tables:
                entries = con.execute("SELECT COUNT(*) FROM matokit_answers").fetchone()[0]
                fresh = con.execute(
                    "SELECT COUNT(*) FROM matokit_answers WHERE expires IS NULL OR expires > ?",
                    (moment,),
                ).fetchone()[0]
            counters: dict[str, int] = {}
            if "matokit_stats" in tables:
                counters = dict(con.execute("SELECT name, value FROM matokit_stats").fetchall())
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"The report cache {path} is unreadable: {exc}.",
            path=str(path),
            hint="Run `matokit cache clear` to delete it (the next report rebuilds it).",
        ) from exc
    return CacheStats(
        str(path),
        True,
        entries=entries,
        fresh=fresh,
        expired=entries - fresh,
        size_bytes=database_size(path),
        hits=int(counters.get("hits", 0)),
        misses=int(counters.get("misses", 0)),
    )


def clear(settings: Settings, *, expired_only: bool = False) -> int:
    """Delete the expired entries, or every entry and the counters; returns how many went.

    On SQLite a corrupt database is simply deleted, and a missing one is left missing; on
    Redis every key under the profile's cache prefix goes (StorageError if Redis fails).
    """
    from matokit.redisstore.connection import RedisTarget

    target = RedisTarget.from_settings(settings)
    if target is not None:
        from matokit.redisstore.cache import clear as redis_clear

        return redis_clear(target, expired_only=expired_only)
    path = settings.cache_path
    if not path.is_file():
        return 0
    try:
        before = stats(path).entries
    except StorageError:
        discard(path)
        return 0
    session = cached_session(settings)
    try:
        if expired_only:
            session.cache.delete(expired=True)
        else:
            session.cache.clear()
        _create_side_tables(session.cache.responses)  # clear() may have recreated the file
        with _sqlite(session.cache.responses).connection(commit=True) as con:
            if expired_only:
                con.execute(
                    "DELETE FROM matokit_answers WHERE expires IS NOT NULL AND expires <= ?",
                    (time.time(),),
                )
            else:
                con.execute("DELETE FROM matokit_answers")
                con.execute("DELETE FROM matokit_stats")
    finally:
        session.close()
    return max(0, before - stats(path).entries)
