"""Startup time: `matokit --version`, `--help` and `config show` against bare `python -c pass`.

Cron jobs and monitors start MatoKit many times a minute, so start-up is paid on every run.
The baseline is measured in the same run, interleaved with the commands, so machine noise
affects both alike.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from _util import MATOKIT, figure, isolated_env, median_walls

TARGETS_MS = {"--version": 100.0, "--help": 200.0}


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 5 if quick else 21
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp:
        # A discard port: config show must not need Matomo to answer.
        env = isolated_env(Path(tmp), {"MATOMO_URL": "http://127.0.0.1:9/", "MATOMO_SITE_ID": "1"})
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "--version": [str(MATOKIT), "--version"],
            "--help": [str(MATOKIT), "--help"],
            "config show": [str(MATOKIT), "config", "show"],
        }
        walls = median_walls(commands, runs, env)
    baseline_ms = walls["python -c pass"] * 1000
    figures = []
    for name in ("--version", "--help", "config show"):
        value_ms = walls[name] * 1000
        limit = TARGETS_MS.get(name)
        figures.append(
            figure(
                f"matokit {name}",
                value_ms,
                "ms",
                "python -c pass",
                baseline_ms,
                target=f"{name} < {limit:.0f} ms" if limit else None,
                met=value_ms < limit if limit else None,
            )
        )
    return figures
