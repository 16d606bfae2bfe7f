"""Report cache on Redis: a cached `matokit report visits` as a whole process, on Redis vs on
SQLite vs `matokit --version`, in the same run (round-robin, so noise hits all alike).

A real `redis-server` runs on a free loopback port with `appendonly yes` and `appendfsync
always` (the configuration docs/fleet.md recommends for the journal; a hit's counter is then
fsynced like SQLite's). The fake Matomo answers with 200 ms latency, so a request would show;
requests are counted with the cache's own counters.

Figures:
  * the Redis cache hit vs `--version` (target as on SQLite: <= 1.5x);
  * the Redis cache hit vs the SQLite cache hit;
  * requests per Redis cache hit (must be 0);
  * `import redis` alone vs `--version`: what the lean path's standard-library client avoids.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _util import MATOKIT, _wall, figure, isolated_env, standalone_server

TARGET_RATIO = 1.5
LATENCY = 0.2
REPORT = ["report", "visits", "--format", "json"]


def run(quick: bool) -> list[dict[str, Any]]:
    from report_cache import _stats, _track

    from tests.fakematomo import SUPERUSER_TOKEN
    from tests.redisserver import RedisServer

    runs = 5 if quick else 21
    with (
        tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp,
        standalone_server(LATENCY) as url,
    ):
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            _track(url)
            sqlite_env = isolated_env(
                Path(tmp) / "sqlite",
                {
                    "MATOMO_URL": url,
                    "MATOMO_TOKEN": SUPERUSER_TOKEN,
                    "MATOMO_SITE_ID": "1",
                    "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
                },
            )
            sqlite_env.pop("PYTHONDONTWRITEBYTECODE", None)
            # Another "host": its own HOME and directories, the same Redis.
            own = isolated_env(Path(tmp) / "redis-host")
            dirs = ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")
            redis_env = {
                **sqlite_env,
                **{k: v for k, v in own.items() if k in dirs or k.startswith("MATOKIT_")},
                "MATOKIT_REDIS_URL": server.url,
            }
            for env in (sqlite_env, redis_env):
                subprocess.run([str(MATOKIT), *REPORT], env=env, capture_output=True, check=True)
            before = _stats(redis_env)
            commands = {
                "--version": ([str(MATOKIT), "--version"], sqlite_env),
                "sqlite": ([str(MATOKIT), *REPORT], sqlite_env),
                "redis": ([str(MATOKIT), *REPORT], redis_env),
                "import redis": ([sys.executable, "-c", "import redis"], sqlite_env),
            }
            walls = _walls(commands, runs)
            after = _stats(redis_env)
        finally:
            server.stop()
    assert after["backend"] == "redis", after
    hits = after["hits"] - before["hits"]
    requests_per_hit = (after["misses"] - before["misses"]) / max(hits, 1)
    ms = {name: value * 1000 for name, value in walls.items()}
    version = ms["--version"]
    return [
        figure(
            "report visits, cache hit on Redis (whole process)",
            ms["redis"],
            "ms",
            "matokit --version",
            version,
            target=f"<= {TARGET_RATIO}x --version, 0 requests",
            met=ms["redis"] <= TARGET_RATIO * version and requests_per_hit == 0,
        ),
        figure(
            "report visits, cache hit on Redis vs on SQLite",
            ms["redis"],
            "ms",
            "cache hit on SQLite",
            ms["sqlite"],
            target="<= 1.2x SQLite",
            met=ms["redis"] <= 1.2 * ms["sqlite"],
        ),
        figure(
            "requests per cache hit on Redis",
            requests_per_hit,
            "requests",
            "none allowed",
            0.0,
            target="0",
            met=requests_per_hit == 0 and hits > 0,
        ),
        figure(
            "python -c 'import redis' (avoided by the lean path)",
            ms["import redis"],
            "ms",
            "matokit --version",
            version,
        ),
    ]


def _walls(commands: dict[str, tuple[list[str], dict[str, str]]], runs: int) -> dict[str, float]:
    """Median wall times, one environment per command, round-robin after one warm-up each."""
    for cmd, env in commands.values():
        _wall(cmd, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(max(1, runs)):
        for name, (cmd, env) in commands.items():
            samples[name].append(_wall(cmd, env))
    return {name: statistics.median(values) for name, values in samples.items()}
