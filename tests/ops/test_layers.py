"""The import graph of the packages: arrows run down the layers only, and no module
imports itself back through others (STYLE.md, "Shape").

Read from the source with ``ast`` (nothing is imported), so an upward import or a circle
fails here before anything runs. Imports inside functions count: a lazy import is an
arrow too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The packages from the bottom up. A package imports only packages of lower layers;
#: packages of one layer do not import each other.
LAYERS: tuple[frozenset[str], ...] = (
    # the rules of the business: no Faust, Kafka or asyncio
    frozenset({"domain"}),
    # settings and data files; the store layer
    frozenset({"config", "state"}),
    # the engine on the store layer; the tables declared on it
    frozenset({"engine", "tables"}),
    # the application factory: the faust.App, metrics, topics (nothing of agents/, tables/)
    frozenset({"app"}),
    # the stream handlers
    frozenset({"agents"}),
    # the HTTP views
    frozenset({"web"}),
    # the `moments` commands: the worker is wired here
    frozenset({"commands"}),
)
LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in LAYER_OF
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every project module ``module`` imports, with the line (``from p import m`` names
    the submodule ``p.m`` when there is one)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")
                parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else base), node.lineno


def _project_target(name: str) -> str | None:
    """The project module an import reaches (its nearest known parent), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, _ in _imports(module, path):
            target = _project_target(name)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def test_every_package_is_in_a_layer() -> None:
    packages = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "tests"
    }
    assert packages == set(LAYER_OF)


def test_imports_run_down_the_layers() -> None:
    upward: set[str] = set()
    for module, path in MODULES.items():
        package = module.split(".")[0]
        for name, line in _imports(module, path):
            target = name.split(".")[0]
            if target not in LAYER_OF or target == package:
                continue
            if LAYER_OF[target] >= LAYER_OF[package]:
                upward.add(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not upward, "imports that do not run down the layers:\n" + "\n".join(sorted(upward))


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_back() -> None:
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
    ],
)
def test_the_circle_finder_finds_circles(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert _circles(graph) == expected
