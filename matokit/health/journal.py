"""The journal check: can the journal's backend keep an acknowledged hit?

SQLite (the default): the file is a MatoKit journal that opens, and it and its directory are
writable (or the directory can be created); every write is synced (`synchronous=FULL`).
Redis (`redis_url`): the server answers a write under the profile's prefix (down, a wrong
password, TLS, a read-only replica, out of memory: CRITICAL), the shared keys have their types
(another program's key under the prefix: CRITICAL), the server does not evict keys (CRITICAL),
appends every write to its AOF and fsyncs it before answering (WARNING otherwise, or when it
refuses to tell), and has the replicas `redis_min_replicas` asks for (CRITICAL).

Its metric keys (`JOURNAL_METRICS`) are the same for both backends and every outcome.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from matokit.errors import ConfigError, StorageError
from matokit.health.model import CheckResult, MetricValue, Status
from matokit.health.series import metric_keys
from matokit.health.text import line, seconds_text
from matokit.sizes import byte_text, database_size

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.health.runner import HealthRun
    from matokit.redisstore.connection import RedisTarget

JOURNAL_METRICS: Final = metric_keys("journal")
# The shared keys this check can vouch for, and the Redis type each must have when present.
_KEY_TYPES: Final = {"token_memory": "hash", "pause": "hash", "flush_lock": "string"}
_PROBE_TTL_MS: Final = 60_000


def check_journal(run: HealthRun, name: str) -> CheckResult:
    """The journal's backend: usable, durable, not evicting (see the module)."""
    settings = run.need_settings()
    from matokit.redisstore.connection import RedisTarget

    try:
        target = RedisTarget.from_settings(settings)
    except ConfigError as exc:  # the Redis password file
        return _unusable(name, exc.message, exc.hint, info={"backend": "redis"})
    if target is None:
        run.set_stage(name, "opening the journal file")
        return check_sqlite(name, settings)
    run.set_stage(name, f"asking Redis at {target.display}")
    return check_redis(name, target)


# --- SQLite ----------------------------------------------------------------------------------


def check_sqlite(name: str, settings: Settings) -> CheckResult:
    """The journal file: a MatoKit journal that opens read-only, writable, in a writable
    directory; or, without one yet, a directory where it can be created."""
    path = settings.journal_path
    info = {"backend": "sqlite", "location": str(path)}
    if not path.exists():
        return _sqlite_absent(name, path, info)
    started = time.perf_counter()
    try:
        _open_read_only(path)
    except StorageError as exc:
        return _unusable(name, line(exc.message), exc.hint, info=info)
    latency = time.perf_counter() - started
    for where in (path, path.parent):
        if not os.access(where, os.W_OK):
            return _unusable(
                name,
                f"the journal {where} is not writable by this user: hits cannot be queued",
                f"Run MatoKit as the file's owner, or fix the permissions of {where}.",
                info=info,
            )
    return CheckResult(
        name,
        Status.OK,
        f"journal file {path} usable ({byte_text(database_size(path))}; every write synced "
        "to disk)",
        metrics=_metrics(usable=1, durable=1, evicts_keys=0, latency=latency),
        info=info,
    )


def _sqlite_absent(name: str, path: Path, info: dict[str, str]) -> CheckResult:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return _unusable(
            name,
            f"no journal yet, and {ancestor} is not writable: the first queued hit cannot be "
            "journaled",
            "Fix the directory's permissions, or point MATOKIT_DATA_DIR elsewhere.",
            info=info,
        )
    return CheckResult(
        name,
        Status.OK,
        f"no journal yet: the first queued hit creates {path}",
        metrics=_metrics(usable=1, durable=1, evicts_keys=0),
        info=info,
    )


def _open_read_only(path: Path) -> None:
    """Refuse (StorageError) a file that is not a MatoKit journal or does not open."""
    from matokit.journal.schema import check_header, check_schema

    check_header(path)
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=2.0)
        try:
            check_schema(conn, path)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(
            f"the journal {path} cannot be read: {exc}",
            path=str(path),
            hint="Another process may hold it in an odd state; run `matokit queue status`.",
        ) from exc


# --- Redis -----------------------------------------------------------------------------------


def check_redis(name: str, target: RedisTarget) -> CheckResult:
    """The profile's Redis: a write answered, key types, eviction, AOF, replicas."""
    from matokit.redisstore.durability import read_durability

    info: dict[str, str] = {"backend": "redis", "location": target.display}
    try:
        latency, replicas = _probe(target)
        wrong = _wrong_types(target)
        durability = read_durability(target)
    except StorageError as exc:
        return _unusable(name, line(exc.message), exc.hint, info=info)
    for key, found in (
        ("appendonly", durability.appendonly),
        ("appendfsync", durability.appendfsync),
        ("maxmemory_policy", durability.maxmemory_policy),
    ):
        if found is not None:
            info[key] = found
    metrics = _metrics(
        usable=0 if wrong else 1,
        durable=_flag(durability.fsync_always),
        evicts_keys=_flag(durability.evicts),
        replicas=replicas,
        latency=latency,
    )
    critical: list[tuple[str, str]] = [
        (
            f"{key} under the profile's prefix is a {kind}, not a {_KEY_TYPES[part]}: another "
            "program uses MatoKit's keys",
            "Set a distinct redis_prefix for MatoKit (or remove that program's keys).",
        )
        for part, key, kind in wrong
    ]
    warning: list[tuple[str, str]] = []
    for problem in durability.problems():
        (critical if problem.critical else warning).append((problem.text, problem.hint))
    if target.min_replicas > replicas:
        critical.append(
            (
                f"redis_min_replicas is {target.min_replicas} but the server has {replicas} "
                "connected replica(s): acknowledging hits fails",
                "Start or reconnect the replicas, or lower redis_min_replicas.",
            )
        )
    if critical or warning:
        status = Status.CRITICAL if critical else Status.WARNING
        texts = [text for text, _ in critical + warning]
        return CheckResult(
            name,
            status,
            line(f"journal on Redis at {target.display}: {'; '.join(texts)}"),
            metrics=metrics,
            hint=(critical + warning)[0][1],
            info=info,
        )
    return CheckResult(
        name,
        Status.OK,
        f"journal on Redis at {target.display}: AOF with appendfsync always, maxmemory-policy "
        f"{durability.maxmemory_policy}, {replicas} replica(s); answered in "
        f"{seconds_text(latency)}",
        metrics=metrics,
        info=info,
    )


def _probe(target: RedisTarget) -> tuple[float, int]:
    """Write and read back a short-lived key under the prefix (a replica, a full server or a
    missing ACL fails here); the number of connected replicas."""
    from matokit.redisstore.connection import redis_errors

    key = target.keys.key("health", "probe")
    with redis_errors(target, "write a probe key"):
        client = target.client()
        started = time.perf_counter()
        client.set(key, repr(time.time()), px=_PROBE_TTL_MS)
        client.get(key)
        latency = time.perf_counter() - started
        replication: Any = client.info("replication")
    replicas = replication.get("connected_slaves", 0) if isinstance(replication, dict) else 0
    return latency, int(replicas)


def _wrong_types(target: RedisTarget) -> list[tuple[str, str, str]]:
    """(part, key, type) of shared keys holding another kind of value than MatoKit's."""
    from matokit.redisstore.connection import redis_errors

    keys = target.keys
    names = {part: getattr(keys, part) for part in _KEY_TYPES}
    with redis_errors(target, "read the shared keys' types"):
        pipe = target.client().pipeline(transaction=False)
        for key in names.values():
            pipe.type(key)
        found = pipe.execute()
    wrong = []
    for (part, key), kind in zip(names.items(), found, strict=True):
        text = kind.decode() if isinstance(kind, bytes) else str(kind)
        if text not in ("none", _KEY_TYPES[part]):
            wrong.append((part, key, text))
    return wrong


# --- shared ----------------------------------------------------------------------------------


def _unusable(name: str, message: str, hint: str | None, *, info: dict[str, str]) -> CheckResult:
    return CheckResult(
        name,
        Status.CRITICAL,
        message,
        metrics=_metrics(usable=0),
        hint=hint,
        info=info,
    )


def _metrics(
    *,
    usable: int,
    durable: MetricValue = None,
    evicts_keys: MetricValue = None,
    replicas: MetricValue = None,
    latency: float | None = None,
) -> dict[str, MetricValue]:
    return {
        "usable": usable,
        "durable": durable,
        "evicts_keys": evicts_keys,
        "replicas": replicas,
        "latency_seconds": round(latency, 4) if latency is not None else None,
    }


def _flag(value: bool | None) -> MetricValue:
    return None if value is None else int(value)
