"""The event JSON Schema as a validator, shared by every test that checks events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker

from domain.common.timeutil import parse_rfc3339

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "config" / "schemas" / "moment-event.schema.json").read_text())


def _format_checker() -> FormatChecker:
    # jsonschema checks "date-time" only with the optional rfc3339-validator installed; check
    # it with the project's own RFC 3339 parser so the format is never silently skipped.
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def date_time(value: object) -> bool:
        # Formats apply to strings only; other types are the "type" keyword's business.
        return not isinstance(value, str) or bool(parse_rfc3339(value))

    return checker


VALIDATOR = Draft202012Validator(SCHEMA, format_checker=_format_checker())


def errors(event: dict[str, Any]) -> list[str]:
    """Every schema violation of ``event``."""
    return [error.message for error in VALIDATOR.iter_errors(event)]


def assert_valid(event: dict[str, Any]) -> None:
    """``event`` satisfies the schema and is plain JSON (no Decimal, no datetime)."""
    assert errors(event) == []
    assert orjson.loads(orjson.dumps(event)) == event
