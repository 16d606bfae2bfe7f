"""Byte counts: the one way MatoKit measures an SQLite database and shows a size to people."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
SQLITE_SUFFIXES = ("", "-wal", "-shm")


def database_size(path: Path) -> int:
    """Bytes an SQLite database at `path` takes on disk: the file, its -wal and its -shm
    (what `du` counts); a missing file counts 0."""
    total = 0
    for suffix in SQLITE_SUFFIXES:
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def byte_text(size: float) -> str:
    """A byte count for people, in binary units: "512 B", "1.5 KiB", "2.0 MiB"."""
    value, step = float(size), 0
    while abs(value) >= 1024 and step < len(_UNITS) - 1:
        value, step = value / 1024, step + 1
    return f"{value:.0f} B" if step == 0 else f"{value:.1f} {_UNITS[step]}"
