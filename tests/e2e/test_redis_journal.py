"""The journal on Redis, end to end: real `matokit` processes, a real redis-server, the fake Matomo.

Each hit carries its own key in custom dimension 1, so the stored hits can be counted per key:
a missing key is a lost hit, a key stored twice a duplicate.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

from matokit.journal import JournalStats
from matokit.redisstore.connection import RedisTarget, forget_clients
from matokit.redisstore.journal import RedisJournal
from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.e2e.test_guarantees import flush_until_empty, records, stored
from tests.fakematomo import FakeMatomo, Fault
from tests.redisserver import RedisServer

NAMESPACE = "matokit:{default}"  # the default profile's


def journal_stats(url: str, password: str | None = None) -> JournalStats:
    target = RedisTarget(url=url, namespace=NAMESPACE, password=password)
    try:
        with RedisJournal(target) as journal:
            return journal.stats()
    finally:
        forget_clients()


def host(tmp_path: Path, name: str, env: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of one "host": its own HOME and MatoKit directories, the shared Redis."""
    home = tmp_path / name
    return {
        **env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "MATOKIT_CONFIG": str(home / ".config" / "matokit" / "config.toml"),
        "MATOKIT_CACHE_DIR": str(home / ".cache" / "matokit"),
        "MATOKIT_DATA_DIR": str(home / ".local" / "share" / "matokit"),
        **extra,
    }


def test_two_flushers_share_one_redis_journal_and_deliver_every_hit_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    redis_url: str,
    tmp_path: Path,
) -> None:
    keys = [f"f{i}" for i in range(1200)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    # Two cron jobs of one profile: the journal on Redis, the data directory (and with it the
    # flush lock until it moves to Redis too) shared; everything else their own.
    data = str(tmp_path / "shared-data")
    writer = host(tmp_path, "a", env, MATOKIT_REDIS_URL=redis_url, MATOKIT_DATA_DIR=data)
    other = host(tmp_path, "b", env, MATOKIT_REDIS_URL=redis_url, MATOKIT_DATA_DIR=data)
    imported = run_matokit("track", "import", str(source), "--queue", env=writer)
    assert imported.code == 0, imported
    assert not list(Path(data).rglob("journal.sqlite")), "the journal must be on Redis only"
    assert journal_stats(redis_url).queued == len(keys)
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.02))
    flushers = [
        spawn_matokit("queue", "flush", "--batch-size", "10", "--wait", "--format", "json", env=e)
        for e in (writer, other)
    ]
    delivered = 0
    for proc in flushers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        delivered += json.loads(out)["delivered"]
    counts = stored(fake_matomo)
    print(f"\n[2 flushers, one Redis journal] delivered {delivered}, stored {sum(counts.values())}")
    assert delivered == len(keys)
    assert counts == Counter(dict.fromkeys(keys, 1))
    after = journal_stats(redis_url)
    assert (after.total, after.delivered_keys) == (0, len(keys))
    status = run_matokit("queue", "status", "--format", "json", env=other)
    assert status.code == 0, status
    view = json.loads(status.stdout)
    assert (view["journal"], view["queued"], view["delivered_keys"]) == (
        redis_url,
        0,
        len(keys),
    )


def _helper_line(pid: Path) -> bytes | None:
    """The command line of process `pid` when it is an import helper."""
    if not pid.name.isdigit():
        return None
    try:
        line = (pid / "cmdline").read_bytes()
    except OSError:
        return None
    return line if b"_import_worker" in line else None


def test_a_large_import_is_journaled_on_redis_by_both_processes_with_a_password(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    password = "r3dis-" + "9" * 20
    server = RedisServer(tmp_path / "redis", requirepass=password).start()
    try:
        keys = [f"L{i}" for i in range(15_000)]  # long lines: over 4 MiB with few hits to send
        source = tmp_path / "large.jsonl"
        source.write_text(records(keys, name="x" * 250))
        assert source.stat().st_size > 4 << 20  # split: the helper process journals half
        on_redis = {**env, "MATOKIT_REDIS_URL": server.url, "MATOKIT_REDIS_PASSWORD": password}
        proc = spawn_matokit("track", "import", str(source), "--queue", env=on_redis)
        command_lines: list[bytes] = []
        while proc.poll() is None:  # the helper's command line, as `ps` shows it to anyone
            command_lines += [line for line in map(_helper_line, Path("/proc").iterdir()) if line]
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert command_lines, "the import helper never started"
        assert not any(password.encode() in line for line in command_lines)
        assert not any(str(server.port).encode() in line for line in command_lines)
        assert password not in out + err
        stats = journal_stats(server.url, password)
        assert (stats.queued, stats.total) == (len(keys), len(keys))
        again = run_matokit(
            "track", "import", str(source), "--format", "json", env=on_redis, timeout=180
        )
        assert again.code == 0, again
        assert json.loads(again.stdout)["duplicates"] == len(keys)
        assert stored(fake_matomo) == Counter(dict.fromkeys(keys, 1))
        assert journal_stats(server.url, password).total == 0
    finally:
        server.stop()


def test_killed_flushers_on_redis_lose_nothing_and_duplicate_at_most_a_batch_per_kill(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    redis_url: str,
    tmp_path: Path,
) -> None:
    keys = [f"k{i}" for i in range(1500)]
    source = tmp_path / "hits.jsonl"
    source.write_text(records(keys))
    # One lane: the flush keeps its old pace, so the kills land mid-flight.
    on_redis = {**env, "MATOKIT_REDIS_URL": redis_url, "MATOKIT_CONCURRENCY": "1"}
    assert run_matokit("track", "import", str(source), "--queue", env=on_redis).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.1))
    batch, kills, rng = 20, 8, random.Random(20261126)
    for _ in range(kills):
        proc = spawn_matokit("queue", "flush", "--batch-size", batch, env=on_redis)
        time.sleep(rng.uniform(0.4, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the flusher ended before it was killed"
    fake_matomo.clear_faults()
    flush_until_empty(run_matokit, on_redis, "--batch-size", str(batch), rounds=30)
    counts = stored(fake_matomo)
    missing = [k for k in keys if counts[k] == 0]
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    after = journal_stats(redis_url)
    print(f"\n[Redis, kill -9 x{kills}, batch {batch}] missing {len(missing)}, dup {duplicates}")
    assert missing == []
    assert duplicates <= kills * batch
    assert after.delivered_unconfirmed >= sum(1 for c in counts.values() if c > 1)
    assert after.queued == 0


def test_redis_down_is_exit_74_and_nothing_is_written_elsewhere(
    run_matokit: RunMatokit, env: dict[str, str], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = {**env, "MATOKIT_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    for args in (("queue", "status"), ("queue", "flush"), ("queue", "list")):
        result = run_matokit(*args, env=down)
        assert result.code == 74, result
        assert "Redis is unreachable" in result.stderr
        assert "Traceback" not in result.output
