"""The domain's import graph: no circle, and no stage importing a later one.

``domain/`` is grouped by the way a record goes; a stage may import itself and the stages
before it, never one after it. Imports are read from the source (ast), function-level and
``TYPE_CHECKING`` ones included, so a circle hidden inside a function still fails.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domain"

STAGES = ("common", "plans", "intake", "rules", "wording", "moments", "delivery")
"""In the order a record goes: each imports only itself and the stages before it."""


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str:
    """The stage folder of ``module``; ``domain`` and ``domain.errors`` count as common."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "common"


def _imports(source: str, name: str, modules: set[str]) -> frozenset[str]:
    """The modules of ``modules`` that ``source`` (module ``name``) imports, anywhere."""
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{name}: relative import; write domain.<stage>.<module>")
        if isinstance(node, ast.ImportFrom) and node.module:
            # from domain.x import y: y may be a module of the package domain.x
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                targets.add(target if target in modules else node.module)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return frozenset(t for t in targets if t in modules and t != name)


def _circle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """An import circle of ``graph`` (its modules in order, the first again at the end)."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            circle = visit(target, [*path, module])
            if circle is not None:
                return circle
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module, [])
        if circle is not None:
            return circle
    return None


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Each domain module and the domain modules it imports (anywhere in its body)."""
    paths = {_module(p): p for p in DOMAIN.rglob("*.py")}
    names = set(paths)
    return {n: _imports(p.read_text(encoding="utf-8"), n, names) for n, p in paths.items()}


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "domain.wording.messages" in graph
    assert "domain.rules.overage" in graph["domain.wording.messages"]
    # A function-level import counts like any other.
    assert {_stage(m) for m in graph} == set(STAGES)


def test_every_domain_module_sits_in_a_stage() -> None:
    loose = sorted(
        m
        for m in _graph()
        if m.count(".") == 1 and m not in {"domain.errors"} and m.split(".")[1] not in STAGES
    )
    assert loose == [], f"put these in a stage folder ({', '.join(STAGES)}): {loose}"


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_a_later_one(stage: str) -> None:
    later = set(STAGES[STAGES.index(stage) + 1 :])
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if _stage(module) == stage
        for target in targets
        if _stage(target) in later
    )
    assert wrong == [], f"domain/{stage} imports later stages ({' < '.join(STAGES)}): {wrong}"


def test_no_import_circle() -> None:
    circle = _circle(_graph())
    assert circle is None, f"import circle: {' -> '.join(circle or [])}"


def test_a_function_level_circle_is_found() -> None:
    """What the checks above rest on: an import inside a function is read, and a circle
    through it is reported."""
    modules = {"domain.rules.a", "domain.wording.b"}
    inner = "def f() -> None:\n    from domain.wording.b import g\n"
    graph = {
        "domain.rules.a": _imports(inner, "domain.rules.a", modules),
        "domain.wording.b": _imports("from domain.rules import a\n", "domain.wording.b", modules),
    }
    assert graph["domain.rules.a"] == {"domain.wording.b"}
    assert _circle(graph) == ["domain.rules.a", "domain.wording.b", "domain.rules.a"]
    assert _circle({"domain.rules.a": frozenset()}) is None
