"""Token memory: a rejected token is not sent again for a cool-down, across processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from matokit.errors import StorageError, TokenCoolDownError
from matokit.tokenmemory import TokenMemory

TOKEN = "ab" * 16
OTHER = "cd" * 16
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "profile" / "rejected-token.json"


def test_rejected_token_is_refused_locally_until_the_cool_down_ends(path: Path) -> None:
    clock = Clock()
    memory = TokenMemory(path, clock=clock, cooldown=600)
    memory.check(TOKEN)  # nothing remembered yet
    memory.record_rejection(TOKEN, "Unable to authenticate with the provided token.")
    clock.now += 599
    with pytest.raises(TokenCoolDownError) as info:
        memory.check(TOKEN)
    error = info.value
    assert error.rejected_at == T0
    assert error.until == T0 + 600
    assert "2023-11-14 22:13:20 UTC" in error.message
    assert "2023-11-14 22:23:20 UTC" in error.message
    assert "Unable to authenticate" in error.message
    assert error.hint is not None and "MATOMO_TOKEN" in error.hint and "token file" in error.hint
    clock.now += 1
    memory.check(TOKEN)  # cool-down over: the token may be tried once more


def test_a_changed_token_is_sent_at_once(path: Path) -> None:
    memory = TokenMemory(path, clock=Clock())
    memory.record_rejection(TOKEN, "Unable to authenticate")
    memory.check(OTHER)


def test_cool_down_is_shared_by_two_instances_on_the_same_file(path: Path) -> None:
    clock = Clock()
    TokenMemory(path, clock=clock).record_rejection(TOKEN, "Unable to authenticate")
    with pytest.raises(TokenCoolDownError):
        TokenMemory(path, clock=clock).check(TOKEN)


def test_cool_down_works_across_processes(path: Path) -> None:
    code = (
        "import sys\n"
        "from matokit.tokenmemory import TokenMemory\n"
        "TokenMemory(sys.argv[1]).record_rejection(sys.argv[2], 'Unable to authenticate')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code, str(path), TOKEN], check=True, env=env)
    with pytest.raises(TokenCoolDownError):
        TokenMemory(path).check(TOKEN)


def test_file_holds_a_salted_hash_never_the_token_and_is_private(path: Path) -> None:
    TokenMemory(path, clock=Clock()).record_rejection(TOKEN, f"bad token {TOKEN} in message")
    text = path.read_text()
    assert TOKEN not in text
    data = json.loads(text)
    assert data["rejections"][0]["message"] == "bad token *** in message"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp file left behind"


def test_salt_differs_per_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    TokenMemory(a, clock=Clock()).record_rejection(TOKEN, "x")
    TokenMemory(b, clock=Clock()).record_rejection(TOKEN, "x")
    hash_a = json.loads(a.read_text())["rejections"][0]["token_hash"]
    hash_b = json.loads(b.read_text())["rejections"][0]["token_hash"]
    assert hash_a != hash_b


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"format": 1}',
        b'{"format": 1, "salt": "s", "rejections": [1, {"token_hash": 2}]}',
        b'{"format": 99, "salt": "s", "rejections": []}',
    ],
)
def test_a_corrupt_file_is_ignored_and_safely_overwritten(path: Path, garbage: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(garbage)
    memory = TokenMemory(path, clock=Clock())
    memory.check(TOKEN)
    memory.record_rejection(TOKEN, "Unable to authenticate")
    with pytest.raises(TokenCoolDownError):
        memory.check(TOKEN)


def test_clear_forgets_everything(path: Path) -> None:
    memory = TokenMemory(path, clock=Clock())
    memory.clear()  # nothing to clear is fine
    memory.record_rejection(TOKEN, "x")
    memory.clear()
    memory.check(TOKEN)
    assert not path.exists()


def test_a_rejection_dated_far_in_the_future_does_not_block_forever(path: Path) -> None:
    clock = Clock(T0 + 10 * 86400)
    TokenMemory(path, clock=clock).record_rejection(TOKEN, "x")
    TokenMemory(path, clock=Clock(T0)).check(TOKEN)


def test_remembers_several_tokens_and_prunes_expired_ones(path: Path) -> None:
    clock = Clock()
    memory = TokenMemory(path, clock=clock)
    memory.record_rejection(TOKEN, "first")
    clock.now += 700
    memory.record_rejection(OTHER, "second")
    with pytest.raises(TokenCoolDownError):
        memory.check(OTHER)
    memory.check(TOKEN)
    assert len(json.loads(path.read_text())["rejections"]) == 1


def test_unusable_data_directory_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StorageError) as info:
        TokenMemory(blocker / "m.json", clock=Clock()).record_rejection(TOKEN, "x")
    assert info.value.path == str(blocker / "m.json")
    assert info.value.hint
