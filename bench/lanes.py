"""Lanes: `matokit queue flush --concurrency N` against a raw bulk loop with N connections.

The test server runs in its own process with 4 PHP workers and a cost per tracked hit (the
shape of the reference Matomo: its CPU, not the client, is the limit on one connection). For
N = 1, 2, 4, 8 the figure is hits/s of one flush (its own duration) over 4,000 hits of
400 visitors, in bulks of 100; the baseline is a raw loop of N threads, each with its own
keep-alive connection, posting the same bulks (split by visitor, as Matomo's importer does).
One more figure: 4,000 hits of one visitor (one lane whatever N: no faster, never a deadlock).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _util import MATOKIT, REPO, figure, isolated_env, standalone_server

from tests.fakematomo import SUPERUSER_TOKEN

HITS = 4000
VISITORS = 400
BATCH = 100
HIT_COST = "0.002"  # ~200 ms per bulk of 100: the reference Matomo did 430 hits/s on one connection
SERVER_ARGS = ["--workers", "4", "--hit-cost", HIT_COST]


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd, env=env, cwd=REPO, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def _records(tag: str, visitors: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "event",
            "category": "bench",
            "action": f"{tag}-{i}",
            "id": f"{tag}-{i}",
            "visitor_id": f"{i % visitors:016x}",
        }
        for i in range(HITS)
    ]


def flush_rate(root: Path, url: str, tag: str, lanes: int, visitors: int) -> float:
    """Hits per second of one `queue flush --concurrency lanes` over a fresh journal, timed by
    the flush itself (its record's `duration`: claims, sends and acks, not the interpreter's
    start-up, which the raw loop does not pay either)."""
    env = isolated_env(
        root / tag, {"MATOMO_URL": url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN}
    )
    lines = "".join(json.dumps(r) + "\n" for r in _records(tag, visitors))
    _run([str(MATOKIT), "track", "import", "-", "--queue"], env, stdin=lines)
    out = _run(
        [
            str(MATOKIT), "queue", "flush", "--batch-size", str(BATCH),
            "--concurrency", str(lanes), "--format", "json",
        ],
        env,
    )  # fmt: skip
    record = json.loads(out)
    if record["delivered"] != HITS:
        raise RuntimeError(f"the flush delivered {record['delivered']} of {HITS}")
    return HITS / float(record["duration"])


def raw_rate(url: str, tag: str, lanes: int, visitors: int) -> float:
    """Hits per second of N threads posting bulks on N keep-alive connections."""
    import requests

    items = [
        "?" + urlencode({"idsite": 1, "rec": 1, "e_c": "bench", "e_a": f"{tag}-{i}",
                         "cid": f"{i % visitors:016x}"})
        for i in range(HITS)
    ]  # fmt: skip
    shares: list[list[str]] = [[] for _ in range(lanes)]
    for i, item in enumerate(items):
        shares[(i % visitors) % lanes].append(item)
    tracker = url.rstrip("/") + "/matomo.php"

    def send(share: list[str]) -> None:
        with requests.Session() as session:
            for start in range(0, len(share), BATCH):
                body = {"requests": share[start : start + BATCH], "token_auth": SUPERUSER_TOKEN}
                session.post(tracker, json=body, timeout=60).raise_for_status()

    threads = [threading.Thread(target=send, args=(s,)) for s in shares if s]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return HITS / (time.perf_counter() - started)


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 1 if quick else 3
    figures: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp,
        standalone_server(extra_args=SERVER_ARGS) as url,
    ):
        root = Path(tmp)
        for lanes in (1, 2, 4, 8):
            ours = [flush_rate(root, url, f"m{lanes}-{r}", lanes, VISITORS) for r in range(runs)]
            raw = [raw_rate(url, f"r{lanes}-{r}", lanes, VISITORS) for r in range(runs)]
            figures.append(
                figure(
                    f"queue flush --concurrency {lanes}, {HITS:,} hits of {VISITORS} visitors",
                    statistics.median(ours),
                    "hits/s",
                    f"raw bulk loop, {lanes} connection(s)",
                    statistics.median(raw),
                    target=">= 0.9x the raw loop",
                    met=statistics.median(ours) >= 0.9 * statistics.median(raw),
                )
            )
        one = [flush_rate(root, url, f"one-{r}", 4, 1) for r in range(runs)]
        single = figures[0]["value"]
        figures.append(
            figure(
                f"queue flush --concurrency 4, {HITS:,} hits of one visitor",
                statistics.median(one),
                "hits/s",
                "--concurrency 1, 400 visitors",
                single,
            )
        )
    return figures
