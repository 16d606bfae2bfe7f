"""The report cache on a real redis-server: same TTL rules, no token anywhere, one namespace per
profile, the lean lookup without redis-py, `cache stats|clear`, and Redis failing."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from matokit import cache, reportfetch, reports
from matokit.client import MatomoClient
from matokit.config import Settings, resolve
from matokit.errors import StorageError
from matokit.redisstore import resp
from matokit.redisstore.connection import forget_clients
from tests.clirunner import invoke
from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo
from tests.redisserver import RedisServer

DAY = 86400.0
PAST = {"idSite": 1, "period": "day", "date": "2026-11-01", "flat": 1}


def settings_for(
    fake: FakeMatomo,
    url: str,
    *,
    profile: str = "default",
    token: str = SUPERUSER_TOKEN,
    **env: str,
) -> Settings:
    config = Path(os.environ["HOME"]) / "config.toml"
    if not config.exists():
        config.write_text(
            "[profiles.default]\n[profiles.a]\n[profiles.b]\n"
            '[profiles.team2]\nredis_prefix = "team2"\n'
        )
    variables = {
        "MATOMO_TOKEN": token,
        "MATOKIT_CONFIG": str(config),
        "MATOKIT_PROFILE": profile,
        "MATOKIT_REDIS_URL": url,
        **env,
    }
    return resolve({"--url": fake.url}, env=variables)


def lean(settings: Settings, method: str, **options: Any) -> Any:
    """The lean Redis lookup of `method` with PAST's parameters."""
    params = {k: str(v) for k, v in PAST.items()}
    return cache.lookup_on_redis(
        settings, base_url=settings.require_url(), method=method, params=params, **options
    )


class Harness:
    """A client over the profile's cached session, and what reached the fake Matomo."""

    def __init__(self, fake: FakeMatomo, settings: Settings, **options: Any) -> None:
        self.fake = fake
        self.settings = settings
        self.session = cache.cached_session(settings, **options)
        self.session.timezones["1"] = "UTC"
        self.client = MatomoClient(
            base_url=settings.url, token=settings.token(), session=self.session
        )

    def calls(self, method: str) -> int:
        return sum(1 for r in self.fake.requests if f"method={method}" in r.query)

    def close(self) -> None:
        self.client.close()
        self.session.close()


@pytest.fixture
def harness(fake_matomo: FakeMatomo, redis_url: str) -> Iterator[Harness]:
    h = Harness(fake_matomo, settings_for(fake_matomo, redis_url))
    yield h
    h.close()


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def everything(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key of the server and its value (hashes flattened), as bytes."""
    found: dict[bytes, bytes] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            found[key] = client.get(key) or b""
        elif kind == b"hash":
            found[key] = b"\n".join(k + b"=" + v for k, v in client.hgetall(key).items())
        else:
            found[key] = kind
    return found


def test_second_identical_call_is_answered_from_redis(harness: Harness) -> None:
    first = harness.client.call("VisitsSummary.get", **PAST)
    second = harness.client.call("VisitsSummary.get", **PAST)
    assert first == second
    assert harness.calls("VisitsSummary.get") == 1
    harness.client.call("VisitsSummary.get", **{**PAST, "date": "2026-11-02"})
    assert harness.calls("VisitsSummary.get") == 2
    assert not harness.settings.cache_path.exists()  # nothing on disk


def test_every_key_is_under_the_profile_namespace_and_no_token_anywhere(
    harness: Harness, redis_url: str
) -> None:
    harness.client.call("SitesManager.getSiteFromId", idSite=1)
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.bulk([("Actions.getPageUrls", PAST), ("Events.getCategory", PAST)])
    stored = everything(raw(redis_url))
    assert stored
    assert all(key.startswith(b"matokit:{default}:cache:") for key in stored), list(stored)
    token = SUPERUSER_TOKEN.encode()
    responses = [v for k, v in stored.items() if b":cache:http:" in k]
    assert len(responses) == 3
    for key, value in stored.items():
        for blob in (key, value):
            assert token not in blob and token.upper() not in blob
    for value in responses:
        document = json.loads(value)  # JSON, never a pickle
        body = base64.b64decode(document["request"]["body"])
        assert b"token_auth=REDACTED" in body
        assert SUPERUSER_TOKEN not in json.dumps(document)


def test_the_cache_is_shared_whatever_the_token(fake_matomo: FakeMatomo, redis_url: str) -> None:
    first = Harness(fake_matomo, settings_for(fake_matomo, redis_url, token=SUPERUSER_TOKEN))
    first.client.call("VisitsSummary.get", **PAST)
    first.close()
    second = Harness(fake_matomo, settings_for(fake_matomo, redis_url, token=VIEW_TOKEN))
    second.client.call("VisitsSummary.get", **PAST)
    second.close()
    assert second.calls("VisitsSummary.get") == 1


def test_profiles_and_prefixes_are_separate_namespaces(
    fake_matomo: FakeMatomo, redis_url: str
) -> None:
    a = Harness(fake_matomo, settings_for(fake_matomo, redis_url, profile="a"))
    b = Harness(fake_matomo, settings_for(fake_matomo, redis_url, profile="b"))
    other = Harness(
        fake_matomo,
        settings_for(fake_matomo, redis_url, profile="team2"),
    )
    try:
        a.client.call("VisitsSummary.get", **PAST)
        b.client.call("VisitsSummary.get", **PAST)
        other.client.call("VisitsSummary.get", **PAST)
        assert a.calls("VisitsSummary.get") == 3
        keys = set(everything(raw(redis_url)))
        for namespace in (b"matokit:{a}", b"matokit:{b}", b"team2:{team2}"):
            assert any(k.startswith(namespace + b":cache:answer:") for k in keys), namespace
        a.client.call("VisitsSummary.get", **PAST)
        assert a.calls("VisitsSummary.get") == 3
    finally:
        for h in (a, b, other):
            h.close()


@pytest.mark.parametrize(
    ("tz", "clock_at", "ttl"),
    [
        ("UTC", "23:58:00", 120),  # today's report must not outlive midnight
        ("UTC", "12:00:00", 300),
        ("Europe/Paris", "22:59:00", 60),  # 23:59 in Paris
    ],
)
def test_answers_expire_with_the_ttl_of_the_site_zone(
    fake_matomo: FakeMatomo, redis_url: str, tz: str, clock_at: str, ttl: float
) -> None:
    day = datetime.now(UTC).date().isoformat()
    moment = datetime.fromisoformat(f"{day} {clock_at}").replace(tzinfo=UTC).timestamp()
    h = Harness(fake_matomo, settings_for(fake_matomo, redis_url), clock=lambda: moment)
    h.session.timezones["1"] = tz
    try:
        h.client.call("VisitsSummary.get", idSite=1, period="day", date="today")
    finally:
        h.close()
    client = raw(redis_url)
    (answer,) = client.keys("matokit:{default}:cache:answer:*")
    (response,) = client.keys("matokit:{default}:cache:http:*")
    assert ttl - 3 <= client.pttl(answer) / 1000 <= ttl
    assert ttl - 3 <= client.ttl(response) - 60 <= ttl + 1  # requests-cache's offset: 60 s
    expires = float(client.get(answer).partition(b"\n")[0])
    assert abs(expires - (time.time() + ttl)) < 3


def test_past_periods_are_kept_a_day(harness: Harness, redis_url: str) -> None:
    harness.client.call("VisitsSummary.get", **PAST)
    client = raw(redis_url)
    (answer,) = client.keys("matokit:{default}:cache:answer:*")
    assert DAY - 5 <= client.ttl(answer) <= DAY


def test_lean_lookup_serves_fresh_answers_only_and_counts_hits(harness: Harness) -> None:
    answer = harness.client.call("VisitsSummary.get", **PAST)
    settings = harness.settings
    found = lean(settings, "VisitsSummary.get")
    assert found == answer
    later = time.time() + DAY + 60
    assert lean(settings, "VisitsSummary.get", now=later) is None
    other = lean(settings, "Actions.getPageUrls")
    assert other is None
    report = reports.BY_NAME["visits"]
    params = {k: str(v) for k, v in PAST.items()}
    assert cache.cached_answer(settings, report, params) == answer
    stats = cache.profile_stats(settings)
    assert (stats.backend, stats.entries, stats.hits, stats.misses) == ("redis", 1, 2, 1)


def test_an_answer_in_another_format_is_counted_but_never_served(
    harness: Harness, redis_url: str
) -> None:
    harness.client.call_raw("VisitsSummary.get", format="xml", **PAST)
    params = {k: str(v) for k, v in PAST.items()}
    assert (
        cache.lookup_on_redis(
            harness.settings,
            base_url=harness.fake.url,
            method="VisitsSummary.get",
            params=params,
            fmt="XML",
        )
        is None
    )
    assert cache.profile_stats(harness.settings).entries == 1


def test_refresh_replaces_the_answer(harness: Harness, redis_url: str) -> None:
    answer = harness.client.call("VisitsSummary.get", **PAST)
    client = raw(redis_url)
    (key,) = client.keys("matokit:{default}:cache:answer:*")
    head = client.get(key).partition(b"\n")[0]
    client.set(key, head + b'\n"stale"', keepttl=True)
    settings = harness.settings
    assert lean(settings, "VisitsSummary.get") == "stale"
    harness.session.refresh = True
    harness.client.call("VisitsSummary.get", **PAST)
    assert lean(settings, "VisitsSummary.get") == answer


def test_stats_and_clear_touch_only_the_profile_cache(harness: Harness, redis_url: str) -> None:
    client = raw(redis_url)
    client.set("matokit:{default}:journal:something", b"kept")
    client.set("matokit:{other}:cache:answer:x", b"kept")
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.call("VisitsSummary.get", idSite=1, period="day", date="today")
    result = cache.profile_stats(harness.settings)
    assert (result.entries, result.fresh, result.expired) == (2, 2, 0)
    assert (result.hits, result.misses) == (1, 2)
    assert result.exists and result.size_bytes > 0
    assert result.path.endswith(" matokit:{default}:cache:*")
    # An answer whose expiry has passed (another host's clock, say) goes with --expired.
    (today,) = [k for k in client.keys("matokit:{default}:cache:answer:*") if b"today" in k]
    client.set(today, b"1.000\n{}", keepttl=True)
    assert cache.profile_stats(harness.settings).expired == 1
    assert cache.clear(harness.settings, expired_only=True) == 1
    assert cache.clear(harness.settings) == 1
    after = cache.profile_stats(harness.settings)
    assert (after.entries, after.hits, after.misses, after.exists) == (0, 0, 0, False)
    assert client.get("matokit:{default}:journal:something") == b"kept"
    assert client.get("matokit:{other}:cache:answer:x") == b"kept"


def test_a_password_protected_server(fake_matomo: FakeMatomo, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth", requirepass="s3cret-pass").start()
    try:
        settings = settings_for(fake_matomo, server.url, MATOKIT_REDIS_PASSWORD="s3cret-pass")
        h = Harness(fake_matomo, settings)
        answer = h.client.call("VisitsSummary.get", **PAST)
        h.client.call("VisitsSummary.get", **PAST)
        h.close()
        assert h.calls("VisitsSummary.get") == 1
        assert lean(settings, "VisitsSummary.get") == answer
        in_url = settings_for(fake_matomo, server.url.replace("//", "//:s3cret-pass@"))
        assert lean(in_url, "VisitsSummary.get") == answer
        wrong = settings_for(fake_matomo, server.url, MATOKIT_REDIS_PASSWORD="wrong-pass")
        assert lean(wrong, "VisitsSummary.get") is None
        forget_clients()
        with pytest.raises(StorageError, match="refused the credentials") as caught:
            cache.profile_stats(wrong)
        assert "wrong-pass" not in str(caught.value) and "s3cret" not in str(caught.value)
    finally:
        forget_clients()
        server.stop()


def test_redis_down_reports_still_answer_from_matomo(
    fake_matomo: FakeMatomo, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(fake_matomo, redis_server.url)
    report = reports.BY_NAME["visits"]
    params = {k: str(v) for k, v in PAST.items()}
    first = reportfetch.fetch(settings, report, params)
    redis_server.kill()
    forget_clients()
    with caplog.at_level(logging.WARNING, logger="matokit.cache"):
        again = reportfetch.fetch(settings, report, params)
    assert again == first
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    about_cache = [w for w in warnings if "Continuing without the report cache" in w]
    assert len(about_cache) == 1, warnings  # (the token memory may warn too: a file fallback)
    assert "Redis is unreachable" in about_cache[0]
    with pytest.raises(StorageError, match="Redis is unreachable"):
        cache.profile_stats(settings)
    with pytest.raises(StorageError, match="Redis is unreachable"):
        cache.clear(settings)
    redis_server.start()
    forget_clients()
    assert cache.profile_stats(settings).entries == 2  # AOF: the cache survived the crash


def test_cli_cache_stats_and_clear_on_redis(
    fake_matomo: FakeMatomo,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    url = redis_server.url.replace("//", "//:pw-in-url@")
    redis_server.config["requirepass"] = "pw-in-url"
    redis_server.stop()
    redis_server.start()
    monkeypatch.setenv("MATOKIT_REDIS_URL", url)
    forget_clients()
    assert invoke(capsys, "report", "visits", "--format", "json").code == 0
    assert invoke(capsys, "report", "visits", "--format", "json").code == 0
    stats = invoke(capsys, "cache", "stats", "--format", "json")
    assert stats.code == 0, stats.stderr
    view = json.loads(stats.stdout)
    assert view["backend"] == "redis"
    assert (view["entries"], view["hits"], view["misses"]) == (2, 1, 2)
    assert view["path"] == f"redis://127.0.0.1:{redis_server.port}/0 matokit:{{default}}:cache:*"
    text = invoke(capsys, "cache", "stats")
    assert text.code == 0 and "size in memory" in text.stdout
    cleared = invoke(capsys, "cache", "clear")
    assert cleared.code == 0 and "Removed 2 entries from redis://127.0.0.1" in cleared.stderr
    redis_server.kill()
    forget_clients()
    down = invoke(capsys, "cache", "stats")
    assert down.code == 74, down
    assert "cannot read the report cache on Redis" in down.stderr
    for result in (stats, text, cleared, down):
        assert "pw-in-url" not in result.stdout + result.stderr


def test_the_lean_path_answers_from_redis_without_redis_py(
    fake_matomo: FakeMatomo, redis_url: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MATOMO_", "MATOKIT_"))},
        "MATOMO_URL": fake_matomo.url,
        "MATOMO_TOKEN": SUPERUSER_TOKEN,
        "MATOMO_SITE_ID": "1",
        "MATOKIT_REDIS_URL": redis_url,
    }
    args = ["report", "visits", "--format", "json"]
    code = (
        "import sys\n"
        "from matokit.cli.report_show import try_cached\n"
        f"code = try_cached({args!r})\n"
        "heavy = [m for m in ('redis', 'requests', 'requests_cache', 'typer', 'rich')"
        " if m in sys.modules]\n"
        "print(repr((code, heavy)), file=sys.stderr)\n"
    )

    def lean_run() -> tuple[int | None, list[str]]:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        result: tuple[int | None, list[str]] = eval(done.stderr.strip().splitlines()[-1])
        return result

    assert lean_run() == (None, [])  # a miss: the normal path will ask Matomo
    normal = subprocess.run(
        [sys.executable, "-m", "matokit", *args], env=env, capture_output=True, text=True
    )
    assert normal.returncode == 0, normal.stderr
    before = len(fake_matomo.requests)
    assert lean_run() == (0, [])
    assert len(fake_matomo.requests) == before


# --- the lean client's URL handling, and TLS -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "password", "expected"),
    [
        ("redis://h:7000/3", None, resp.Endpoint("redis", host="h", port=7000, db=3)),
        ("redis://h", "pw", resp.Endpoint("redis", host="h", password="pw")),
        (
            "redis://user:p%40ss@h/0",
            "other",
            resp.Endpoint("redis", host="h", username="user", password="p@ss"),
        ),
        ("unix:///run/redis.sock?db=2", None, resp.Endpoint("unix", path="/run/redis.sock", db=2)),
        (
            "rediss://h:6380/1?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required",
            None,
            resp.Endpoint("rediss", host="h", port=6380, db=1, ca_file="/ca.pem"),
        ),
        (
            "redis://h/0?socket_timeout=3&health_check_interval=10",
            None,
            resp.Endpoint("redis", "h"),
        ),
    ],
)
def test_lean_client_reads_the_url_like_redis_py(
    url: str, password: str | None, expected: resp.Endpoint
) -> None:
    assert resp.parse(url, password) == expected


@pytest.mark.parametrize(
    "url",
    [
        "rediss://h/0?ssl_cert_reqs=none",  # weaker TLS than the default: never on the lean path
        "rediss://h/0?ssl_check_hostname=false",
        "rediss://h/0?ssl_certfile=/c.pem",
        "redis://h/0?protocol=3",
        "redis+sentinel://h/0",
    ],
)
def test_lean_client_leaves_what_it_does_not_know_to_redis_py(url: str) -> None:
    with pytest.raises(resp.LeanUnsupported):
        resp.parse(url)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    """A redis-server with a TLS port, its certificate signed by a CA of the test's own."""
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_key, ca, key, csr, cert = (
        certs / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem")
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    ext = certs / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    from tests.redisserver import _free_port

    tls_port = _free_port()
    server = RedisServer(
        tmp_path / "tls",
        **{
            "tls-port": str(tls_port),
            "tls-cert-file": str(cert),
            "tls-key-file": str(key),
            "tls-ca-cert-file": str(ca),
            "tls-auth-clients": "no",
        },
    )
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"redis-server without TLS: {exc}")
    try:
        yield server, tls_port, ca
    finally:
        forget_clients()
        server.stop()


def test_over_tls_the_lean_path_verifies_the_server_like_redis_py(
    fake_matomo: FakeMatomo, tls_server: tuple[RedisServer, int, Path]
) -> None:
    _, port, ca = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    settings = settings_for(fake_matomo, url)
    h = Harness(fake_matomo, settings)
    answer = h.client.call("VisitsSummary.get", **PAST)
    h.close()
    assert lean(settings, "VisitsSummary.get") == answer
    assert cache.profile_stats(settings).hits == 1
    # Without the test CA the certificate is not trusted: a miss, then a clear StorageError.
    untrusted = settings_for(fake_matomo, f"rediss://127.0.0.1:{port}/0")
    assert lean(untrusted, "VisitsSummary.get") is None
    forget_clients()
    with pytest.raises(StorageError, match="TLS handshake failed"):
        cache.profile_stats(untrusted)


def test_an_acl_user_confined_to_the_prefix_is_enough_for_the_cache(
    fake_matomo: FakeMatomo,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The ACL line docs/fleet.md recommends."""
    admin = raw(redis_server.url)
    admin.execute_command(
        "ACL", "SETUSER", "matokit", "on", ">acl-pass-1", "~matokit:*", "+@all", "-@dangerous"
    )
    admin.set("elsewhere", b"not ours")
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOKIT_REDIS_URL", f"redis://matokit@127.0.0.1:{redis_server.port}/0")
    monkeypatch.setenv("MATOKIT_REDIS_PASSWORD", "acl-pass-1")
    forget_clients()
    for args in (("report", "visits"), ("report", "visits"), ("report", "summary")):
        assert invoke(capsys, *args, "--format", "json").code == 0
    stats = invoke(capsys, "cache", "stats", "--format", "json")
    assert stats.code == 0, stats.stderr
    assert json.loads(stats.stdout)["hits"] >= 2
    assert invoke(capsys, "cache", "clear", "--expired").code == 0
    cleared = invoke(capsys, "cache", "clear")
    assert cleared.code == 0 and "Removed 3 entries" in cleared.stderr, cleared.stderr
    assert admin.get("elsewhere") == b"not ours"


def test_health_and_config_show_name_the_cache_on_redis(
    fake_matomo: FakeMatomo,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    monkeypatch.setenv("MATOKIT_REDIS_URL", redis_server.url.replace("//", "//:pw-9-secret@"))
    forget_clients()
    shown = invoke(capsys, "config", "show", "--format", "json")
    assert shown.code == 0, shown.stderr
    where = f"redis://127.0.0.1:{redis_server.port}/0 matokit:{{default}}:cache:*"
    assert json.loads(shown.stdout)["cache"] == where
    healthy = invoke(capsys, "health", "--check", "cache", "--format", "json")
    (check,) = json.loads(healthy.stdout)["checks"]
    assert (healthy.code, check["status"]) == (0, "OK"), healthy.stdout
    assert check["summary"].startswith("cache on Redis readable: 0 entries")
    redis_server.kill()
    forget_clients()
    down = invoke(capsys, "health", "--check", "cache", "--format", "json")
    (check,) = json.loads(down.stdout)["checks"]
    assert (down.code, check["status"]) == (1, "WARNING"), down.stdout
    assert "Redis is unreachable" in check["summary"]
    assert check["metrics"] == {"size_bytes": 0}
    for result in (shown, healthy, down):
        assert "pw-9-secret" not in result.stdout + result.stderr


def test_over_a_unix_socket(fake_matomo: FakeMatomo, tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    server = RedisServer(tmp_path / "unix", unixsocket=str(sock), unixsocketperm="700").start()
    try:
        settings = settings_for(fake_matomo, f"unix://{sock}?db=2")
        h = Harness(fake_matomo, settings)
        answer = h.client.call("VisitsSummary.get", **PAST)
        h.close()
        assert lean(settings, "VisitsSummary.get") == answer
        assert raw(server.url.replace("/0", "/2")).dbsize() > 0  # in the database the URL names
    finally:
        forget_clients()
        server.stop()
