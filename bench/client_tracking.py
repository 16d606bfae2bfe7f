"""Client-side cost of tracking: bulk of 100 vs one request per hit, against a local server.

The server runs in a separate process and does almost nothing (it counts the bulk items and
answers Matomo's JSON), so the figures measure MatoKit's side: building the bulk body,
requests/urllib3, the token-memory check and reading the answer. Real Matomo ingests ~63
hits/s one per request and ~450 hits/s in bulk (matomo-api.md); the client must be far from
being the limit.

    python bench/client_tracking.py [--quick]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bulkserver import TOKEN, bulk_server

from matokit import hits as hitlib
from matokit.client import MatomoClient
from matokit.tokenmemory import TokenMemory

BULK_TARGET = 20_000.0  # hits/s, bulk of 100
MATOMO_SINGLE_INGEST = 63.0  # hits/s, one request per hit, measured on Matomo 5.11 (2 cores)
BUILD_TARGET = 50_000.0  # hits/s built and validated


def _make_hits(count: int) -> list[hitlib.Hit]:
    now = time.time()
    return [
        hitlib.event(
            1,
            category="deploy",
            action="finished",
            name=f"service-{i % 17}",
            value=i,
            visitor_id=f"{i:016x}",
            clock=lambda: now,
        )
        for i in range(count)
    ]


def _rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def _track_rate(
    client: MatomoClient, hits: list[hitlib.Hit], batch: int, *, check: bool = True
) -> float:
    def work() -> None:
        for start in range(0, len(hits), batch):
            sent = hits[start : start + batch]
            result = client.track(sent)
            if check and result.delivered != len(sent):
                raise RuntimeError(f"the benchmark server refused hits: {result}")

    client.track(hits[:batch])  # warm up the connection pool
    return _rate(len(hits), work)


def _row(
    name: str, value: float, unit: str, baseline_name: str, baseline: float, target: str, met: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 1),
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 2) if baseline else None,
        "target": target,
        "met": met,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure bulk vs one-per-request tracking and hit building; one dict per figure."""
    bulk_count, single_count = (5_000, 500) if quick else (20_000, 2_000)
    with bulk_server() as url, tempfile.TemporaryDirectory() as tmp:
        memory = TokenMemory(Path(tmp) / "token-memory.json")
        with MatomoClient(base_url=url, token=TOKEN, token_memory=memory) as client:
            bulk = _track_rate(client, _make_hits(bulk_count), 100)
            single = _track_rate(client, _make_hits(single_count), 1)
    build = _rate(bulk_count, lambda: _make_hits(bulk_count))
    rows = [
        _row(
            "tracking_bulk100_hits_per_s",
            bulk,
            "hits/s",
            "tracking_one_per_request_hits_per_s",
            single,
            f">= {BULK_TARGET:,.0f} hits/s bulk",
            bulk >= BULK_TARGET,
        ),
        _row(
            "tracking_one_per_request_hits_per_s",
            single,
            "hits/s",
            "matomo_5.11_one_per_request_ingest",
            MATOMO_SINGLE_INGEST,
            f">= 10x Matomo's own ingest ({10 * MATOMO_SINGLE_INGEST:,.0f} hits/s)",
            single >= 10 * MATOMO_SINGLE_INGEST,
        ),
        _row(
            "hit_build_validate_per_s",
            build,
            "hits/s",
            "tracking_bulk100_hits_per_s",
            bulk,
            f">= {BUILD_TARGET:,.0f} hits/s",
            build >= BUILD_TARGET,
        ),
    ]
    fake = _fakematomo_rate(1_000 if quick else 5_000)
    if fake is not None:
        rows.append(
            _row(
                "tracking_bulk100_fakematomo_hits_per_s",
                fake,
                "hits/s",
                "tracking_bulk100_hits_per_s",
                bulk,
                "informational: bound by the test server, not the client",
                True,
            )
        )
    return rows


def _fakematomo_rate(count: int) -> float | None:
    """Bulk tracking against tests.fakematomo (when present): a server that stores the hits."""
    try:
        from tests.fakematomo import FakeMatomo  # type: ignore[attr-defined]
    except ImportError:
        return None
    server = FakeMatomo().start()
    try:
        with MatomoClient(base_url=server.url, token=None) as client:
            return _track_rate(client, _make_hits(count), 100, check=False)
    finally:
        server.stop()


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
