"""Journaling an import: `matokit track import FILE --queue` against a plain read of the file.

Two figures: the rate for 100,000 lines (a fresh journal per run; the whole process, start-up
included) against a `wc -l`-style pure Python read of the same file, and the peak memory
(ru_maxrss of the process tree) of importing 1,000,000 lines (200,000 with --quick) against
the same reader's: the import streams, so memory must not grow with the file.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import MATOKIT, REPO, figure, isolated_env, write_lines

RATE_LINES = 100_000
TARGET_RATE = 50_000.0
TARGET_MB = 100.0
READER = "import sys\nn = 0\nwith open(sys.argv[1], 'rb') as f:\n    for _ in f:\n        n += 1\n"


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB of `cmd` and the processes it waited for."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err}")
    return elapsed, usage.ru_maxrss / 1024.0


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 3 if quick else 5
    memory_lines = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp:
        root = Path(tmp)
        small, large = root / "100k.jsonl", root / "large.jsonl"
        write_lines(small, RATE_LINES)
        write_lines(large, memory_lines)
        base_env = isolated_env(root, {"MATOMO_SITE_ID": "1"})
        reader = [sys.executable, "-c", READER]
        measure([*reader, str(small)], base_env)  # warm the page cache
        imports, reads = [], []
        for i in range(runs):
            env = {**base_env, "MATOKIT_DATA_DIR": str(root / f"data-{i}")}
            cmd = [str(MATOKIT), "track", "import", str(small), "--queue"]
            imports.append(measure(cmd, env)[0])
            reads.append(measure([*reader, str(small)], base_env)[0])
        env = {**base_env, "MATOKIT_DATA_DIR": str(root / "data-large")}
        _, import_mb = measure([str(MATOKIT), "track", "import", str(large), "--queue"], env)
        _, read_mb = measure([*reader, str(large)], base_env)
    rate = RATE_LINES / statistics.median(imports)
    read_rate = RATE_LINES / statistics.median(reads)
    return [
        figure(
            "track import --queue, 100k lines",
            rate,
            "lines/s",
            "pure Python read of the file",
            read_rate,
            target=f">= {TARGET_RATE:,.0f} lines/s",
            met=rate >= TARGET_RATE,
        ),
        figure(
            f"track import --queue peak memory, {memory_lines:,} lines",
            import_mb,
            "MB",
            "pure Python read of the file",
            read_mb,
            target=f"< {TARGET_MB:.0f} MB",
            met=import_mb < TARGET_MB,
        ),
    ]
