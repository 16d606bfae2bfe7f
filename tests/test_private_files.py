"""Private directories (0700 whatever the umask) and atomic whole-file writes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from matokit.private_files import make_private_dir, write_atomic
from tests.clirunner import invoke


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_every_created_parent_is_0700_whatever_the_umask(tmp_path, permissive_umask):
    target = tmp_path / "a" / "b" / "c"
    make_private_dir(target)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700] * 3


def test_existing_directories_are_left_as_they_are(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    make_private_dir(existing / "mine")
    assert mode(existing) == 0o755 and mode(existing / "mine") == 0o700


def test_a_file_in_the_way_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        make_private_dir(blocker / "sub" / "dir")
    assert info.value.filename == str(blocker)


def test_write_atomic_sets_the_mode_and_replaces_whole(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "f"
    target.write_text("old")
    write_atomic(target, "new", mode=0o640)
    assert target.read_text() == "new" and mode(target) == 0o640
    assert [p.name for p in folder.iterdir()] == ["f"]  # no temp file left


def test_config_init_makes_every_new_directory_private(
    capsys, tmp_path, monkeypatch, permissive_umask
):
    config = tmp_path / "conf" / "matokit" / "config.toml"
    monkeypatch.setenv("MATOKIT_CONFIG", str(config))
    result = invoke(
        capsys,
        "config",
        "init",
        "--url",
        "https://a.example/",
        "--token-stdin",
        stdin="ab" * 16 + "\n",
    )
    assert result.code == 0, result.stderr
    for directory in (tmp_path / "conf", config.parent, config.parent / "tokens"):
        assert mode(directory) == 0o700, directory
