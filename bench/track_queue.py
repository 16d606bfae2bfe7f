"""One `matokit track event --queue` as a whole process against bare `python -c pass`.

What a web app or a cron job pays per hit when it hands hits to MatoKit's journal: start-up,
validation and one durable (fsync'd) SQLite commit; no network, and requests is never imported.

Measured twice: with a bytecode cache (as an installed package runs: pip compiles on install)
and with the environment as given (PYTHONDONTWRITEBYTECODE=1 makes every run compile anew).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from _util import MATOKIT, figure, isolated_env, median_walls

TARGET_MS = 200.0
TRACK = ["track", "event", "--category", "bench", "--action", "queue", "--queue"]


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 7 if quick else 25
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "track --queue": [str(MATOKIT), *TRACK],
    }
    figures = []
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp:
        for label, cached in (("bytecode cached", True), ("as configured", False)):
            env = isolated_env(Path(tmp) / label.replace(" ", "-"), {"MATOMO_SITE_ID": "1"})
            if cached:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            walls = median_walls(commands, runs, env)
            value_ms = walls["track --queue"] * 1000
            figures.append(
                figure(
                    f"matokit track event --queue ({label})",
                    value_ms,
                    "ms",
                    "python -c pass",
                    walls["python -c pass"] * 1000,
                    target=f"< {TARGET_MS:.0f} ms",
                    met=value_ms < TARGET_MS,
                )
            )
    return figures
