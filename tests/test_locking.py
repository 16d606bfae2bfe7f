"""The per-profile flush lock, held and contended by real processes."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from matokit.errors import FlushInProgressError, FlushWaitTimeoutError, StorageError
from matokit.locking import LOCK_NAME, flush_lock

_HOLDER = """
import sys, time
from pathlib import Path
from matokit.locking import flush_lock
with flush_lock(Path(sys.argv[1]), wait=False):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_child(lock: Path, seconds: float) -> subprocess.Popen[str]:
    """Start a process that takes the lock, says so, and keeps it for `seconds`."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked", child.stderr and child.stderr.read()
    return child


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "data" / "default" / LOCK_NAME


def test_lock_file_and_new_directories_are_private(lock: Path) -> None:
    with flush_lock(lock, wait=False) as held:
        assert held == lock
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o700
    assert lock.exists()  # kept, so every flusher locks the same file


def test_directory_means_flush_lock_inside_it(tmp_path: Path) -> None:
    with flush_lock(tmp_path, wait=False) as held:
        assert held == tmp_path / LOCK_NAME


def test_second_holder_in_the_same_process_is_refused(lock: Path) -> None:
    with (
        flush_lock(lock, wait=False),
        pytest.raises(FlushInProgressError) as caught,
        flush_lock(lock, wait=False),
    ):
        pass
    assert caught.value.hint is not None
    with flush_lock(lock, wait=False):
        pass  # free again once released


def test_lock_held_by_another_process_is_refused_with_its_pid(lock: Path) -> None:
    child = hold_in_child(lock, 30)
    try:
        with pytest.raises(FlushInProgressError) as caught, flush_lock(lock, wait=False):
            pass
        assert f"pid {child.pid}" in caught.value.message
        assert str(lock) in caught.value.message
    finally:
        child.kill()
        child.communicate(timeout=10)


def test_waiting_blocks_until_the_holder_finishes(lock: Path) -> None:
    child = hold_in_child(lock, 0.5)
    try:
        started = time.monotonic()
        with flush_lock(lock, wait=True):
            waited = time.monotonic() - started
        assert 0.2 < waited < 10
    finally:
        child.communicate(timeout=10)
    assert child.returncode == 0


def test_waiting_names_the_holder_first_and_a_timeout_gives_up(lock: Path) -> None:
    child = hold_in_child(lock, 30)
    heard: list[str] = []
    try:
        with (
            pytest.raises(FlushWaitTimeoutError) as caught,
            flush_lock(lock, wait=True, timeout=0.2, on_wait=heard.append),
        ):
            pass
    finally:
        child.kill()
        child.communicate(timeout=10)
    (holder,) = heard
    assert holder.startswith(f"pid {child.pid}, running since ") and holder.endswith(" ago)")
    assert "after waiting 0.2s" in caught.value.message and holder in caught.value.message
    with flush_lock(lock, wait=True, timeout=0.2, on_wait=heard.append):
        assert len(heard) == 1  # free: nobody to wait for, nothing said


def test_lock_dies_with_a_killed_holder(lock: Path) -> None:
    child = hold_in_child(lock, 60)
    with pytest.raises(FlushInProgressError), flush_lock(lock, wait=False):
        pass
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10)
    with flush_lock(lock, wait=False):
        pass


def test_waiting_thread_gets_the_lock_after_release(lock: Path) -> None:
    order: list[str] = []
    with flush_lock(lock, wait=False):

        def waiter() -> None:
            with flush_lock(lock, wait=True):
                order.append("waiter")

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        order.append("holder done")
    thread.join(timeout=10)
    assert order == ["holder done", "waiter"]


def test_unusable_directory_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(StorageError), flush_lock(blocker / "sub" / LOCK_NAME, wait=False):
        pass
