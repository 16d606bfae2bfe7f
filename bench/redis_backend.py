"""The journal on Redis against the journal in SQLite, client side, in the same run.

Each figure is Redis (value) against SQLite (baseline), measured alternately:
- import: `Delivery.import_lines` (what `track import --queue` runs: parse, validate, journal;
  a file over 4 MiB, so the helper process journals its second half) of 100,000 event lines;
- enqueue: `journal.enqueue` of 100,000 hits already parsed, in chunks of 10,000 (the import's);
- flush: `Delivery.flush` in bulks of 100 of 30,000 journaled hits (10,000 with --quick) of 400
  visitors (`cid`), one bulk at a time and with `queue flush`'s default `--concurrency auto`
  (lanes send the hits of different visitors at once; the hits of one visitor, one visit in
  Matomo, are never sent in parallel: a backlog of one visitor flushes one bulk at a time),
  against a local server that answers like Matomo and does nothing else, so Matomo's own work
  is left out: claims, acks, building and reading the bulk requests.

Rates are per second of wall time, and per second of the MatoKit processes' CPU time ("client
CPU": the Redis server's work left out, as when it runs on a host of its own; SQLite's work is
in-process, so it stays in). Here the Redis server shares the machine's cores with the client
and the Matomo stand-in.

The Redis server is started here, in a temporary directory, configured as the durable journal
needs it: `appendonly yes`, `appendfsync always` (every acknowledged write is on disk first).
Process start-up is not counted (bench/enqueue.py and bench/flush.py measure whole commands).

    python bench/redis_backend.py [--quick]
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bulkserver import TOKEN, bulk_server
from _util import figure, write_lines

ENQUEUE_TARGET = 20_000.0  # lines/s on Redis (import and enqueue)
FLUSH_TARGET = 10_000.0  # hits/s on Redis
ENQUEUE_LINES = 100_000
VISITORS = 400  # in the flushed backlog


@contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """A durable redis-server (AOF, fsync on every write) of this run's own; its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    directory = root / "redis"
    directory.mkdir()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def _delivery(root: Path, url: str, redis_url: str | None) -> Any:
    from matokit.delivery import Delivery
    from matokit.redisstore.connection import RedisTarget

    target = (
        None
        if redis_url is None
        else RedisTarget(url=redis_url, namespace=f"bench:{{{root.name}}}")
    )

    def client() -> Any:
        from matokit.client import MatomoClient

        return MatomoClient(base_url=url, token=TOKEN, timeout=30.0)

    return Delivery(
        journal_path=root / "journal.sqlite", client_factory=client, has_token=True, redis=target
    )


class Timer:
    """Wall time and the CPU time of this process and its finished children."""

    def __enter__(self) -> Timer:
        self.wall = time.perf_counter()
        self.cpu = _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = _cpu() - self.cpu


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


Rates = tuple[float, float]  # per second of wall time, per second of client CPU time


def import_rates(root: Path, redis_url: str | None, lines: Path) -> Rates:
    """Lines per second of one import into a fresh journal (nothing sent)."""
    with _delivery(root, "http://127.0.0.1:9/", redis_url) as delivery:
        delivery.journal.stats()  # open it (and create the file) outside the timing
        with open(lines, "rb") as source, Timer() as timer:
            result = delivery.import_lines(source, site_id=1)
    if result.added != ENQUEUE_LINES:
        raise RuntimeError(f"imported {result.added} of {ENQUEUE_LINES} lines")
    return ENQUEUE_LINES / timer.wall, ENQUEUE_LINES / timer.cpu


def _hits(tag: str, count: int) -> list[Any]:
    from matokit.journal import NewHit

    now = time.time()
    return [
        NewHit(
            key=f"{tag}-{i}",
            params={
                "idsite": "1",
                "rec": "1",
                "e_c": "bench",
                "e_a": f"action-{i % 50}",
                "e_n": f"name-{i % 997}",
                "cdt": str(int(now) - 60 - i % 80_000),
                "_id": f"{i % 65_536:016x}",
                "cid": f"{i % VISITORS:016x}",
            },
            created_at=now - 60 - i % 80_000,
        )
        for i in range(count)
    ]


def enqueue_rates(root: Path, redis_url: str | None) -> Rates:
    """Hits per second journaled by `enqueue` in chunks of 10,000 (already parsed)."""
    new = _hits(root.name, ENQUEUE_LINES)
    with _delivery(root, "http://127.0.0.1:9/", redis_url) as delivery:
        delivery.journal.stats()
        with Timer() as timer:
            added = delivery.journal.enqueue(new, chunk_size=10_000).added
    if added != ENQUEUE_LINES:
        raise RuntimeError(f"journaled {added} of {ENQUEUE_LINES} hits")
    return ENQUEUE_LINES / timer.wall, ENQUEUE_LINES / timer.cpu


def flush_rates(
    root: Path, url: str, redis_url: str | None, hits: int, concurrency: int | None = 1
) -> Rates:
    """Hits per second of one flush in bulks of 100 of `hits` journaled hits, one bulk at a
    time (`concurrency` 1) or with `queue flush`'s default lanes (None: auto)."""
    from matokit.delivery import FlushOptions

    new = _hits(root.name, hits)
    with _delivery(root, url, redis_url) as delivery:
        delivery.journal.enqueue(new, chunk_size=10_000)
        delivery.client()
        with Timer() as timer:
            result = delivery.flush(FlushOptions(batch_size=100, concurrency=concurrency))
    if result.delivered != hits:
        raise RuntimeError(f"delivered {result.delivered} of {hits}: {result}")
    return hits / timer.wall, hits / timer.cpu


def fresh_server(redis_url: str) -> None:
    """Empty the server and rewrite its append-only file, and wait for the rewrite: each Redis
    run starts as each SQLite run does, from nothing, and no rewrite of the previous runs' AOF
    (a forked child, CPU-bound) runs during a measurement."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushall()
        client.bgrewriteaof()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                break
            time.sleep(0.05)
    finally:
        client.close()


def _alternate(runs: int, measure: Callable[[str | None], Rates], redis_url: str) -> list[float]:
    """Medians (Redis wall, SQLite wall, Redis CPU, SQLite CPU), measured alternately so that
    drift hits both alike."""
    on_redis: list[Rates] = []
    on_sqlite: list[Rates] = []
    for _ in range(runs):
        fresh_server(redis_url)
        on_redis.append(measure(redis_url))
        on_sqlite.append(measure(None))
    return [
        statistics.median(rates[i] for rates in series)
        for i in (0, 1)
        for series in (on_redis, on_sqlite)
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 3 if quick else 5
    flush_hits = 10_000 if quick else 30_000
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp, bulk_server() as url:
        root = Path(tmp)
        with redis_server(root) as redis_url:
            lines = root / "lines.jsonl"
            counter = iter(range(1_000_000))

            def fresh() -> Path:
                folder = root / f"r{next(counter)}"
                folder.mkdir()
                return folder

            def importing(target: str | None) -> Rates:
                folder = fresh()
                write_lines(lines, ENQUEUE_LINES, folder.name)
                return import_rates(folder, target, lines)

            figures = {
                "import": _alternate(runs, importing, redis_url),
                "enqueue": _alternate(runs, lambda t: enqueue_rates(fresh(), t), redis_url),
                "flush": _alternate(
                    runs, lambda t: flush_rates(fresh(), url, t, flush_hits), redis_url
                ),
                "flush_auto": _alternate(
                    runs, lambda t: flush_rates(fresh(), url, t, flush_hits, None), redis_url
                ),
            }
    names = {
        "import": (f"import on Redis (parse + journal), {ENQUEUE_LINES:,} lines", "lines/s"),
        "enqueue": (f"enqueue on Redis, {ENQUEUE_LINES:,} parsed hits", "lines/s"),
        "flush": (
            f"flush on Redis, {flush_hits:,} hits of {VISITORS} visitors in bulks of 100, "
            "one at a time",
            "hits/s",
        ),
        "flush_auto": (
            f"flush on Redis, {flush_hits:,} hits of {VISITORS} visitors in bulks of 100, "
            "--concurrency auto",
            "hits/s",
        ),
    }
    targets = {
        "import": ENQUEUE_TARGET,
        "enqueue": ENQUEUE_TARGET,
        "flush": FLUSH_TARGET,
        "flush_auto": FLUSH_TARGET,
    }
    rows = []
    for what, (redis_wall, sqlite_wall, redis_cpu, sqlite_cpu) in figures.items():
        name, unit = names[what]
        target = targets[what]
        for label, value, baseline in (
            ("wall", redis_wall, sqlite_wall),
            ("client CPU", redis_cpu, sqlite_cpu),
        ):
            rows.append(
                figure(
                    f"{name} ({label})",
                    value,
                    unit,
                    f"the same on SQLite ({label})",
                    baseline,
                    target=f">= {target:,.0f} {unit}",
                    met=value >= target,
                )
            )
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(
            f"{row['name']}: {row['value']:,.0f} {row['unit']} "
            f"(baseline {row['baseline']:,.0f}, {row['ratio']:.2f}x; target {row['target']})"
        )
    os._exit(0)
