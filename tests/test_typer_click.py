"""MatoKit runs on the Click that Typer runs on, whatever `click` is installed beside it.

Typer up to 0.25 uses the installed `click`; from 0.26 it carries its own copy (`typer._click`),
so an installed `click` is then a different library whose exceptions and classes Typer never
uses. `foreign_click` puts such a Click in `sys.modules["click"]`: code that imports `click`
itself would catch and inspect the wrong classes (usage errors became "internal error", exit 1).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
import tomllib
import types
from pathlib import Path

import pytest

from tests.clirunner import invoke

ROOT = Path(__file__).resolve().parent.parent


def _foreign_click() -> types.ModuleType:
    """A Click with the same names as the real one, none of them the classes Typer uses."""
    click = types.ModuleType("click")
    # Where an installed Click lazily imports its own submodules (`from ._textwrap import`).
    real = importlib.util.find_spec("click")
    click.__path__ = list(real.submodule_search_locations or []) if real else []
    exceptions = types.ModuleType("click.exceptions")
    base = type("ClickException", (Exception,), {})
    for cls in (
        base,
        type("UsageError", (base,), {}),
        type("Exit", (RuntimeError,), {}),
        type("Abort", (RuntimeError,), {}),
    ):
        setattr(exceptions, cls.__name__, cls)
    click.exceptions = exceptions  # type: ignore[attr-defined]
    for name in ("Command", "Group", "Option", "Argument", "Parameter", "Choice", "Context"):
        setattr(click, name, type(name, (), {}))
    return click


@pytest.fixture
def foreign_click(monkeypatch: pytest.MonkeyPatch) -> None:
    importlib.import_module("typer.main")  # Typer keeps the Click it was imported with
    click = _foreign_click()
    monkeypatch.setitem(sys.modules, "click", click)
    monkeypatch.setitem(sys.modules, "click.exceptions", click.exceptions)
    # Imported afresh under the foreign Click (monkeypatch puts the original back afterwards).
    monkeypatch.delitem(sys.modules, "matokit.cli.introspect", raising=False)


@pytest.mark.usefixtures("foreign_click")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["queue", "status", "--format", "yaml"], "--format"),
        (["queue", "status", "--bogus"], "--bogus"),
        (["track", "pageview", "--site", "x", "--url", "https://e.example/"], "--site"),
    ],
)
def test_usage_errors_are_caught_through_typer(capsys, args, message):
    result = invoke(capsys, *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.usefixtures("foreign_click")
def test_describe_reads_the_command_tree_through_typer(capsys):
    result = invoke(capsys, "describe")
    assert result.code == 0, result.stderr
    by_name = {c["name"]: c for c in json.loads(result.stdout)["commands"]}
    assert by_name["track"]["group"] is True
    flags = {f for p in by_name["track pageview"]["params"] for f in p["flags"]}
    assert {"--url", "--visitor-id", "--queue", "--format"} <= flags


# Packages whose modules may also import the libraries of an optional extra (ADR-0011).
EXTRA_PACKAGES = {"matokit/agents": "agents"}


def _imported_top_level_names(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"matokit"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_canonical(re.split(r"[<>=!~;\[ ]", d)[0]) for d in requirements}


def _undeclared(paths: list[Path], declared: set[str]) -> dict[str, object]:
    providers = importlib.metadata.packages_distributions()
    return {
        name: providers.get(name)
        for name in _imported_top_level_names(paths)
        if not {_canonical(d) for d in providers.get(name, [name])} & declared
    }


def test_every_library_matokit_imports_is_a_declared_dependency():
    """Also imports for type checking only: mypy must find them in a fresh install. The
    modules of an optional extra's package may import that extra's libraries too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    every = sorted((ROOT / "matokit").rglob("*.py"))
    in_extra = {p for p in every for d in EXTRA_PACKAGES if p.is_relative_to(ROOT / d)}
    assert in_extra, "the agents package moved: update EXTRA_PACKAGES"
    undeclared = _undeclared([p for p in every if p not in in_extra], core)
    for folder, extra in EXTRA_PACKAGES.items():
        allowed = core | _names(project["optional-dependencies"][extra])
        paths = [p for p in in_extra if p.is_relative_to(ROOT / folder)]
        undeclared |= _undeclared(paths, allowed)
    assert undeclared == {}, "declare these in pyproject.toml [project] dependencies"
