"""Dead-letter payloads (contract 1.1): what a record that cannot be used turns into.

A dead letter keeps the original value so the producer's team can see, fix and replay it. The
value is stored as text when it is UTF-8 (the normal case: JSON), and as base64 otherwise, so
the dead letter itself is always valid JSON. A value longer than :data:`RAW_MAX_BYTES` is cut
there (text stays text) and ``raw_bytes`` says how long it was.
"""

from __future__ import annotations

import base64
from typing import Final, NotRequired, TypedDict

from domain.common.timeutil import to_rfc3339

_ERROR_MAX_CHARS: Final = 2000

RAW_MAX_BYTES: Final = 64 * 1024
"""Most of a refused value a dead letter keeps: a value near the broker's size limit would
otherwise make a dead letter the broker refuses too, and the worker could never move on."""


class DeadLetter(TypedDict):
    """The JSON object written to ``<topic>.dlq``.

    ``raw_bytes`` (the original size) is present only when ``raw`` holds just the first
    :data:`RAW_MAX_BYTES` of the value.
    """

    error: str
    topic: str
    partition: int
    offset: int
    raw: str | None
    at: str
    raw_bytes: NotRequired[int]


def b64_or_text(raw: bytes) -> str:
    """``raw`` decoded as UTF-8 when it is valid UTF-8, else its standard base64 encoding."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


def _kept(raw: bytes) -> str:
    """What a dead letter keeps of ``raw``: all of it, or its first :data:`RAW_MAX_BYTES`
    (text stays text: a character the cut splits is left out whole)."""
    if len(raw) <= RAW_MAX_BYTES:
        return b64_or_text(raw)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw[:RAW_MAX_BYTES]).decode("ascii")
    return raw[:RAW_MAX_BYTES].decode("utf-8", "ignore")


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
    letter: DeadLetter = {
        "error": str(error)[:_ERROR_MAX_CHARS],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw": None if raw is None else _kept(raw),
        "at": to_rfc3339(at_ms),
    }
    if raw is not None and len(raw) > RAW_MAX_BYTES:
        letter["raw_bytes"] = len(raw)
    return letter
