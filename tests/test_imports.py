"""No runtime import cycle between MatoKit's modules (issue 11).

Every module of `matokit/` is parsed with `ast`; an import of another MatoKit module is an edge,
whether at module level or inside a function (a late import only hides a cycle until the
function runs). Imports under `if TYPE_CHECKING:` are not edges: they never run. An import of
`matokit.a.b` is an edge to `matokit.a.b` (the most specific module named), `from matokit.a
import b` to `matokit.a.b` when `b` is a module, else to `matokit.a` (its `__init__`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "matokit"

# Known runtime cycles, not part of the health package's work (issue 11 item 6); each is
# (a module in the cycle, the package every module of the cycle is in).
# - the CLI entry point: `matokit.cli.main()` imports `matokit.cli.app` inside the function
#   (so `--version` and a cached report answer before typer loads), and every command module
#   imports `state` from `matokit.cli`. Harmless at run time (the package is fully loaded
#   before main() runs) but a cycle by this test's rule; moving `state` (and `Context`) out of
#   `matokit/cli/__init__.py` into their own module removes it. Coordinator: drop this entry
#   once that is done.
KNOWN_CYCLES: list[tuple[str, str]] = []


def _known(component: set[str]) -> bool:
    return any(
        member in component and all(m == package or m.startswith(package + ".") for m in component)
        for member, package in KNOWN_CYCLES
    )


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement except those in an `if TYPE_CHECKING:` body."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific MatoKit module `name` (dotted) refers to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str | None] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(_target(a.name, modules) for a in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            targets.add(_target(f"{base}.{alias.name}", modules) or _target(base, modules))
    return {t for t in targets if t and t.startswith("matokit") and t != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component."""
    return [_path_through(component, graph) for component in components(graph)]


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): each holds at
    least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _path_through(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A cycle inside `component`, starting at its first module (breadth-first back to it)."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return sorted(component)


def test_matokit_has_no_runtime_import_cycle() -> None:
    graph = import_graph()
    found = [c for c in components(graph) if not _known(c)]
    paths = [" -> ".join(_path_through(c, graph)) + f"  (modules: {sorted(c)})" for c in found]
    assert not found, "runtime import cycle(s):\n" + "\n".join(paths)


def test_known_cycles_still_exist() -> None:
    # A known cycle that is gone must leave the list, so that it cannot come back unseen.
    present = components(import_graph())
    gone = [known for known in KNOWN_CYCLES if not any(known[0] in c for c in present)]
    assert gone == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c", "a"]]),
    ],
)
def test_cycle_finder_reports_each_cycle_as_a_path(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert cycles(graph) == expected


def test_late_and_type_checking_imports_are_told_apart(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from matokit.b import X\n"
        "def f():\n    from matokit.c import Y\n"
    )
    names = {n.module for n in _runtime_imports(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert names == {"typing", "matokit.c"}


def test_the_old_health_cycle_would_be_found() -> None:
    # health.py imported healthchecks late, healthchecks imported health at module level.
    graph = {"matokit.health": {"matokit.healthchecks"}, "matokit.healthchecks": {"matokit.health"}}
    assert cycles(graph) == [["matokit.health", "matokit.healthchecks", "matokit.health"]]


def test_the_delivery_package_exports_every_public_name_it_loads_lazily() -> None:
    import matokit.delivery as delivery

    assert sorted(delivery.__all__) == sorted(delivery._EXPORTS)
    for name in delivery.__all__:
        assert getattr(delivery, name) is not None
    with pytest.raises(AttributeError):
        _ = delivery.no_such_name  # type: ignore[attr-defined]
