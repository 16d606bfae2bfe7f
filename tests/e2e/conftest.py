"""End-to-end harness: run the installed `matokit` executable as a subprocess, isolated.

Every run gets its own HOME, XDG and MatoKit directories under tmp_path, an environment with
no MATOMO_*/MATOKIT_* variables leaking in from the developer's shell, NO_COLOR=1, and a fresh
working directory (so no stray .env is read).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo
from tests.fakematomo.fixtures import fake_matomo  # noqa: F401  (re-exported for e2e tests)

MATOKIT = Path(sys.executable).parent / "matokit"


@dataclass(frozen=True)
class Result:
    """What one matokit run did: exit code and decoded output."""

    code: int
    stdout: str
    stderr: str
    args: tuple[str, ...] = ()

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        # Shown by `assert r.code == 0, r`: everything needed to see why it failed.
        return (
            f"matokit {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


RunMatokit = Callable[..., Result]
SpawnMatokit = Callable[..., "subprocess.Popen[str]"]


def _executable() -> Path:
    if not MATOKIT.exists():
        pytest.fail(
            f"{MATOKIT} not found: install the project first (pip install -e .)", pytrace=False
        )
    return MATOKIT


def _merge(base: Mapping[str, str], extra: Mapping[str, str | None] | None) -> dict[str, str]:
    env = dict(base)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.fixture
def e2e_dirs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "e2e"
    dirs = {
        "home": root / "home",
        "config": root / "home" / ".config",
        "cache": root / "home" / ".cache",
        "data": root / "home" / ".local" / "share",
        "cwd": root / "cwd",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return dirs


@pytest.fixture
def matokit_env(e2e_dirs: dict[str, Path]) -> dict[str, str]:
    """The base environment of every run; tests copy it and add MATOMO_URL etc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATOMO_", "MATOKIT_"))}
    env.update(
        HOME=str(e2e_dirs["home"]),
        XDG_CONFIG_HOME=str(e2e_dirs["config"]),
        XDG_CACHE_HOME=str(e2e_dirs["cache"]),
        XDG_DATA_HOME=str(e2e_dirs["data"]),
        MATOKIT_CONFIG=str(e2e_dirs["config"] / "matokit" / "config.toml"),
        MATOKIT_CACHE_DIR=str(e2e_dirs["cache"] / "matokit"),
        MATOKIT_DATA_DIR=str(e2e_dirs["data"] / "matokit"),
        NO_COLOR="1",
    )
    env.pop("FORCE_COLOR", None)
    return env


@pytest.fixture
def run_matokit(matokit_env: dict[str, str], e2e_dirs: dict[str, Path]) -> RunMatokit:
    """run_matokit(*args, env=None, input=None, timeout=60, cwd=None) -> Result.

    `env` adds to (or, with a None value, removes from) matokit_env.
    """

    def run(
        *args: object,
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
        timeout: float = 60,
        cwd: Path | str | None = None,
    ) -> Result:
        argv = [str(a) for a in args]
        proc = subprocess.run(
            [str(_executable()), *argv],
            env=_merge(matokit_env, env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or e2e_dirs["cwd"],
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, tuple(argv))

    return run


@pytest.fixture
def spawn_matokit(matokit_env: dict[str, str], e2e_dirs: dict[str, Path]) -> Iterator[SpawnMatokit]:
    """spawn_matokit(*args, env=None) -> Popen (text pipes); killed at teardown if still alive.

    For kill and concurrency tests: the caller sends signals, reads pipes, waits.
    """
    spawned: list[subprocess.Popen[str]] = []

    def spawn(
        *args: object, env: Mapping[str, str | None] | None = None, cwd: Path | str | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(_executable()), *(str(a) for a in args)],
            env=_merge(matokit_env, env),
            cwd=cwd or e2e_dirs["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        spawned.append(proc)
        return proc

    yield spawn
    for proc in spawned:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            proc.communicate(timeout=10)


@pytest.fixture
def env(fake_matomo: FakeMatomo) -> dict[str, str]:  # noqa: F811  (the fixture above)
    """The variables that point `matokit` at the fake Matomo, site 1, superuser token."""
    return {"MATOMO_URL": fake_matomo.url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN}


@pytest.fixture
def journal_path(matokit_env: dict[str, str]) -> Path:
    """The default profile's journal file."""
    return Path(matokit_env["MATOKIT_DATA_DIR"]) / "default" / "journal.sqlite"
