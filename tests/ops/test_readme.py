"""The README documents every setting with its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import VARIABLES

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.name)
def test_every_setting_is_documented_with_its_default(variable: object) -> None:
    name = variable.name  # type: ignore[attr-defined]
    default = variable.default  # type: ignore[attr-defined]
    rows = [line for line in README.splitlines() if line.startswith(f"| `{name}` |")]
    assert rows, f"{name} is missing from the README settings table"
    if default is not None and name not in ("MOMENTS_PLANS_FILE", "MOMENTS_MESSAGES_FILE"):
        assert f"`{default}`" in rows[0], f"{name}: default {default!r} not in {rows[0]!r}"
