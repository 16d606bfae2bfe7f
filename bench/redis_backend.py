"""The journal on Redis against the journal in SQLite, client side, in the same run.

Two figures, each Redis (value) against SQLite (baseline):
- enqueue: `Delivery.import_lines` (what `track import --queue` runs: parse, validate, journal;
  a file over 4 MiB, so the helper process journals its second half) of 100,000 event lines;
- flush: `Delivery.flush` in bulks of 100 of 30,000 journaled hits (10,000 with --quick)
  against a local server that answers like Matomo and does nothing else, so the figure is
  MatoKit's side: claims, acks, building and reading the bulk requests.

The Redis server is started here, in a temporary directory, configured as the durable journal
needs it: `appendonly yes`, `appendfsync always` (every acknowledged write is on disk first).
Process start-up is not counted (bench/enqueue.py and bench/flush.py measure whole commands).

    python bench/redis_backend.py [--quick]
"""

from __future__ import annotations

import json
import os
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import figure

ENQUEUE_TARGET = 20_000.0  # lines/s on Redis
FLUSH_TARGET = 10_000.0  # hits/s on Redis
ENQUEUE_LINES = 100_000
TOKEN = "5e" * 16  # sentinel, never a real token


class _BulkCounter(BaseHTTPRequestHandler):
    """Answers a bulk POST like Matomo does when every item is valid."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        count = len(json.loads(body).get("requests", []))
        answer = json.dumps({"status": "success", "tracked": count, "invalid": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BulkCounter)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def bulk_server() -> Iterator[str]:
    """A Matomo stand-in in its own process (off this process's core time); its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


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


def write_lines(path: Path, count: int, tag: str) -> None:
    """Realistic event lines (as bench/enqueue.py writes them), with ids unique to `tag`."""
    now = int(time.time())
    with open(path, "w") as out:
        for i in range(count):
            record = {
                "type": "event",
                "category": "bench",
                "action": f"action-{i % 50}",
                "name": f"name-{i % 997}",
                "value": i % 1000,
                "id": f"{tag}-{i}",
                "at": now - 60 - i % 80_000,
                "visitor_id": f"{i % 65_536:016x}",
            }
            out.write(json.dumps(record) + "\n")


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


def enqueue_rate(root: Path, redis_url: str | None, lines: Path) -> float:
    """Lines per second of one import into a fresh journal (nothing sent)."""
    with _delivery(root, "http://127.0.0.1:9/", redis_url) as delivery:
        delivery.journal.stats()  # open it (and create the file) outside the timing
        with open(lines, "rb") as source:
            started = time.perf_counter()
            result = delivery.import_lines(source, site_id=1)
            elapsed = time.perf_counter() - started
    if result.added != ENQUEUE_LINES:
        raise RuntimeError(f"imported {result.added} of {ENQUEUE_LINES} lines")
    return ENQUEUE_LINES / elapsed


def flush_rate(root: Path, url: str, redis_url: str | None, hits: int) -> float:
    """Hits per second of one flush in bulks of 100 of `hits` journaled hits."""
    from matokit.delivery import FlushOptions
    from matokit.journal import NewHit

    now = time.time()
    new = [
        NewHit(
            key=f"{root.name}-{i}",
            params={
                "idsite": "1",
                "rec": "1",
                "e_c": "bench",
                "e_a": f"action-{i % 50}",
                "cdt": str(int(now) - 60),
                "_id": f"{i % 65_536:016x}",
            },
            created_at=now - 60,
        )
        for i in range(hits)
    ]
    with _delivery(root, url, redis_url) as delivery:
        delivery.journal.enqueue(new, chunk_size=10_000)
        delivery.client()
        started = time.perf_counter()
        result = delivery.flush(FlushOptions(batch_size=100))
        elapsed = time.perf_counter() - started
    if result.delivered != hits:
        raise RuntimeError(f"delivered {result.delivered} of {hits}: {result}")
    return hits / elapsed


def _alternate(
    runs: int, measure: Callable[[str | None, int], float], redis_url: str
) -> tuple[float, float]:
    """Median of Redis and of SQLite, measured alternately so drift hits both alike."""
    on_redis, on_sqlite = [], []
    for i in range(runs):
        on_redis.append(measure(redis_url, i))
        on_sqlite.append(measure(None, i))
    return statistics.median(on_redis), statistics.median(on_sqlite)


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 3 if quick else 5
    flush_hits = 10_000 if quick else 30_000
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp, bulk_server() as url:
        root = Path(tmp)
        with redis_server(root) as redis_url:
            lines = root / "lines.jsonl"
            counter = iter(range(1_000_000))

            def enqueue(target: str | None, i: int) -> float:
                tag = f"e{next(counter)}"
                write_lines(lines, ENQUEUE_LINES, tag)
                (root / tag).mkdir()
                return enqueue_rate(root / tag, target, lines)

            def flush(target: str | None, i: int) -> float:
                tag = f"f{next(counter)}"
                (root / tag).mkdir()
                return flush_rate(root / tag, url, target, flush_hits)

            enqueue_redis, enqueue_sqlite = _alternate(runs, enqueue, redis_url)
            flush_redis, flush_sqlite = _alternate(runs, flush, redis_url)
    return [
        figure(
            f"import (journal only) on Redis, {ENQUEUE_LINES:,} lines",
            enqueue_redis,
            "lines/s",
            "the same on SQLite",
            enqueue_sqlite,
            target=f">= {ENQUEUE_TARGET:,.0f} lines/s",
            met=enqueue_redis >= ENQUEUE_TARGET,
        ),
        figure(
            f"flush on Redis, {flush_hits:,} hits in bulks of 100, client side",
            flush_redis,
            "hits/s",
            "the same on SQLite",
            flush_sqlite,
            target=f">= {FLUSH_TARGET:,.0f} hits/s",
            met=flush_redis >= FLUSH_TARGET,
        ),
    ]


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
    else:
        for row in run("--quick" in sys.argv):
            print(
                f"{row['name']}: {row['value']:,.0f} {row['unit']} "
                f"(baseline {row['baseline']:,.0f}, {row['ratio']:.2f}x; target {row['target']})"
            )
        os._exit(0)
