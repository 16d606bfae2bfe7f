"""`matokit health`: a full run against a Matomo that takes 100 ms per answer, vs single checks.

The eight checks run concurrently; those needing the token wait for one shared
`API.getMatomoVersion` call (lockout safety), so a full run should cost about as much as its
slowest single check (two round trips), not the sum of all. Target: full run < 1.5x the
slowest `--check NAME` run, both measured as whole `matokit` processes. Also `--format
prometheus` (prometheus_client, imported only there) against `--format json`: target < 1.1x
(ADR-0005).

    python bench/run.py --only health [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import MATOKIT, figure, isolated_env, median_walls, standalone_server
from matokit.health import CHECKS
from tests.fakematomo import SUPERUSER_TOKEN

LATENCY = 0.1
TARGET_RATIO = 1.5
PROMETHEUS_TARGET = 1.1


def run(quick: bool) -> list[dict[str, Any]]:
    """Median wall times of `matokit health` (all checks) and of each single check."""
    runs = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp, standalone_server(LATENCY) as url:
        env = isolated_env(
            Path(tmp),
            {"MATOMO_URL": url, "MATOMO_TOKEN": SUPERUSER_TOKEN, "MATOMO_SITE_ID": "1"},
        )
        base = [str(MATOKIT), "health", "--format", "json"]
        commands = {"all": base} | {name: [*base, "--check", name] for name in CHECKS}
        walls = median_walls(commands, runs, env)
        # A pair of its own, alternating, so the two formats meet the same machine noise.
        formats = median_walls({"json": base, "prometheus": [*base[:-1], "prometheus"]}, runs, env)
    full = walls.pop("all")
    slowest_name = max(walls, key=lambda name: walls[name])
    slowest = walls[slowest_name]
    ratio = full / slowest
    return [
        figure(
            "health: full run (8 checks, 100 ms per Matomo answer)",
            full,
            "s",
            f"slowest single check ({slowest_name})",
            slowest,
            target=f"< {TARGET_RATIO}x the slowest single check",
            met=ratio < TARGET_RATIO,
        ),
        figure(
            "health: full run vs the checks one process each",
            full,
            "s",
            "sum of the 8 single-check runs",
            sum(walls.values()),
        ),
        figure(
            "health --format prometheus (prometheus_client)",
            formats["prometheus"],
            "s",
            "health --format json",
            formats["json"],
            target=f"< {PROMETHEUS_TARGET}x --format json (ADR-0005)",
            met=formats["prometheus"] / formats["json"] < PROMETHEUS_TARGET,
        ),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['name']}: {row['value']:.3f} {row['unit']} vs {row['baseline_name']} "
            f"{row['baseline']:.3f} (ratio {row['ratio']:.2f}, target {row['target']}, "
            f"met {row['met']})"
        )
