"""The README documents every setting once, in its settings table, as declared.

The table is generated from ``config/settings.py`` (scripts/gen-settings-table.py); these
tests fail on drift either way: a setting missing from the table or documented with other
text, a row for a setting that does not exist, a setting documented in another table, or a
``MOMENTS_*`` name in the README that no setting reads.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from config.settings import VARIABLES, VARIABLES_BY_NAME, Variable

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_settings_table", ROOT / "scripts" / "gen-settings-table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def tables(text: str) -> list[list[str]]:
    """Every Markdown table of ``text`` as its lines, header first."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def first_cell(row: str) -> str:
    return row.split("|")[1].strip()


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.name)
def test_every_setting_is_documented_with_its_default(variable: Variable) -> None:
    name, default = variable.name, variable.default
    rows = [line for line in README.splitlines() if line.startswith(f"| `{name}` |")]
    assert rows, f"{name} is missing from the README settings table"
    packaged = ("MOMENTS_PLANS_FILE", "MOMENTS_MESSAGES_FILE", "MOMENTS_ENDPOINTS_FILE")
    if default is not None and name not in packaged:
        assert f"`{default}`" in rows[0], f"{name}: default {default!r} not in {rows[0]!r}"


def test_the_settings_table_is_generated_from_the_declaration() -> None:
    assert GENERATOR.render() in README, "run scripts/gen-settings-table.py"
    assert GENERATOR.replaced(README) == README, "run scripts/gen-settings-table.py"


def test_settings_are_documented_only_in_the_settings_table() -> None:
    """A row that documents one setting (its name alone in the first cell) sits in a table
    of settings, never in another (the Topics table once held MOMENTS_UNDERUSE_LEVEL)."""
    misplaced = [
        row
        for table in tables(README)
        if first_cell(table[0]) not in ("variable", "setting")
        for row in table[2:]
        if re.fullmatch(r"`MOMENTS_[A-Z0-9_]+`", first_cell(row))
    ]
    assert misplaced == []
    documented = [
        first_cell(row).strip("`")
        for table in tables(README)
        if first_cell(table[0]) == "variable"
        for row in table[2:]
    ]
    assert documented == [v.name for v in VARIABLES]


def test_every_setting_the_readme_names_exists() -> None:
    named = set(re.findall(r"MOMENTS_[A-Z0-9_]*[A-Z0-9]", README))
    assert sorted(named - set(VARIABLES_BY_NAME)) == []


def test_drift_is_caught_both_ways() -> None:
    """The checks above fail on a stale copy: a row too many, a row missing, other text."""
    table = GENERATOR.render()
    rows = table.splitlines(keepends=True)
    for stale in (
        table + "| `MOMENTS_BATCH_WINDOW` | `50ms` | a duration up to 10s | gone |\n",
        "".join(rows[:-1]),
        table.replace("an integer from 1 to 1000", "an integer from 1 to 100"),
    ):
        assert GENERATOR.replaced(README.replace(table, stale)) == README
        assert README.replace(table, stale) != README
