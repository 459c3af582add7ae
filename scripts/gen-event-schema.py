#!/usr/bin/env python3
"""Write the event JSON Schema and the field tables of docs/events.md from the payload models.

The models are :mod:`domain.wording.payloads`; :mod:`domain.wording.event_schema` reads them.
This writes ``config/schemas/moment-event.schema.json`` and replaces the two tables under
"## Fields" of ``docs/events.md`` (fields by kind; each field's type, null and meaning).
``tests/unit/test_event_schema.py`` fails when a copy differs from what the models give; run
this after changing a model.

    .venv/bin/python scripts/gen-event-schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from domain.wording.event_schema import (
    PRESENCE_HEADER,
    TABLE_HEADER,
    event_schema,
    field_table,
    presence_table,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "config" / "schemas" / "moment-event.schema.json"
DOC_PATH = ROOT / "docs" / "events.md"


def schema_text() -> str:
    """The schema file as committed: two-space indents, a final newline."""
    return json.dumps(event_schema(), indent=2, ensure_ascii=False) + "\n"


def doc_table(doc: str) -> str:
    """The field table of the guide as it stands (from its header to the next blank line)."""
    start = doc.index(TABLE_HEADER)
    return doc[start : doc.index("\n\n", start)]


def doc_presence_table(doc: str) -> str:
    """The guide's table of fields by kind as it stands: the first table under "## Fields"."""
    start = doc.index("\n" + PRESENCE_HEADER, doc.index("\n## Fields\n")) + 1
    return doc[start : doc.index("\n\n", start)]


def main() -> None:
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    doc = DOC_PATH.read_text(encoding="utf-8")
    doc = doc.replace(doc_presence_table(doc), presence_table(), 1)
    DOC_PATH.write_text(doc.replace(doc_table(doc), field_table(), 1), encoding="utf-8")


if __name__ == "__main__":
    main()
