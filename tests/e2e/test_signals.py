"""Ctrl-C and SIGTERM never count a hit twice: real `matokit` processes, signals at random moments.

Matomo answers each request slowly (a latency fault), so most signals land while a request is
in flight. The first signal lets that request finish and records its answer, then the run ends
with 130 (SIGINT) or 143 (SIGTERM) and says what is left. Every hit carries its key in custom
dimension 1: in the end Matomo holds every key exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from matokit.journal import EntryState, Journal
from tests.e2e.conftest import MATOKIT, RunMatokit, SpawnMatokit
from tests.e2e.test_guarantees import (
    _helpers_of,
    flush_until_empty,
    large_import,
    records,
    stored,
)
from tests.fakematomo import FakeMatomo, Fault

HITS, BATCH, LATENCY, ROUNDS = 300, 20, 0.15, 3
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNALS = pytest.mark.parametrize("signum", list(CODES), ids=["SIGINT", "SIGTERM"])


def signal_while_sending(
    proc: subprocess.Popen[str], fake: FakeMatomo, signum: int, rng: random.Random
) -> tuple[str, str]:
    """Once Matomo has stored a new hit, wait a random moment and send `signum`; the output."""
    start = len(fake.hits)
    deadline = time.monotonic() + 30
    while len(fake.hits) == start and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 2 * LATENCY))
    assert proc.poll() is None, "the run ended before the signal: make it longer"
    proc.send_signal(signum)
    return proc.communicate(timeout=30)


def assert_stopped_gracefully(
    proc: subprocess.Popen[str], err: str, signum: int, journal_path: Path
) -> None:
    assert proc.returncode == CODES[signum], err
    assert "Traceback" not in err, err
    with Journal(journal_path) as journal:
        counts = journal.stats().counts
    # The request in flight was answered and recorded: nothing is left maybe-sent (a request
    # cut short leaves its hits inflight, and the next flush sends them again).
    assert not counts.get(EntryState.INFLIGHT), counts
    assert not counts.get(EntryState.SENT_UNCONFIRMED), counts
    assert f"stopped by {signal.Signals(signum).name}" in err, err


def assert_each_hit_stored_once(fake: FakeMatomo, keys: list[str], journal_path: Path) -> None:
    counts = stored(fake)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    assert (duplicates, sum(counts.values())) == (0, len(keys))
    assert counts == Counter(dict.fromkeys(keys, 1))
    with Journal(journal_path) as journal:
        assert journal.stats().delivered_unconfirmed == 0


@SIGNALS
def test_a_signal_during_queue_flush_finishes_the_request_in_flight_and_counts_nothing_twice(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
    signum: int,
) -> None:
    keys = [f"f{i}" for i in range(HITS)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    assert run_matokit("track", "import", str(source), "--queue", env=env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=LATENCY))
    rng = random.Random(f"flush-{signum}")
    for _ in range(ROUNDS):
        proc = spawn_matokit("queue", "flush", "--batch-size", BATCH, env=env)
        _, err = signal_while_sending(proc, fake_matomo, signum, rng)
        assert_stopped_gracefully(proc, err, signum, journal_path)
        assert "stay queued" in err and "`matokit queue flush` sends them" in err
    assert 0 < len(fake_matomo.hits) < HITS
    fake_matomo.clear_faults()
    flush_until_empty(run_matokit, env)
    assert_each_hit_stored_once(fake_matomo, keys, journal_path)


@SIGNALS
def test_a_signal_while_an_import_sends_finishes_the_request_in_flight_and_counts_nothing_twice(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
    signum: int,
) -> None:
    keys = [f"i{i}" for i in range(HITS)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=LATENCY))
    rng = random.Random(f"import-{signum}")
    for round_ in range(ROUNDS):
        args = ("track", "import", source, "--batch-size", BATCH, "--format", "json")
        proc = spawn_matokit(*args, env=env)
        out, err = signal_while_sending(proc, fake_matomo, signum, rng)
        assert_stopped_gracefully(proc, err, signum, journal_path)
        summary = json.loads(out)
        # The summary counts the file's lines; older hits (after the first run) on their own.
        assert summary["journaled"] + summary["duplicates"] == HITS
        if round_ == 0:
            assert summary["sent"] + summary["queued"] == HITS, summary
            assert summary["sent"] == len(fake_matomo.hits)
        else:
            assert summary["sent"] == 0 and summary["duplicates"] == HITS
    fake_matomo.clear_faults()
    flush_until_empty(run_matokit, env)
    assert_each_hit_stored_once(fake_matomo, keys, journal_path)


def test_ctrl_c_on_a_large_import_stops_both_processes_quietly_and_a_rerun_completes_it(
    run_matokit: RunMatokit,
    matokit_env: dict[str, str],
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
) -> None:
    keys, source = large_import(tmp_path)
    # Its own process group stands for the terminal's foreground group: Ctrl-C signals all.
    proc = subprocess.Popen(
        [str(MATOKIT), "track", "import", str(source), "--queue"],
        env={**matokit_env, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        helpers: list[int] = []
        while not helpers and proc.poll() is None and time.monotonic() < deadline:
            helpers = _helpers_of(journal_path)
            time.sleep(0.01)
        assert helpers, "the import helper never started"
        os.kill(helpers[0], signal.SIGINT)  # the helper alone: the main process decides
        time.sleep(0.2)
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole group
        _, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "stopped by SIGINT while journaling" in err, err
    assert _helpers_of(journal_path) == []
    with Journal(journal_path) as journal:
        journaled = journal.stats().queued
    rerun = run_matokit("track", "import", str(source), "--queue", "--format", "json", env=env)
    assert rerun.code == 0, rerun
    summary = json.loads(rerun.stdout)
    assert summary["duplicates"] == journaled
    assert summary["duplicates"] + summary["journaled"] == len(keys)


def waiting_for_a_lock(pid: int) -> bool:
    """Whether process `pid` is blocked waiting for a file lock ("->" lines of /proc/locks)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
                return True
    return False


def test_a_signal_while_waiting_for_the_flush_lock_stops_the_waiter_at_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    source = tmp_path / "hits.jsonl"
    source.write_text(records([f"w{i}" for i in range(HITS)]))
    assert run_matokit("track", "import", str(source), "--queue", env=env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=LATENCY))
    holder = spawn_matokit("queue", "flush", "--batch-size", BATCH, env=env)
    deadline = time.monotonic() + 30
    while not fake_matomo.hits and time.monotonic() < deadline:
        time.sleep(0.01)
    waiter = spawn_matokit("queue", "flush", "--wait", env=env)
    while not waiting_for_a_lock(waiter.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiting_for_a_lock(waiter.pid), "the second flusher never waited for the lock"
    waiter.send_signal(signal.SIGTERM)
    _, err = waiter.communicate(timeout=30)
    # Nothing to drain while waiting: it ends before the holder does, which sends on.
    assert holder.poll() is None, "the holder ended first: make it longer"
    assert waiter.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err, err
    holder.send_signal(signal.SIGTERM)
    _, err = holder.communicate(timeout=30)
    assert holder.returncode == 143, err
