"""Dead-letter payloads (contract 1.1): what a record that cannot be used turns into.

A dead letter keeps the original value so the producer's team can see, fix and replay it. The
value is stored as text when it is UTF-8 (the normal case: JSON), and as base64 otherwise, so
the dead letter itself is always valid JSON.
"""

from __future__ import annotations

import base64
from typing import TypedDict

from domain.timeutil import to_rfc3339


class DeadLetter(TypedDict):
    """The JSON object written to ``<topic>.dlq``."""

    error: str
    topic: str
    partition: int
    offset: int
    raw: str | None
    at: str


def b64_or_text(raw: bytes) -> str:
    """``raw`` decoded as UTF-8 when it is valid UTF-8, else its standard base64 encoding."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


def dead_letter(
    error: str | BaseException,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes | None,
    at_ms: int,
) -> DeadLetter:
    """The dead letter of the record at ``topic``/``partition``/``offset`` refused for ``error``.

    ``raw`` is the record's original value (``None`` for a record without one, written as
    JSON null); ``at_ms`` is when it was refused, written as RFC 3339 UTC.
    """
    return {
        "error": str(error),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw": None if raw is None else b64_or_text(raw),
        "at": to_rfc3339(at_ms),
    }
