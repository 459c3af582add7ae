"""Write the README's settings table from the declaration in config/settings.py.

    .venv/bin/python scripts/gen-settings-table.py           # rewrite the table
    .venv/bin/python scripts/gen-settings-table.py --check   # exit 1 if it is stale

Each row is one field of ``config.settings.Settings``: its variable, default, what it
accepts and what it means; there is no second copy to edit. tests/unit/test_readme.py
fails when the README's table differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.settings import VARIABLES, Variable  # noqa: E402 - after the path is set

README = ROOT / "README.md"
HEADER = "| variable | default | accepted | meaning |\n|---|---|---|---|\n"
CONFIG = ROOT / "config"


def default_text(variable: Variable) -> str:
    """A default as the README shows it: the text, a packaged file, or (unset)."""
    if variable.default is None:
        return "(unset)"
    path = Path(variable.default)
    if path.is_absolute() and path.parent == CONFIG:
        return f"the packaged `config/{path.name}`"
    return f"`{variable.default}`"


def render() -> str:
    """The table: its header, then one row per variable in declaration order."""
    rows = [f"| `{v.name}` | {default_text(v)} | {v.accepted} | {v.doc} |\n" for v in VARIABLES]
    return HEADER + "".join(rows)


def replaced(readme: str) -> str:
    """``readme`` with its settings table (the header up to the first blank line) rendered."""
    start = readme.index(HEADER)
    end = readme.index("\n\n", start) + 1
    return readme[:start] + render() + readme[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = replaced(current)
    if args.check:
        if current != wanted:
            print("README.md's settings table is stale: run scripts/gen-settings-table.py")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
