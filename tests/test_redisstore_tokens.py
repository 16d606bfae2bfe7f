"""The rejected-token memory on a real redis-server: one cool-down for every host, the first use
of a token by one process at a time, the file as the fallback when Redis fails."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from matokit.client import MatomoClient
from matokit.errors import AuthenticationError, TokenCoolDownError
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.fallback import forget_failures
from matokit.redisstore.tokens import RedisTokenMemory
from matokit.tokenmemory import TokenMemory
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo
from tests.redisserver import RedisServer

TOKEN = "ab" * 16
OTHER = "cd" * 16
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NAMESPACE = "matokit:{default}"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _warn_again() -> None:
    forget_failures()


def target_at(url: str) -> RedisTarget:
    return RedisTarget(url=url, namespace=NAMESPACE)


def host_memory(
    url: str, home: Path, clock: Callable[[], float], **options: Any
) -> tuple[RedisTokenMemory, TokenMemory]:
    """One "host": its own data directory (the fallback file), the shared Redis."""
    local = TokenMemory(home / "rejected-token.json", clock=clock, cooldown=600)
    shared = RedisTokenMemory(target_at(url), fallback=local, clock=clock, cooldown=600, **options)
    return shared, local


def everything_in(url: str) -> bytes:
    client = redis.Redis.from_url(url)
    try:
        parts = []
        for key in client.keys("*"):
            parts.append(key)
            if client.type(key) == b"hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
        return b"\n".join(parts)
    finally:
        client.close()


def test_a_rejection_on_one_host_holds_on_every_host_until_the_cool_down_ends(
    redis_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    a, _ = host_memory(redis_url, tmp_path / "a", clock)
    b, b_file = host_memory(redis_url, tmp_path / "b", clock)
    a.check(TOKEN)
    a.record_rejection(TOKEN, "Unable to authenticate with the provided token.")
    clock.now += 599
    with pytest.raises(TokenCoolDownError) as caught:
        b.check(TOKEN)
    error = caught.value
    assert (error.rejected_at, error.until) == (T0, T0 + 600)
    assert "2023-11-14 22:13:20 UTC" in error.message and "Unable to authenticate" in error.message
    assert error.hint is not None and "MATOMO_TOKEN" in error.hint
    b_file.check(TOKEN)  # host b's own file knows nothing: the memory is on Redis
    clock.now += 1
    b.check(TOKEN)  # the cool-down is over: the token may be tried once more


def test_a_changed_token_is_sent_at_once(redis_url: str, tmp_path: Path) -> None:
    clock = Clock()
    a, _ = host_memory(redis_url, tmp_path / "a", clock)
    b, _ = host_memory(redis_url, tmp_path / "b", clock)
    a.record_rejection(TOKEN, "Unable to authenticate")
    b.check(OTHER)


def test_the_cool_down_holds_across_processes(redis_url: str, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from matokit.redisstore.connection import RedisTarget\n"
        "from matokit.redisstore.tokens import RedisTokenMemory\n"
        "from matokit.tokenmemory import TokenMemory\n"
        "target = RedisTarget(url=sys.argv[1], namespace='matokit:{default}')\n"
        "local = TokenMemory(Path(sys.argv[2]) / 'm.json')\n"
        "RedisTokenMemory(target, fallback=local).record_rejection(sys.argv[3], 'Unable to "
        "authenticate')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    other = tmp_path / "other-host"
    subprocess.run([sys.executable, "-c", code, redis_url, str(other), TOKEN], check=True, env=env)
    memory, _ = host_memory(redis_url, tmp_path / "here", time.time)
    with pytest.raises(TokenCoolDownError):
        memory.check(TOKEN)


def test_redis_holds_a_salted_hash_and_the_redacted_message_never_the_token(
    redis_url: str, tmp_path: Path
) -> None:
    memory, _ = host_memory(redis_url, tmp_path / "a", Clock())
    memory.check(TOKEN)
    memory.record_rejection(TOKEN, f"bad token {TOKEN} in message")
    stored = everything_in(redis_url)
    assert TOKEN.encode() not in stored
    assert b"bad token *** in message" in stored
    client = redis.Redis.from_url(redis_url)
    key = f"{NAMESPACE}:token:rejected"
    assert 0 < client.pttl(key) <= (2 * 600 + 60) * 1000  # it expires when untouched
    client.close()


def test_a_hash_made_with_another_salt_is_adopted(redis_url: str, tmp_path: Path) -> None:
    clock = Clock()
    first, _ = host_memory(redis_url, tmp_path / "a", clock)
    first.record_rejection(TOKEN, "x")
    later, _ = host_memory(redis_url, tmp_path / "b", clock)
    later._salt = "a-salt-of-its-own"  # as if it had cached a salt of an expired hash
    with pytest.raises(TokenCoolDownError):
        later.check(TOKEN)


def test_a_rejection_dated_far_in_the_future_does_not_block_forever(
    redis_url: str, tmp_path: Path
) -> None:
    future, _ = host_memory(redis_url, tmp_path / "a", Clock(T0 + 10 * 86400))
    future.record_rejection(TOKEN, "x")
    now, _ = host_memory(redis_url, tmp_path / "b", Clock(T0))
    now.check(TOKEN)


def test_clear_forgets_on_redis_and_in_the_file(redis_url: str, tmp_path: Path) -> None:
    memory, local = host_memory(redis_url, tmp_path / "a", Clock())
    memory.record_rejection(TOKEN, "x")
    local.record_rejection(TOKEN, "x")
    memory.clear()
    memory.check(TOKEN)
    local.check(TOKEN)


# --- the first use of a token: one process at a time -----------------------------------------


def test_while_one_host_sends_a_new_token_first_the_others_wait_and_learn_the_rejection(
    redis_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    first, _ = host_memory(redis_url, tmp_path / "a", clock)
    first.check(TOKEN)  # takes the probe: it sends the token first

    def meanwhile(_: float) -> None:
        first.record_rejection(TOKEN, "Unable to authenticate")  # its answer comes back

    waiting, _ = host_memory(redis_url, tmp_path / "b", clock, sleep=meanwhile)
    with pytest.raises(TokenCoolDownError):
        waiting.check(TOKEN)


def test_once_matomo_accepted_the_token_everyone_sends_it_without_waiting(
    redis_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    first, _ = host_memory(redis_url, tmp_path / "a", clock)
    first.check(TOKEN)
    slept: list[float] = []

    def meanwhile(seconds: float) -> None:
        slept.append(seconds)
        first.record_acceptance(TOKEN)

    second, _ = host_memory(redis_url, tmp_path / "b", clock, sleep=meanwhile)
    second.check(TOKEN)
    assert len(slept) == 1
    third, _ = host_memory(redis_url, tmp_path / "c", clock, sleep=pytest.fail)
    third.check(TOKEN)  # accepted recently: no wait at all
    clock.now += 61  # the acceptance is trusted a minute: then one process probes again
    third.check(TOKEN)
    fourth, _ = host_memory(redis_url, tmp_path / "d", clock, probe=0.2)
    fourth.check(TOKEN)  # third holds the probe and never answers: waits one probe, then sends


def test_a_request_without_a_verdict_lets_the_next_host_try(redis_url: str, tmp_path: Path) -> None:
    clock = Clock()
    first, _ = host_memory(redis_url, tmp_path / "a", clock)
    first.check(TOKEN)
    first.release(TOKEN)  # e.g. Matomo unreachable: nothing learnt about the token
    second, _ = host_memory(redis_url, tmp_path / "b", clock, sleep=pytest.fail)
    second.check(TOKEN)  # the probe is free: it sends at once


def test_a_probe_left_by_a_dead_process_ends_after_its_time(redis_url: str, tmp_path: Path) -> None:
    clock = Clock()
    dead, _ = host_memory(redis_url, tmp_path / "a", clock, probe=30)
    dead.check(TOKEN)  # and never answers
    clock.now += 31
    second, _ = host_memory(redis_url, tmp_path / "b", clock, sleep=pytest.fail, probe=30)
    second.check(TOKEN)


def test_the_tracker_accepting_lets_tracking_through_but_not_the_api(
    redis_url: str, tmp_path: Path
) -> None:
    # The tracker authenticates lazily: its "success" says nothing about the token.
    clock = Clock()
    first, _ = host_memory(redis_url, tmp_path / "a", clock)
    first.check(TOKEN, tracking=True)
    first.record_acceptance(TOKEN, tracking=True)
    tracking, _ = host_memory(redis_url, tmp_path / "b", clock, sleep=pytest.fail)
    tracking.check(TOKEN, tracking=True)
    api, _ = host_memory(redis_url, tmp_path / "c", clock, sleep=pytest.fail)
    api.check(TOKEN)  # takes the probe (nobody holds it): sends first
    waiting, _ = host_memory(redis_url, tmp_path / "d", clock, probe=0.2)
    waiting.check(TOKEN)  # waits for the api host's verdict (at most one probe), then goes


def test_a_stale_token_from_many_hosts_at_once_reaches_matomo_once(
    redis_url: str, tmp_path: Path, fake_matomo: FakeMatomo
) -> None:
    stale = "5a" * 16
    outcomes: list[str] = []
    lock = threading.Lock()

    def host(number: int) -> None:
        # The real clock: these hosts run concurrently.
        memory, _ = host_memory(redis_url, tmp_path / f"h{number}", time.time, probe=30)
        client = MatomoClient(base_url=fake_matomo.url, token=stale, token_memory=memory)
        try:
            client.call("API.getMatomoVersion")
            outcome = "accepted"
        except TokenCoolDownError:
            outcome = "cool-down"
        except AuthenticationError:
            outcome = "rejected"
        finally:
            client.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=host, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["cool-down"] * 7 + ["rejected"]
    assert fake_matomo.failed_logins == {"127.0.0.1": 1}
    good = MatomoClient(
        base_url=fake_matomo.url,
        token=SUPERUSER_TOKEN,
        token_memory=host_memory(redis_url, tmp_path / "h0", Clock())[0],
    )
    assert good.call("API.getMatomoVersion")  # a changed token goes at once
    good.close()


# --- Redis failing: this host's file --------------------------------------------------------


def test_redis_down_falls_back_to_the_hosts_file_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = RedisServer(tmp_path / "never-started")
    memory, local = host_memory(down.url, tmp_path / "a", Clock())
    with caplog.at_level(logging.WARNING, logger="matokit.redisstore"):
        memory.check(TOKEN)
        memory.record_rejection(TOKEN, "Unable to authenticate")
        with pytest.raises(TokenCoolDownError):
            memory.check(TOKEN)
    with pytest.raises(TokenCoolDownError):
        local.check(TOKEN)  # kept in the file
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "the shared token memory" in warnings[0] and "unreachable" in warnings[0]
    assert "this host's file" in warnings[0]


def test_a_key_of_another_type_falls_back_and_says_so(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{NAMESPACE}:token:rejected", "someone else's list")
    client.close()
    memory, local = host_memory(redis_url, tmp_path / "a", Clock())
    with caplog.at_level(logging.WARNING, logger="matokit.redisstore"):
        memory.record_rejection(TOKEN, "x")
    with pytest.raises(TokenCoolDownError):
        local.check(TOKEN)
    assert "another kind of value" in caplog.text and "redis_prefix" in caplog.text


# --- what the client tells the memory -------------------------------------------------------------


def test_an_api_answer_lets_every_host_send_the_token_without_waiting(
    redis_url: str, tmp_path: Path, fake_matomo: FakeMatomo
) -> None:
    memory, _ = host_memory(redis_url, tmp_path / "a", time.time)
    client = MatomoClient(base_url=fake_matomo.url, token=SUPERUSER_TOKEN, token_memory=memory)
    assert client.call("API.getMatomoVersion")
    client.close()
    other, _ = host_memory(redis_url, tmp_path / "b", time.time, sleep=pytest.fail)
    other.check(SUPERUSER_TOKEN)
    fields = redis.Redis.from_url(redis_url).hkeys(f"{NAMESPACE}:token:rejected")
    assert sorted(f[:2] for f in fields if f != b"salt") == [b"a:"]  # accepted, probe gone


def test_a_tracker_answer_only_vouches_for_tracking(
    redis_url: str, tmp_path: Path, fake_matomo: FakeMatomo
) -> None:
    from matokit.hits import pageview

    memory, _ = host_memory(redis_url, tmp_path / "a", time.time)
    client = MatomoClient(base_url=fake_matomo.url, token=SUPERUSER_TOKEN, token_memory=memory)
    client.track([pageview(1, url="https://example.org/")])
    client.close()
    fields = redis.Redis.from_url(redis_url).hkeys(f"{NAMESPACE}:token:rejected")
    assert sorted(f[:2] for f in fields if f != b"salt") == [b"t:"]


def test_no_answer_from_matomo_lets_the_next_host_try_at_once(
    redis_url: str, tmp_path: Path
) -> None:
    from matokit.errors import UnavailableError

    closed = RedisServer(tmp_path / "nothing-listens").port  # a free port: connection refused
    memory, _ = host_memory(redis_url, tmp_path / "a", time.time)
    client = MatomoClient(
        base_url=f"http://127.0.0.1:{closed}/", token=TOKEN, token_memory=memory, connect_retries=0
    )
    with pytest.raises(UnavailableError):
        client.call("API.getMatomoVersion")
    client.close()
    other, _ = host_memory(redis_url, tmp_path / "b", time.time, sleep=pytest.fail)
    other.check(TOKEN)  # the probe was released: no wait
