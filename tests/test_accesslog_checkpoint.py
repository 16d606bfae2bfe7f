"""Re-runs over the same, a grown, a rotated, a compressed, a truncated or a replaced file:
every countable line is journaled once, checkpoints spare the re-reading, and keys decide when
checkpoints cannot (in-process, against a real journal, sending nothing)."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from matokit.accesslog import AccessLogImport, AccessLogOptions, AccessLogResult
from matokit.accesslog.state import FILE_NAME
from matokit.delivery import Delivery
from matokit.errors import StorageError

NOW = time.time()


def lines(start: int, count: int, *, at: float = NOW - 600) -> str:
    """`count` countable combined lines numbered from `start`; every 10th is sent twice in the
    same second (two requests, two hits)."""
    out = []
    for i in range(start, start + count):
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at + i // 20))
        text = f'192.0.2.{i % 200} - - [{stamp}] "GET /page/{i} HTTP/1.1" 200 {i} "-" "Mozilla/5.0"'
        out.append(text)
        if i % 10 == 0:
            out.append(text)
    return "\n".join(out) + "\n"


def hits_in(start: int, count: int) -> int:
    return count + len([i for i in range(start, start + count) if i % 10 == 0])


class Runner:
    """Runs `track access-log --queue` in-process on the same data directory."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.data = root / "data"
        self.clock = clock

    def delivery(self) -> Delivery:
        def no_client() -> Any:
            raise AssertionError("no request expected")

        return Delivery(
            journal_path=self.data / "journal.sqlite",
            client_factory=no_client,
            has_token=True,
            clock=self.clock,
        )

    def __call__(self, *paths: Path, **options: Any) -> AccessLogResult:
        opts = AccessLogOptions(site=1, site_url="https://www.example.com", queue=True, **options)
        with (
            self.delivery() as delivery,
            AccessLogImport(
                opts,
                delivery=delivery,
                client=delivery.client,
                data_dir=self.data,
                clock=self.clock,
            ) as run,
        ):
            run.prepare()
            run.run([str(p) for p in paths])
            return run.finish(None)

    def journaled(self) -> int:
        with self.delivery() as delivery:
            return len(delivery.journal.entries())

    def forget_checkpoints(self) -> None:
        with sqlite3.connect(self.data / FILE_NAME) as conn:
            conn.execute("DELETE FROM checkpoints")


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def test_same_file_twice_adds_nothing_and_reads_nothing(runner: Runner, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(lines(0, 300))
    first = runner(log)
    assert first.summary.total("imported") == hits_in(0, 300) == runner.journaled()
    again = runner(log)
    file = again.summary.files[0]
    assert (file.start_line, file.lines, file.imported) == (hits_in(0, 300), 0, 0)


def test_a_grown_file_is_read_from_where_the_last_run_stopped(
    runner: Runner, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    log.write_text(lines(0, 100))
    runner(log)
    with open(log, "a") as out:
        out.write(lines(100, 50))
        out.write("192.0.2.1 - - [partial line being writ")  # no line end yet
    grown = runner(log).summary.files[0]
    assert grown.start_line == hits_in(0, 100)
    assert grown.imported == hits_in(100, 50)
    assert runner.journaled() == hits_in(0, 150)


def test_rotation_and_compression_import_only_the_new_lines(runner: Runner, tmp_path: Path) -> None:
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    log.write_text(lines(0, 100))
    runner(log)
    with open(log, "a") as out:
        out.write(lines(100, 20))  # written after the run, before the rotation
    log.rename(rotated)
    log.write_text(lines(200, 30))
    result = runner(rotated, log)
    old, new = result.summary.files
    assert (old.start_line, old.imported) == (hits_in(0, 100), hits_in(100, 20))
    assert (new.start_line, new.imported) == (0, hits_in(200, 30))
    # Compressed (a new file, a new inode): known by its first bytes, nothing re-read.
    with open(rotated, "rb") as src, gzip.open(f"{rotated}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    rotated.unlink()
    packed = runner(Path(f"{rotated}.gz")).summary.files[0]
    assert (packed.start_line, packed.lines, packed.imported) == (hits_in(0, 120), 0, 0)
    assert runner.journaled() == hits_in(0, 120) + hits_in(200, 30)


def test_truncated_or_replaced_files_are_read_again_from_the_start(
    runner: Runner, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    log.write_text(lines(0, 100))
    runner(log)
    # copytruncate: the old lines go to a copy, the file starts again (same inode).
    shutil.copy(log, tmp_path / "access.log.1")
    with open(log, "r+") as out:
        out.truncate(0)
        out.write(lines(300, 10))
    result = runner(tmp_path / "access.log.1", log)
    copy, truncated = result.summary.files
    assert (copy.start_line, copy.imported) == (hits_in(0, 100), 0)  # by its first bytes
    assert (truncated.start_line, truncated.imported) == (0, hits_in(300, 10))
    # Replaced by a longer file with other first bytes: from the start; keys decide.
    log.write_text(lines(400, 5) + lines(0, 100))
    replaced = runner(log).summary.files[0]
    assert (replaced.start_line, replaced.imported) == (0, hits_in(400, 5))
    assert replaced.duplicates == hits_in(0, 100)
    assert runner.journaled() == hits_in(0, 100) + hits_in(300, 10) + hits_in(400, 5)


def test_keys_outlive_the_journals_dedup_window(tmp_path: Path) -> None:
    now = [NOW]
    runner = Runner(tmp_path, clock=lambda: now[0])
    log = tmp_path / "access.log"
    log.write_text(lines(0, 50))
    runner(log)
    with runner.delivery() as delivery:  # delivered, then forgotten by the journal
        entries = delivery.journal.claim("test", limit=1000, lease_seconds=60)
        delivery.journal.ack([e.id for e in entries])
    now[0] += 30 * 86400.0
    runner.forget_checkpoints()
    again = runner(log, horizon=90 * 86400.0).summary.files[0]
    assert (again.lines, again.imported, again.duplicates) == (hits_in(0, 50), 0, hits_in(0, 50))
    with runner.delivery() as delivery:
        assert not delivery.journal.has_key(entries[0].key)  # the journal forgot it


def test_lines_older_than_the_horizon_are_skipped(runner: Runner, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(lines(0, 10, at=NOW - 3 * 86400) + lines(10, 10))
    result = runner(log, horizon=2 * 86400.0).summary.files[0]
    assert result.skipped["too_old"] == hits_in(0, 10)
    assert result.imported == hits_in(10, 10)


def test_a_run_killed_after_the_journal_commit_is_settled_by_the_next(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matokit.accesslog.state import AccessLogState

    log = tmp_path / "access.log"
    log.write_text(lines(0, 40))

    def killed(self: object, keys: object, checkpoint: object, pending: object) -> None:
        raise StorageError("killed here")

    with monkeypatch.context() as patch:
        patch.setattr(AccessLogState, "commit_keys", killed)
        broken = runner(log)
    assert isinstance(broken.error, StorageError)
    assert runner.journaled() == hits_in(0, 40)  # journaled; keys left pending, no checkpoint
    result = runner(log)
    assert result.settled == (hits_in(0, 40), 0)
    file = result.summary.files[0]
    assert (file.start_line, file.imported, file.duplicates) == (0, 0, hits_in(0, 40))


def test_a_run_killed_before_the_journal_commit_loses_nothing(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "access.log"
    log.write_text(lines(0, 40))

    def killed(self: object, hits: object) -> None:
        raise StorageError("killed here")

    with monkeypatch.context() as patch:
        patch.setattr(AccessLogImport, "journal_hits", killed)
        runner(log)
    assert runner.journaled() == 0
    result = runner(log)
    assert result.settled == (0, hits_in(0, 40))  # pending, not journaled: forgotten
    assert result.summary.files[0].imported == hits_in(0, 40) == runner.journaled()


def test_the_state_file_is_private(runner: Runner, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(lines(0, 5))
    runner(log)
    assert os.stat(runner.data / FILE_NAME).st_mode & 0o777 == 0o600
    assert os.stat(runner.data).st_mode & 0o777 == 0o700


def test_many_chunks_journal_every_hit_and_resume_between_them(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matokit.accesslog.fileimport import FileImport
    from matokit.stopping import StopRequest

    monkeypatch.setattr(FileImport, "chunk", 16)
    log = tmp_path / "access.log"
    log.write_text(lines(0, 300))
    stop = StopRequest()  # asked (as by SIGTERM) once the first chunk is committed
    opts = AccessLogOptions(site=1, site_url="https://www.example.com", queue=True)
    with (
        runner.delivery() as delivery,
        AccessLogImport(
            opts,
            delivery=delivery,
            client=delivery.client,
            data_dir=runner.data,
            stop=stop,
            on_progress=lambda position: stop.request(),
        ) as run,
    ):
        run.prepare()
        run.run([str(log)])
        stopped = run.finish(None)
    before = stopped.summary.files[0].imported
    assert stopped.interrupted and 16 <= before < 32  # the chunk, and what was read after it
    rest = runner(log).summary.files[0]
    assert rest.start_line > 0 and rest.imported == hits_in(0, 300) - before
    assert runner.journaled() == hits_in(0, 300)


def test_a_file_that_only_starts_alike_is_read_from_its_start(
    runner: Runner, tmp_path: Path
) -> None:
    sample = tmp_path / "sample.log"
    sample.write_text(lines(0, 100) + "a line of something else entirely\n")
    runner(sample)
    other = tmp_path / "other.log"  # same first 4 KiB, other bytes before sample's offset
    other.write_text(lines(0, 100) + lines(100, 50))
    found = runner(other).summary.files[0]
    assert (found.start_line, found.imported) == (0, hits_in(100, 50))
    assert found.duplicates == hits_in(0, 100)
    assert runner.journaled() == hits_in(0, 150)


def test_an_unchanged_compressed_file_is_not_even_decompressed_again(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matokit.accesslog.reader import Source

    packed = tmp_path / "access.log.2.gz"
    packed.write_bytes(gzip.compress(lines(0, 80).encode()))
    first = runner(packed).summary.files[0]
    assert first.imported == hits_in(0, 80)

    def no_skipping(self: object, offset: int, *, keep: int = 0) -> None:
        raise AssertionError("decompressed again")

    monkeypatch.setattr(Source, "skip_to", no_skipping)
    again = runner(packed).summary.files[0]
    assert (again.start_line, again.lines, again.imported) == (hits_in(0, 80), 0, 0)
    os.utime(packed, ns=(1, 1))  # touched: read again (and every line found imported)
    monkeypatch.undo()
    touched = runner(packed).summary.files[0]
    assert (touched.start_line, touched.lines) == (hits_in(0, 80), 0)
