"""Start-up with the optional extra `agents` installed and without it (issue 17, ADR-0011).

The agent servers' SDKs (mcp, the Opal tools SDK, FastAPI, uvicorn, pydantic, ...) are imported
only by `matokit mcp` and `matokit tools serve`, so installing the extra must leave every other
command's start-up as it was. Two throw-away virtual environments on this interpreter's base,
built in the same run and measured interleaved, differ in one thing only:

- "with the extra": MatoKit's source and this environment's site-packages (the extra installed);
- "without": MatoKit's source and a copy of that site-packages (symlinks) without the packages
  that only the extra brings (worked out from the installed metadata, so nothing is hand-kept).

Figures: `--version` (answered before typer loads), `--help` (typer builds the whole command
tree, the agent commands included) and `python -c pass` (the floor), each with against without.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import tempfile
import venv
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from _util import REPO, figure, isolated_env, median_walls

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _requirements(name: str, extra: str | None = None) -> set[str]:
    """Names a distribution requires: without extras, or those of one extra only."""
    found = set()
    for line in distribution(name).requires or []:
        requirement, _, marker = line.partition(";")
        wanted = f'extra == "{extra}"' in marker if extra else "extra ==" not in marker
        match = _NAME.match(requirement)
        if wanted and match:
            found.add(match[1].split("[")[0])
    return found


def _closure(names: set[str]) -> set[str]:
    """Every installed distribution reached from `names` (normalised names)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            todo += _requirements(name)
        except PackageNotFoundError:
            continue
        seen.add(name)
    return seen


def extra_only() -> set[str]:
    """The installed distributions that only the `agents` extra brings."""
    return _closure(_requirements("matokit", "agents")) - _closure(_requirements("matokit"))


def _top_levels(names: set[str]) -> set[str]:
    """The first path component of every file the distributions installed in site-packages."""
    tops = set()
    for name in names:
        for file in distribution(name).files or []:
            if not str(file).startswith(".."):
                tops.add(Path(str(file)).parts[0])
    return tops


def _environment(root: Path, site: Path) -> Path:
    """A venv without pip whose sys.path adds MatoKit's source and `site`."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "matokit-bench.pth").write_text(f"{REPO}\n{site}\n")
    return python


def _importable(python: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", code], check=False).returncode == 0


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 5 if quick else 21
    hidden = extra_only()
    if "mcp" not in hidden:
        raise RuntimeError("install the extra first: pip install -e '.[agents]'")
    site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp:
        root = Path(tmp)
        shadow = root / "site-without-agents"
        shadow.mkdir()
        skip = _top_levels(hidden)
        for entry in site.iterdir():
            if entry.name not in skip and not entry.name.endswith(".pth"):
                (shadow / entry.name).symlink_to(entry)
        with_extra = _environment(root / "with", site)
        without = _environment(root / "without", shadow)
        assert _importable(with_extra, "mcp") and not _importable(without, "mcp")
        assert _importable(without, "typer") and _importable(without, "matokit")
        env = isolated_env(root, {"MATOMO_URL": "http://127.0.0.1:9/"})
        commands = {
            f"{what} ({arm})": [str(python), *args]
            for what, args in (
                ("pass", ["-c", "pass"]),
                ("--version", ["-m", "matokit", "--version"]),
                ("--help", ["-m", "matokit", "--help"]),
            )
            for arm, python in (("with", with_extra), ("without", without))
        }
        ms = {name: wall * 1000 for name, wall in median_walls(commands, runs, env).items()}
    figures = []
    for what, target in (("--version", 1.10), ("--help", 1.10), ("pass", None)):
        value, base = ms[f"{what} (with)"], ms[f"{what} (without)"]
        figures.append(
            figure(
                f"{'python -c pass' if what == 'pass' else 'matokit ' + what}, extra installed",
                value,
                "ms",
                f"without the extra ({len(hidden)} packages fewer)",
                base,
                target=f"within {target - 1:.0%} of without" if target else None,
                met=value <= base * target if target else None,
            )
        )
    return figures


if __name__ == "__main__":
    print(sorted(extra_only()), file=sys.stderr)
