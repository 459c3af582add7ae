"""Values and messages the worker holds are right-sized JSON, not orjson's 4 kB buffers."""

from __future__ import annotations

import ast
import tracemalloc
from pathlib import Path

import orjson
import pytest

from state import jsonbytes

ROOT = Path(__file__).parents[2]
#: The worker's code: what it encodes is held by a step until its transaction commits.
WORKER_PACKAGES = ("tables", "agents", "engine", "state")
VALUE = {"plan_id": "pro", "limits": {"api_calls": 10_000.0}, "updated_at": "2026-12-01T00:00:00Z"}


def _traced_bytes_per_value(encode: object, n: int = 2000) -> float:
    """Bytes allocated per value kept, as tracemalloc sees them (not ``sys.getsizeof``)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode({**VALUE, "n": i}) for i in range(n)]  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return (after - before) / n


def test_dumps_is_orjson_encoding() -> None:
    value = {**VALUE, "text": "héllo", "nested": [1, 2.5, None, True]}
    assert jsonbytes.dumps(value) == orjson.dumps(value)
    assert type(jsonbytes.dumps(value)) is bytes


def test_a_kept_value_costs_about_its_length() -> None:
    length = len(jsonbytes.dumps({**VALUE, "n": 1000}))
    per_value = _traced_bytes_per_value(jsonbytes.dumps)
    # bytes header (33 B), pymalloc rounding and the list slot: well under 2x the length.
    assert per_value < 2 * length + 64, (per_value, length)


def test_orjson_alone_would_not() -> None:
    """Why jsonbytes exists; if a new orjson right-sizes again, jsonbytes may go."""
    length = len(orjson.dumps({**VALUE, "n": 1000}))
    per_value = _traced_bytes_per_value(orjson.dumps)
    if per_value < 2 * length + 64:
        pytest.skip(f"orjson {orjson.__version__} right-sizes dumps output ({per_value:.0f} B)")
    assert per_value > 1000


def _dumps_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "dumps"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("orjson", "json")
    ]


@pytest.mark.parametrize("package", WORKER_PACKAGES)
def test_worker_code_encodes_through_jsonbytes(package: str) -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "jsonbytes.py" and (lines := _dumps_calls(path))
    }
    assert not found, f"use state.jsonbytes.dumps (right-sized) instead of orjson.dumps: {found}"
