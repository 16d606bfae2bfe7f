"""End to end: the report cache on a real redis-server, shared by "hosts" (separate HOME, cache
and data directories, one Redis), against the fake Matomo."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import RunMatokit
from tests.e2e.test_report import api_requests, tracked  # noqa: F401  (the fixture)
from tests.fakematomo import VIEW_TOKEN, FakeMatomo
from tests.redisserver import RedisServer


def host(tmp_path: Path, name: str, redis_url: str) -> dict[str, str]:
    """The environment of one host: its own HOME, config, cache and data dirs; shared Redis."""
    home = tmp_path / name
    dirs = {
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local" / "share",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        **{k: str(v) for k, v in dirs.items()},
        "MATOKIT_CONFIG": str(dirs["XDG_CONFIG_HOME"] / "matokit" / "config.toml"),
        "MATOKIT_CACHE_DIR": str(dirs["XDG_CACHE_HOME"] / "matokit"),
        "MATOKIT_DATA_DIR": str(dirs["XDG_DATA_HOME"] / "matokit"),
        "MATOKIT_REDIS_URL": redis_url,
    }


def test_a_report_fetched_on_host_a_is_a_cache_hit_on_host_b(
    run_matokit: RunMatokit,
    env: dict[str, str],
    tracked: FakeMatomo,  # noqa: F811
    redis_url: str,
    tmp_path: Path,
) -> None:
    host_a = {**env, **host(tmp_path, "host-a", redis_url)}
    # Host B has another token (view access): the token is not part of any cache key.
    host_b = {**env, **host(tmp_path, "host-b", redis_url), "MATOMO_TOKEN": VIEW_TOKEN}
    asked = [
        ("report", "visits", "--format", "json"),
        ("report", "pages", "--format", "csv"),
        ("report", "summary", "--format", "json"),  # a bulk request: never the lean path
    ]
    fetched = {}
    for args in asked:
        first = run_matokit(*args, env=host_a)
        assert first.code == 0, first
        fetched[args] = first.stdout
    before = api_requests(tracked)
    assert before == 4  # the site's settings, then each report once

    for args in asked:
        hit = run_matokit(*args, env=host_b)
        assert hit.code == 0, hit
        assert hit.stdout == fetched[args]
        assert hit.stderr == ""
    table = run_matokit("report", "visits", env=host_b)  # same answer, other rendering
    assert table.code == 0 and "Visits" in table.stdout, table
    logged = run_matokit("-v", "report", "visits", "--format", "json", env=host_b)
    assert logged.code == 0 and "answered from the cache" in logged.stderr, logged
    assert api_requests(tracked) == before  # 0 requests from host B

    assert not list((tmp_path / "host-b").rglob("*.sqlite"))  # nothing cached on B's disk
    stats = run_matokit("cache", "stats", "--format", "json", env=host_b)
    assert stats.code == 0, stats
    view = json.loads(stats.stdout)
    assert view["backend"] == "redis"
    assert view["entries"] == 4 and view["misses"] == 4 and view["hits"] >= 5

    cleared = run_matokit("cache", "clear", env=host_b)  # clears it for every host
    assert cleared.code == 0 and "Removed 4 entries" in cleared.stderr, cleared
    again = run_matokit("report", "visits", "--format", "json", env=host_a)
    assert again.code == 0, again
    assert api_requests(tracked, "VisitsSummary.get") == 2


def test_with_redis_down_a_report_still_answers_with_one_warning(
    run_matokit: RunMatokit,
    env: dict[str, str],
    tracked: FakeMatomo,  # noqa: F811
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    url = redis_server.url.replace("//", "//:hunter2-pass@")
    redis_server.config["requirepass"] = "hunter2-pass"
    redis_server.stop()
    redis_server.start()
    on_host = {**env, **host(tmp_path, "host", url)}
    cached = run_matokit("report", "visits", "--format", "json", env=on_host)
    assert cached.code == 0, cached
    redis_server.kill()
    down = run_matokit("report", "visits", "--format", "json", env=on_host)
    assert down.code == 0, down
    assert down.stdout == cached.stdout
    lines = down.stderr.strip().splitlines()
    # One warning per shared piece that fell back: the report cache, and the token memory
    # (which falls back to this host's file); no traceback.
    cache = [line for line in lines if "without the report cache" in line]
    assert len(cache) == 1 and "Redis is unreachable" in cache[0], down
    assert all(line.startswith("matokit: warning:") for line in lines), down
    assert len(lines) <= 2, down
    assert "hunter2" not in down.stderr
    stats = run_matokit("cache", "stats", env=on_host)
    assert stats.code == 74, stats
    assert "hunter2" not in stats.stdout + stats.stderr
