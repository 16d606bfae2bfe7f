"""The delivery guarantees, each proven with real `matokit` processes against the fake Matomo.

Every hit carries its own key in custom dimension 1, so the stored hits can be counted per key:
a missing key is a lost hit, a key stored twice is a duplicate. Measured figures are printed
(run with `-s` to see them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from matokit.journal import EntryState, Journal, JournalStats
from tests.e2e.conftest import MATOKIT, RunMatokit, SpawnMatokit
from tests.fakematomo import FakeMatomo, Fault

STALE_TOKEN = "0badc0de" * 4


def records(keys: list[str], **extra: object) -> str:
    return "".join(
        json.dumps(
            {
                "type": "event",
                "category": "guarantee",
                "action": "a",
                "id": key,
                "dimensions": {"1": key},
                **extra,
            }
        )
        + "\n"
        for key in keys
    )


def large_import(tmp_path: Path) -> tuple[list[str], Path]:
    """A JSON Lines file over 4 MiB: large enough to be split between two import processes."""
    keys = [f"L{i}" for i in range(40_000)]
    source = tmp_path / "large.jsonl"
    source.write_text(records(keys, name="x" * 40))
    assert source.stat().st_size > 4 << 20
    return keys, source


def stored(fake: FakeMatomo) -> Counter[str]:
    return Counter(hit.get("dimension1", "?") for hit in fake.hits)


def stats(path: Path) -> JournalStats:
    with Journal(path) as journal:
        return journal.stats()


def flush_until_empty(run: RunMatokit, env: dict[str, str], *args: str, rounds: int = 20) -> None:
    for _ in range(rounds):
        result = run("queue", "flush", "--all", *args, env=env)
        if result.code == 0:
            return
        assert result.code == 75, result
        time.sleep(0.2)
    pytest.fail("the journal never emptied")


# --- 1. kill -9 of a flusher, many times --------------------------------------------------


def test_killed_flushers_lose_nothing_and_duplicate_at_most_a_batch_per_kill(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
) -> None:
    keys = [f"k{i}" for i in range(2000)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    assert run_matokit("track", "import", str(source), "--queue", env=env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.1))
    batch, kills, rng = 20, 15, random.Random(20261125)
    for _ in range(kills):
        proc = spawn_matokit("queue", "flush", "--batch-size", batch, env=env)
        time.sleep(rng.uniform(0.25, 0.7))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the flusher ended before it was killed"
    delivered_before_final = sum(stored(fake_matomo).values())
    fake_matomo.clear_faults()
    flush_until_empty(run_matokit, env, "--batch-size", str(batch))

    counts = stored(fake_matomo)
    missing = [k for k in keys if counts[k] == 0]
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    duplicated_keys = sum(1 for c in counts.values() if c > 1)
    after = stats(journal_path)
    print(
        f"\n[kill -9 x{kills}, batch {batch}] stored before final flush: "
        f"{delivered_before_final}; missing: {len(missing)}; duplicates: {duplicates} "
        f"({duplicates / kills:.1f} per kill, bound {batch}); flagged sent_unconfirmed: "
        f"{after.delivered_unconfirmed}"
    )
    assert missing == []
    assert set(counts) == set(keys)
    assert duplicates <= kills * batch
    # No silent duplicate: every key stored twice was flagged as sent without an answer.
    assert after.delivered_unconfirmed >= duplicated_keys
    assert after.queued == 0


# --- 2. concurrent writers and flushers ---------------------------------------------------


def test_eight_writers_and_two_flushers_deliver_every_hit_exactly_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
) -> None:
    writers, rounds = 8, 6
    keys: list[str] = []
    flushers: list[subprocess.Popen[str]] = []
    for round_ in range(rounds):
        procs = []
        for writer in range(writers):
            key = f"w{writer}-{round_}"
            keys.append(key)
            procs.append(
                spawn_matokit(
                    "track", "event", "--category", "c", "--action", "a",
                    "--dimension", f"1={key}", "--queue", env=env,
                )
            )  # fmt: skip
        if round_ % 2 == 0:
            flushers = [p for p in flushers if p.poll() is None]
            flushers += [
                spawn_matokit("queue", "flush", "--batch-size", "5", env=env),
                spawn_matokit("queue", "flush", "--batch-size", "5", "--wait", env=env),
            ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    for proc in flushers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 75), err
    flush_until_empty(run_matokit, env)
    counts = stored(fake_matomo)
    print(f"\n[{writers} writers x {rounds} rounds, 2 flushers] stored: {sum(counts.values())}")
    assert counts == Counter(dict.fromkeys(keys, 1))
    assert stats(journal_path).queued == 0


# --- 3. the same import twice, and after a kill -------------------------------------------


def test_an_import_run_twice_delivers_every_hit_once(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str], tmp_path: Path
) -> None:
    keys = [f"i{i}" for i in range(1500)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    first = run_matokit("track", "import", str(source), "--format", "json", env=env)
    second = run_matokit("track", "import", str(source), "--format", "json", env=env)
    assert (first.code, second.code) == (0, 0), second
    assert json.loads(second.stdout)["duplicates"] == len(keys)
    assert json.loads(second.stdout)["sent"] == 0
    assert stored(fake_matomo) == Counter(dict.fromkeys(keys, 1))


def test_an_import_killed_while_journaling_and_rerun_delivers_every_hit_once(
    run_matokit: RunMatokit,
    matokit_env: dict[str, str],
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
) -> None:
    keys = [f"j{i}" for i in range(3000)]
    text = records(keys)
    lines = text.splitlines(keepends=True)
    # Feed the first 1,500 lines through a pipe and hold the rest back: the import commits
    # its first chunk(s) and then waits for input, which is when it is killed.
    proc = subprocess.Popen(
        [str(MATOKIT), "track", "import", "-"],
        env={**matokit_env, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write("".join(lines[:1500]).encode())
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        journaled = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                journaled = stats(journal_path).total
            if journaled >= 1000:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
    assert 0 < journaled < len(keys)
    assert fake_matomo.hits == []  # killed before sending anything
    source = tmp_path / "hits.jsonl"
    source.write_text(text)
    rerun = run_matokit("track", "import", str(source), "--format", "json", env=env)
    assert rerun.code == 0, rerun
    summary = json.loads(rerun.stdout)
    print(f"\n[import killed while journaling] journaled before kill: {journaled}; {summary}")
    assert summary["duplicates"] == journaled
    assert stored(fake_matomo) == Counter(dict.fromkeys(keys, 1))


def _helpers_of(journal: Path) -> list[int]:
    """Pids of import helper processes working on `journal` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"_import_worker" in cmdline and str(journal).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_a_large_import_killed_with_its_helper_running_and_rerun_delivers_every_hit_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
) -> None:
    keys, source = large_import(tmp_path)
    proc = spawn_matokit("track", "import", str(source), env=env)
    deadline = time.monotonic() + 20
    journaled = 0
    while time.monotonic() < deadline and journaled < 10_000:
        with contextlib.suppress(Exception):
            journaled = stats(journal_path).total
        time.sleep(0.02)
    helpers = _helpers_of(journal_path)
    proc.kill()
    proc.wait(timeout=10)
    # The orphaned helper notices and stops after the chunk it is committing.
    deadline = time.monotonic() + 15
    while _helpers_of(journal_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _helpers_of(journal_path) == []
    at_kill = stats(journal_path).total
    sent_at_kill = len(fake_matomo.hits)
    assert at_kill > 0
    rerun = run_matokit("track", "import", str(source), "--format", "json", env=env)
    assert rerun.code == 0, rerun
    summary = json.loads(rerun.stdout)
    print(
        f"\n[large import killed, helper {'seen' if helpers else 'not seen'}] journaled at kill: "
        f"{at_kill}; rerun duplicates: {summary['duplicates']}, journaled: {summary['journaled']}"
    )
    assert summary["duplicates"] + summary["journaled"] == len(keys)
    counts = stored(fake_matomo)
    assert set(counts) == set(keys)
    if sent_at_kill == 0:  # the usual case: killed while journaling, so exactly once
        assert counts == Counter(dict.fromkeys(keys, 1))
    else:  # a loaded machine let it reach the flush: at most the batch in flight twice
        assert sum(counts.values()) - len(keys) <= 100


def test_an_import_killed_while_sending_and_rerun_loses_nothing(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
    tmp_path: Path,
) -> None:
    keys = [f"s{i}" for i in range(1000)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.1))
    proc = spawn_matokit("track", "import", str(source), "--batch-size", "50", env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(fake_matomo.hits) < 300:
        time.sleep(0.02)
    time.sleep(0.05)  # into the next request
    proc.kill()
    proc.wait(timeout=10)
    stored_at_kill = len(fake_matomo.hits)
    assert 0 < stored_at_kill < len(keys)
    fake_matomo.clear_faults()
    rerun = run_matokit("track", "import", str(source), "--format", "json", env=env)
    assert rerun.code == 0, rerun
    counts = stored(fake_matomo)
    duplicates = sum(c - 1 for c in counts.values())
    summary = json.loads(rerun.stdout)
    print(
        f"\n[import killed while sending] stored at kill: {stored_at_kill}; duplicates: "
        f"{duplicates} (bound: one batch of 50); rerun: {summary}"
    )
    assert set(counts) == set(keys)
    assert duplicates <= 50
    assert stats(journal_path).delivered_unconfirmed >= duplicates


# --- 4. an unusable data directory -----------------------------------------------------------


def test_a_data_dir_under_a_file_fails_clearly_and_queues_nothing(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = {**env, "MATOKIT_DATA_DIR": str(blocker / "data")}
    queued = run_matokit(
        "track", "event", "--category", "c", "--action", "a", "--queue", "--format", "json",
        env=bad,
    )  # fmt: skip
    assert queued.code == 74, queued
    assert queued.stdout == ""  # no outcome claims it was queued
    assert "matokit: error:" in queued.stderr and str(blocker) in queued.stderr
    fake_matomo.add_fault(Fault(endpoint="tracking", status=503))
    direct = run_matokit("track", "event", "--category", "c", "--action", "a", env=bad)
    assert direct.code == 74, direct
    assert "NOT queued" in direct.stderr
    imported = run_matokit("track", "import", "-", "--queue", input=records(["x"]), env=bad)
    assert imported.code == 74, imported
    assert run_matokit("queue", "flush", env=bad).code == 0  # nothing there to flush
    assert blocker.read_text() == "not a directory"


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str, *, readonly: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700" + (",ro" if readonly else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_a_full_disk_fails_clearly_and_reports_only_what_was_committed(
    run_matokit: RunMatokit, env: dict[str, str], tmp_path: Path
) -> None:
    with tiny_tmpfs(tmp_path / "full", "1m") as disk:
        full = {**env, "MATOKIT_DATA_DIR": str(disk)}
        keys = [f"f{i}" for i in range(20000)]
        result = run_matokit("track", "import", "-", "--queue", input=records(keys), env=full)
        assert result.code == 74, result
        assert "full" in result.stderr, result
        journal = disk / "default" / "journal.sqlite"
        claimed = int(
            result.stderr.split(" new hit(s) of this import were journaled")[0].split()[-1]
        )
        with Journal(journal) as opened:
            actual = opened.stats().queued
        print(f"\n[full disk] import said {claimed} journaled; journal holds {actual}")
        assert 0 < claimed == actual
        one = run_matokit("track", "event", "--category", "c", "--action", "a", "--queue", env=full)
        assert one.code in (0, 74), one  # a single row may still fit; never a false claim
        if one.code == 74:
            with Journal(journal) as opened:
                assert opened.stats().queued == actual


def test_a_read_only_data_dir_fails_clearly(
    run_matokit: RunMatokit, env: dict[str, str], tmp_path: Path
) -> None:
    with tiny_tmpfs(tmp_path / "ro", "1m", readonly=True) as disk:
        readonly = {**env, "MATOKIT_DATA_DIR": str(disk)}
        result = run_matokit(
            "track", "event", "--category", "c", "--action", "a", "--queue", env=readonly
        )
        assert result.code == 74, result
        assert "read-only" in result.stderr, result


# --- 5. a corrupt journal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("queue", "flush"),
        ("queue", "status"),
        ("track", "event", "--category", "c", "--action", "a", "--queue"),
        ("track", "import", "-", "--queue"),
    ],
)
def test_a_corrupt_journal_exits_74_and_is_left_byte_identical(
    run_matokit: RunMatokit, env: dict[str, str], journal_path: Path, args: tuple[str, ...]
) -> None:
    journal_path.parent.mkdir(parents=True)
    journal_path.write_bytes(b"SQLite format 3\x00" + b"\xde\xad\xbe\xef" * 2000)
    before = hashlib.sha256(journal_path.read_bytes()).hexdigest()
    result = run_matokit(*args, env=env, input=records(["c1"]))
    assert result.code == 74, result
    assert str(journal_path) in result.stderr
    assert "never deletes" in result.stderr  # the hint: move it aside
    assert hashlib.sha256(journal_path.read_bytes()).hexdigest() == before


# --- 6. the answer lost after Matomo stored the batch ------------------------------------------


def test_a_connection_dropped_after_storing_loses_nothing(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str], journal_path: Path
) -> None:
    env = {**env, "MATOKIT_CONCURRENCY": "1"}  # one lane: the batches below are exact
    keys = [f"d{i}" for i in range(120)]
    assert run_matokit("track", "import", "-", "--queue", input=records(keys), env=env).code == 0
    # The flush sends the site's first hit alone, then the other 49 of its first batch of 50:
    # that second request is stored, then the connection drops before the answer.
    fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", after=1, times=1))
    first = run_matokit("queue", "flush", "--batch-size", "50", "--format", "json", env=env)
    assert first.code == 75, first
    record = json.loads(first.stdout)
    assert (record["delivered"], record["sent_unconfirmed"]) == (1, 49)
    assert stats(journal_path).counts[EntryState.SENT_UNCONFIRMED] == 49
    flush_until_empty(run_matokit, env, "--batch-size", "50")
    counts = stored(fake_matomo)
    duplicates = sum(c - 1 for c in counts.values())
    final = stats(journal_path)
    print(f"\n[drop after store] duplicates: {duplicates}; flagged: {final.delivered_unconfirmed}")
    assert set(counts) == set(keys)
    assert duplicates == 49
    assert final.delivered_unconfirmed == 49


# --- 7. a stale token and a flush every few seconds ---------------------------------------------


def test_a_stale_token_reaches_matomo_at_most_once_per_cool_down(
    run_matokit: RunMatokit,
    matokit_env: dict[str, str],
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    journal_path: Path,
) -> None:
    config = Path(matokit_env["MATOKIT_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[profiles.default]\ntoken_cooldown = "2s"\n')
    config.chmod(0o600)
    old = int(time.time()) - 2 * 86400
    keys = [f"t{i}" for i in range(30)]
    queued = run_matokit("track", "import", "-", "--queue", input=records(keys, at=old), env=env)
    assert queued.code == 0, queued
    stale = {**env, "MATOMO_TOKEN": STALE_TOKEN}
    started = time.monotonic()
    codes: Counter[int] = Counter()
    for _ in range(60):  # 10 s: five cool-downs
        codes[run_matokit("queue", "flush", env=stale).code] += 1
        if time.monotonic() - started > 10:
            break
    elapsed = time.monotonic() - started
    flushes = sum(codes.values())
    with_stale = [r for r in fake_matomo.requests if STALE_TOKEN.encode() in r.body]
    bound = int(elapsed / 2.0) + 1
    print(
        f"\n[stale token] {flushes} flushes in {elapsed:.1f}s (exit codes {dict(codes)}); "
        f"invalid-token requests reaching Matomo: {len(with_stale)} (cool-down 2 s -> at most "
        f"{bound}); failed logins recorded: {fake_matomo.failed_logins}"
    )
    assert codes == Counter({77: flushes})
    assert 1 <= len(with_stale) <= bound
    assert sum(fake_matomo.failed_logins.values()) < 20  # never locked out
    assert fake_matomo.hits == []
    assert stats(journal_path).counts[EntryState.PENDING] == len(keys)
    fixed = run_matokit("queue", "flush", env=env)
    assert fixed.code == 0, fixed
    assert stored(fake_matomo) == Counter(dict.fromkeys(keys, 1))


def test_with_the_default_cool_down_only_one_stale_token_request_is_ever_sent(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    old = int(time.time()) - 2 * 86400
    queued = run_matokit("track", "import", "-", "--queue", input=records(["o1"], at=old), env=env)
    assert queued.code == 0, queued
    stale = {**env, "MATOMO_TOKEN": STALE_TOKEN}
    codes = [run_matokit("queue", "flush", env=stale).code for _ in range(10)]
    assert codes == [77] * 10
    with_stale = [r for r in fake_matomo.requests if STALE_TOKEN.encode() in r.body]
    assert len(with_stale) == 1
