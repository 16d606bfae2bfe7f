"""Flushing the journal: `matokit queue flush` against the fake Matomo (no added latency).

The figure is hits delivered per second by one flush process (start-up included) in bulks of
100; the baseline is the same flush sending one request per hit (`--batch-size 1`). The hits
are journaled first (`track import --queue`), outside the timing; the server runs in its own
process so it does not share the flusher's core time accounting.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import MATOKIT, REPO, figure, isolated_env, standalone_server

from tests.fakematomo import SUPERUSER_TOKEN

TARGET = 10_000.0


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        cmd, env=env, cwd=REPO, input=stdin, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
    return elapsed


def _lines(count: int, tag: str) -> str:
    return "".join(
        json.dumps({"type": "event", "category": "bench", "action": "flush", "id": f"{tag}-{i}"})
        + "\n"
        for i in range(count)
    )


def flush_rate(root: Path, url: str, hits: int, batch: int, tag: str) -> float:
    """Hits per second of one `queue flush` over a fresh journal of `hits` hits."""
    env = isolated_env(
        root / tag,
        {"MATOMO_URL": url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN},
    )
    _run([str(MATOKIT), "track", "import", "-", "--queue"], env, stdin=_lines(hits, tag))
    elapsed = _run([str(MATOKIT), "queue", "flush", "--batch-size", str(batch)], env)
    return hits / elapsed


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 3 if quick else 5
    bulk_hits = 10_000 if quick else 30_000
    single_hits = 500 if quick else 1_500
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp, standalone_server() as url:
        root = Path(tmp)
        bulk = [flush_rate(root, url, bulk_hits, 100, f"bulk{i}") for i in range(runs)]
        single = [flush_rate(root, url, single_hits, 1, f"single{i}") for i in range(runs)]
    rate, baseline = statistics.median(bulk), statistics.median(single)
    return [
        figure(
            f"queue flush, {bulk_hits:,} hits in bulks of 100",
            rate,
            "hits/s",
            "one request per hit (--batch-size 1)",
            baseline,
            target=f">= {TARGET:,.0f} hits/s",
            met=rate >= TARGET,
        )
    ]
