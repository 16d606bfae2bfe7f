"""The one byte-count formatter (matokit/sizes.py): binary units, one decimal above bytes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matokit.sizes import byte_text, database_size


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2, "1.0 MiB"),
        (5 * 1024**3 // 2, "2.5 GiB"),
        (3 * 1024**4, "3.0 TiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_byte_text(size: int, text: str) -> None:
    assert byte_text(size) == text


def test_database_size_counts_the_file_its_wal_and_its_shm(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite3"
    assert database_size(db) == 0  # missing: nothing on disk
    db.write_bytes(b"a" * 100)
    assert database_size(db) == 100
    Path(f"{db}-wal").write_bytes(b"w" * 20)
    Path(f"{db}-shm").write_bytes(b"s" * 3)
    assert database_size(db) == 123


def test_every_size_on_disk_uses_the_same_measure(tmp_path: Path) -> None:
    """cache stats and the journal's stats count the -wal and -shm files, like du."""
    from matokit import cache
    from matokit.journal import Journal

    db = tmp_path / "cache.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()  # kept open: its -wal and -shm files stay
    try:
        assert Path(f"{db}-shm").exists()
        assert cache.stats(db).size_bytes == database_size(db) > db.stat().st_size
    finally:
        conn.close()
    with Journal(tmp_path / "journal.sqlite") as journal:
        assert Path(f"{journal.path}-shm").exists()
        stats = journal.stats()
        assert stats.file_size == database_size(journal.path)
        wal = Path(f"{journal.path}-wal").stat().st_size
        assert stats.file_size > journal.path.stat().st_size + wal
