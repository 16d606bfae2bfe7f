"""`matokit config init` on a real terminal: prompts, and the token read without echo."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
import tomllib
from pathlib import Path

from tests.e2e.conftest import _executable

TOKEN = "7e57" * 8


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)


def test_config_init_prompts_on_a_tty_and_hides_the_token(matokit_env, e2e_dirs):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(_executable()), "--profile", "tty", "config", "init"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=matokit_env,
        cwd=e2e_dirs["cwd"],
        close_fds=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"Matomo URL", seen)
        os.write(master, b"https://tty.example/\n")
        _read_until(master, b"site id", seen)
        os.write(master, b"4\n")
        # The prompt's last character (a space) comes from getpass once echo is off; typing
        # earlier races it (getpass flushes what was typed before, as no terminal user does).
        _read_until(master, b"current one): ", seen)
        os.write(master, TOKEN.encode() + b"\n")
        _read_until(master, b"written", seen)
        assert proc.wait(timeout=15) == 0, bytes(seen)
    finally:
        proc.kill()
        os.close(master)
    assert TOKEN.encode() not in seen  # not echoed
    config = Path(matokit_env["MATOKIT_CONFIG"])
    profile = tomllib.loads(config.read_text())["profiles"]["tty"]
    assert profile["url"] == "https://tty.example/" and profile["site_id"] == 4
    assert TOKEN not in config.read_text()
    assert Path(profile["token_file"]).read_text().strip() == TOKEN
