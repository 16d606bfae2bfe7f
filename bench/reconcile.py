"""Exactly-once: the cost of looking up 1,000 uncertain hits against re-sending them.

Against the fake Matomo (its own process, site 1 with a `matokit_key` dimension), 1,000 hits are
journaled, sent with their keys in bulks of 100, and then marked as sent without an answer
(what a timeout or a kill after Matomo stored them leaves): `matokit queue reconcile` looks them
up (1,000 keys, 100 per API.getBulkRequest) and confirms them. The baseline is what
at-least-once does instead: `matokit queue flush` re-sending 1,000 hits. A second figure covers
hits Matomo does not have: the lookups and then the re-send, against the re-send alone.
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

HITS = 1000
DIMENSION = 1  # the first dimension configured on site 1


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        cmd, env=env, cwd=REPO, input=stdin, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
    return elapsed, done.stdout


def _lines(tag: str) -> str:
    return "".join(
        json.dumps({"type": "event", "category": "bench", "action": "eo", "id": f"{tag}-{i}"})
        + "\n"
        for i in range(HITS)
    )


def _uncertain(env: dict[str, str], url: str, *, stored: bool) -> None:
    """Claim every journaled hit with its key, send it (when `stored`), and leave it awaiting
    a lookup with no settle time: the journal a lost answer leaves."""
    from matokit.client import MatomoClient
    from matokit.delivery.records import entry_hit
    from matokit.journal import Journal

    path = Path(env["MATOKIT_DATA_DIR"]) / "default" / "journal.sqlite"
    with Journal(path) as journal, MatomoClient(base_url=url, token=SUPERUSER_TOKEN) as client:
        journal.remember_dimension(1, DIMENSION)
        claimed = journal.claim("bench", limit=HITS, lease_seconds=600, stamp=True)
        assert len(claimed) == HITS and all(e.dimension == DIMENSION for e in claimed)
        if stored:
            for start in range(0, HITS, 100):
                answer = client.track([entry_hit(e) for e in claimed[start : start + 100]])
                assert answer.tracked == len(answer.outcomes)
        journal.await_lookup([e.id for e in claimed], error="bench: answer lost", settle=0.0)


def _case(root: Path, url: str, tag: str, *, stored: bool) -> tuple[float, int, float]:
    """(seconds of `queue reconcile`, its requests, seconds of the flush that follows)."""
    env = isolated_env(
        root / tag,
        {
            "MATOMO_URL": url,
            "MATOMO_SITE_ID": "1",
            "MATOMO_TOKEN": SUPERUSER_TOKEN,
            "MATOKIT_SETTLE_TIME": "0s",
        },
    )
    _run([str(MATOKIT), "track", "import", "-", "--queue"], env, stdin=_lines(tag))
    _uncertain(env, url, stored=stored)
    seconds, out = _run([str(MATOKIT), "queue", "reconcile", "--format", "json"], env)
    record = json.loads(out)
    wanted = (HITS, 0) if stored else (0, HITS)
    if (record["confirmed"], record["missing"]) != wanted:
        raise RuntimeError(f"reconcile found {record['confirmed']}/{record['missing']}")
    flush_seconds, _ = _run([str(MATOKIT), "queue", "flush"], env)
    return seconds, int(record["requests"]), flush_seconds


def _resend(root: Path, url: str, tag: str) -> float:
    """Seconds of `queue flush` sending 1,000 hits in bulks of 100 (the at-least-once re-send)."""
    env = isolated_env(
        root / tag,
        {"MATOMO_URL": url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN},
    )
    _run([str(MATOKIT), "track", "import", "-", "--queue"], env, stdin=_lines(tag))
    seconds, _ = _run([str(MATOKIT), "queue", "flush"], env)
    return seconds


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 3 if quick else 5
    found: list[float] = []
    missing: list[float] = []
    resend: list[float] = []
    requests = 0
    with (
        tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp,
        standalone_server(extra_args=["--custom-dimension", "1:matokit_key:action"]) as url,
    ):
        root = Path(tmp)
        for i in range(runs):
            seconds, requests, _ = _case(root, url, f"found{i}", stored=True)
            found.append(seconds)
            lookup, _, send = _case(root, url, f"missing{i}", stored=False)
            missing.append(lookup + send)
            resend.append(_resend(root, url, f"resend{i}"))
    baseline = statistics.median(resend)
    return [
        figure(
            f"queue reconcile, {HITS:,} uncertain hits Matomo has ({requests} requests)",
            statistics.median(found),
            "s",
            f"re-sending them (queue flush, {HITS // 100} requests)",
            baseline,
        ),
        figure(
            f"queue reconcile + flush, {HITS:,} uncertain hits Matomo lacks",
            statistics.median(missing),
            "s",
            "re-sending them without a lookup",
            baseline,
        ),
    ]
