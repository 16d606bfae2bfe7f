"""`track access-log`: parse-and-filter rate, enqueue rate and a cron re-run, each against a
plain read of the same file in the same run.

A generated `combined` log (300,000 lines; 100,000 with --quick) shaped like a real one: many
clients and user agents, about 30 requests a second, static files, bots, errors and redirects
(nearly half of the lines become hits). Figures:

- parse and filter (in this process, `--dry-run`'s path: read, split, parse, filter, time):
  lines/s against a pure Python read of the file (`for line in f`), target >= 100,000 lines/s;
- enqueue (`matokit track access-log FILE --queue` as a whole process: also keys, parameters,
  the access-log state and the journal's fsync'd commits): lines/s against the same read;
- a cron re-run over the unchanged file (the checkpoint skips it): seconds against the read.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import MATOKIT, REPO, figure, isolated_env

TARGET_RATE = 100_000.0
READER = "import sys\nn = 0\nwith open(sys.argv[1], 'rb') as f:\n    for _ in f:\n        n += 1\n"


def write_log(path: Path, count: int) -> None:
    """A combined log: 2,000 agents (a tenth of them bots), 5,000 clients, 30 lines a second."""
    rng = random.Random(20261126)
    browsers = [
        f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{100 + i % 30}.0.{i}.0 Safari/537.36"
        for i in range(1800)
    ]
    bots = [f"Mozilla/5.0 (compatible; ExampleBot/{i}.0; +https://bot.ex/)" for i in range(200)]
    agents = browsers + bots
    pages = [f"/blog/{i}/a-post-title-of-some-length" for i in range(3000)]
    statics = ["/css/site.css", "/js/app.js", "/img/logo.png", "/favicon.ico", "/fonts/a.woff2"]
    start = int(time.time()) - 3600
    with open(path, "w") as out:
        for i in range(count):
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0100", time.gmtime(start + i // 30))
            roll = rng.random()
            path_ = rng.choice(statics) if roll < 0.4 else rng.choice(pages)
            if roll > 0.97:
                path_ += f"?utm_source=newsletter&id={i}"
            status = rng.choice((200,) * 16 + (304, 301, 404, 500))
            client = f"10.{rng.randrange(20)}.{rng.randrange(250)}.{rng.randrange(1, 20)}"
            out.write(
                f'{client} - - [{stamp}] "GET {path_} HTTP/1.1" {status} {rng.randrange(50_000)} '
                f'"https://www.example.com/" "{rng.choice(agents)}"\n'
            )


def parse_and_filter(path: Path) -> tuple[float, int]:
    """Seconds and lines of a dry run over `path` in this process."""
    from matokit.accesslog import AccessLogImport, AccessLogOptions

    def no_client() -> Any:
        raise AssertionError("a dry run with --site asks Matomo nothing")

    options = AccessLogOptions(site=1, dry_run=True)
    started = time.perf_counter()
    with AccessLogImport(options, delivery=None, client=no_client, data_dir=path.parent) as run:
        run.run([str(path)])
    elapsed = time.perf_counter() - started
    return elapsed, run.summary.total("lines")


def wall(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}")
    return elapsed


def read_time(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as f:
        for _ in f:
            pass
    return time.perf_counter() - started


def run(quick: bool) -> list[dict[str, Any]]:
    lines = 100_000 if quick else 300_000
    runs = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp:
        root = Path(tmp)
        log = root / "access.log"
        write_log(log, lines)
        read_time(log)  # warm the page cache
        parses, reads = [], []
        for _ in range(runs):
            parses.append(parse_and_filter(log)[0])
            reads.append(read_time(log))
        base_env = isolated_env(root, {"MATOMO_SITE_ID": "1"})
        cmd = [
            str(MATOKIT), "-q", "track", "access-log", str(log), "--queue",
            "--site-url", "https://www.example.com",
        ]  # fmt: skip
        reader = [sys.executable, "-c", READER, str(log)]
        enqueues, reruns, process_reads = [], [], []
        for i in range(max(1, runs - 2)):
            env = {**base_env, "MATOKIT_DATA_DIR": str(root / f"data-{i}")}
            enqueues.append(wall(cmd, env))
            reruns.append(wall(cmd, env))
            process_reads.append(wall(reader, base_env))
    read_rate = lines / statistics.median(reads)
    parse_rate = lines / statistics.median(parses)
    enqueue_rate = lines / statistics.median(enqueues)
    process_read = statistics.median(process_reads)
    return [
        figure(
            f"access-log parse+filter, combined, {lines:,} lines",
            parse_rate,
            "lines/s",
            "pure Python read of the file",
            read_rate,
            target=f">= {TARGET_RATE:,.0f} lines/s",
            met=parse_rate >= TARGET_RATE,
        ),
        figure(
            f"track access-log --queue (whole process), {lines:,} lines",
            enqueue_rate,
            "lines/s",
            "pure Python read of the file (whole process)",
            lines / process_read,
        ),
        figure(
            "track access-log re-run over the unchanged file (whole process)",
            statistics.median(reruns),
            "s",
            "pure Python read of the file (whole process)",
            process_read,
        ),
    ]
