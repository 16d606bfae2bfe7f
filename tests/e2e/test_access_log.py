"""`matokit track access-log` end to end: real processes, a log being written and rotated,
the Matomo-compatible server; every countable line must be stored exactly once.

Every countable line requests its own path, except that every 7th is logged twice in the same
second (two requests: two hits); static files and bots are not countable. So "exactly once"
is: each path stored as many times as it was requested, and (with the key dimension) no key
stored twice. Figures are printed (run with `-s`).
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.fakematomo import FakeMatomo, Fault


class Log:
    """A web server's access log: numbered lines appended, rotated like logrotate with
    `delaycompress` (access.log -> access.log.1 -> access.log.N.gz)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "access.log"
        self.expected: Counter[str] = Counter()
        self.next = 0
        self.rotations = 0
        self._file = open(self.path, "a")  # noqa: SIM115 - closed by close()

    def write(self, count: int) -> None:
        out = []
        for _ in range(count):
            i = self.next
            self.next += 1
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            agent, path = "Mozilla/5.0 (X11; Linux x86_64)", f"/page/{i}"
            if i % 5 == 0:
                path = f"/img/{i}.png"  # static
            elif i % 11 == 0:
                agent = "Mozilla/5.0 (compatible; Googlebot/2.1)"  # a bot
            text = f'192.0.2.{i % 250} - - [{stamp}] "GET {path} HTTP/1.1" 200 {i} "-" "{agent}"\n'
            copies = 2 if i % 7 == 0 else 1
            out.append(text * copies)
            if path.startswith("/page/") and "Googlebot" not in agent:
                self.expected[f"https://example.org{path}"] += copies
        self._file.write("".join(out))
        self._file.flush()

    def rotate(self) -> None:
        self.rotations += 1
        rotated = self.dir / "access.log.1"
        if rotated.exists():
            packed = self.dir / f"access.log.{self.rotations}.gz"
            with open(rotated, "rb") as src, gzip.open(packed, "wb") as dst:
                shutil.copyfileobj(src, dst)
            rotated.unlink()
        self.path.rename(rotated)
        self._file.close()
        self._file = open(self.path, "a")  # noqa: SIM115

    def files(self) -> list[str]:
        """Every file of the log, oldest first (what `access.log*` names)."""
        found = sorted(self.dir.glob("access.log*"), key=lambda p: p.stat().st_mtime)
        return [str(p) for p in found]

    def close(self) -> None:
        self._file.close()


def stored(fake: FakeMatomo) -> Counter[str]:
    return Counter(hit["url"] for hit in fake.hits)


def _sending(fake: FakeMatomo, before: int, proc: subprocess.Popen[str]) -> bool:
    """More hits stored than `before`, or the process ended."""
    return len(fake.hits) > before or proc.poll() is not None


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


def settle(run: RunMatokit, env: dict[str, str], rounds: int = 30) -> None:
    """Flush, letting uncertain sends settle and be looked up, until nothing is queued."""
    for _ in range(rounds):
        run("queue", "flush", "--all", env=env)
        status = json.loads(run("queue", "status", "--format", "json", env=env).stdout)
        if status["queued"] == 0:
            return
        time.sleep(1.1)
    pytest.fail(f"the journal never emptied: {status}")


@pytest.fixture
def log(tmp_path: Path) -> Log:
    directory = tmp_path / "logs"
    directory.mkdir()
    found = Log(directory)
    yield found  # type: ignore[misc]
    found.close()


@pytest.fixture
def al_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "MATOKIT_SETTLE_TIME": "1s"}


def test_cron_runs_while_the_log_grows_and_rotates_store_every_line_once(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, al_env: dict[str, str], log: Log
) -> None:
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        for step in range(60):
            log.write(25)
            if step % 15 == 14:
                log.rotate()
            time.sleep(0.05)
        writing.clear()

    thread = threading.Thread(target=writer)
    thread.start()
    runs = 0
    try:
        while writing.is_set() or runs == 0:
            result = run_matokit(
                "track", "access-log", *log.files(), "--format", "json", env=al_env
            )
            runs += 1
            assert result.code == 0, result  # a file rotated away meanwhile is skipped
    finally:
        thread.join()
    final = run_matokit("track", "access-log", *log.files(), "--format", "json", env=al_env)
    assert final.code == 0, final
    again = json.loads(
        run_matokit("track", "access-log", *log.files(), "--format", "json", env=al_env).stdout
    )
    assert (again["lines"], again["imported"]) == (0, 0)  # every file read to its end before
    settle(run_matokit, al_env)
    print(
        f"\n[cron x{runs + 2} while writing {log.next} lines, {log.rotations} rotations] "
        f"stored {sum(stored(fake_matomo).values())} of {sum(log.expected.values())}"
    )
    assert log.rotations == 4
    assert stored(fake_matomo) == log.expected


def test_a_run_killed_at_random_moments_and_rerun_stores_every_line_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    al_env: dict[str, str],
    log: Log,
) -> None:
    dimension = fake_matomo.add_custom_dimension(1, "matokit_key")
    log.write(4000)
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.04))
    args = ("track", "access-log", str(log.path), "--batch-size", "40", "--concurrency", "1")
    rng = random.Random(20261126)
    kills = 0
    for attempt in range(4):
        proc = spawn_matokit(*args, env=al_env)
        if attempt % 2:  # while it starts, reads or journals
            time.sleep(rng.uniform(0.2, 1.2))
        else:  # while it sends
            sending = functools.partial(_sending, fake_matomo, len(fake_matomo.hits), proc)
            wait_until(sending)
            time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
    before = sum(stored(fake_matomo).values())
    fake_matomo.clear_faults()
    rerun = run_matokit(*args, "--format", "json", env=al_env)
    assert rerun.code in (0, 75), rerun
    settle(run_matokit, al_env)
    print(
        f"\n[killed x{kills}] stored before the re-run: {before}; now "
        f"{sum(stored(fake_matomo).values())} of {sum(log.expected.values())}"
    )
    assert kills >= 2 and before > 0
    assert fake_matomo.duplicate_keys(dimension) == {}
    assert stored(fake_matomo) == log.expected


def test_follow_across_two_rotations_then_sigterm_stores_every_line_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    al_env: dict[str, str],
    log: Log,
) -> None:
    log.write(100)
    proc = spawn_matokit("track", "access-log", str(log.path), "--follow", env=al_env)
    wait_until(lambda: stored(fake_matomo) == log.expected)  # it follows the log now
    for _ in range(2):  # rotations at least a poll apart (tail -F cannot see a skipped file)
        for _ in range(20):
            log.write(15)
            time.sleep(0.03)
        log.rotate()
    log.write(50)
    wait_until(lambda: stored(fake_matomo) == log.expected)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert "stopped by SIGTERM" in err
    settle(run_matokit, al_env)
    print(f"\n[--follow, {log.rotations} rotations] stored {sum(stored(fake_matomo).values())}")
    assert stored(fake_matomo) == log.expected
    # Nothing left behind: a run over every file finds nothing new.
    after = run_matokit("track", "access-log", *log.files(), "--format", "json", env=al_env)
    assert after.code == 0, after
    assert json.loads(after.stdout)["imported"] == 0
