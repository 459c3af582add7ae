"""Instants as integer epoch milliseconds, and their RFC 3339 text form.

The whole project counts time in integer milliseconds since the Unix epoch (UTC): it is what
Kafka timestamps use, it compares and hashes cheaply, and it never carries a time zone that could
be forgotten. Datetimes appear only at the edges (parsing input, writing events), always aware and
in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The Unix epoch, aware, in UTC."""

DAY_MS = 86_400_000
"""Milliseconds in a UTC day (UTC has no DST; leap seconds are not counted, as in Unix time)."""

MIN_TIMESTAMP_MS = 0
"""Earliest event time accepted from input: 1970-01-01T00:00:00Z."""

MAX_TIMESTAMP_MS = 253_402_300_799_999
"""Latest event time accepted from input: 9999-12-31T23:59:59.999Z, the end of ``datetime``."""

_ONE_MS = timedelta(milliseconds=1)

# RFC 3339 "date-time" (section 5.6), plus the space separator it allows in a note. The offset is
# mandatory: a naive time would silently mean the worker's zone. [0-9] rather than \d so that
# non-ASCII digits, which fromisoformat would accept, are refused.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_RFC3339_SHAPE = (
    "must be an RFC 3339 date-time with an offset, like 2026-01-31T09:30:00Z "
    "or 2026-01-31T10:30:00+01:00"
)


def ms_to_datetime(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds ``ms``."""
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    """Epoch milliseconds of the aware datetime ``dt``, sub-millisecond digits truncated (floor).

    Raises ``ValueError`` for a naive datetime, whose instant depends on a zone nobody named.
    """
    if dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} has no UTC offset")
    return (dt - EPOCH) // _ONE_MS


def to_rfc3339(ms: int) -> str:
    """``ms`` as RFC 3339 in UTC with a ``Z``: ``2026-01-01T00:10:00Z``, or ``...00.250Z``.

    Milliseconds are written only when not zero, so whole seconds read cleanly in messages.
    """
    dt = ms_to_datetime(ms)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time with an offset; see :func:`parse_rfc3339`.

    Faster than ``datetime_to_ms(parse_rfc3339(text))``, for the per-record path.
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(_RFC3339_SHAPE)
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ValueError(f"not a real date and time ({exc})") from None
    return (parsed - EPOCH) // _ONE_MS


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``) into an aware UTC datetime.

    Raises ``ValueError`` with a short reason when ``text`` has another shape (a naive time, a
    date alone, a compact ``+hhmm`` offset) or names a date or time that does not exist.
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(_RFC3339_SHAPE)
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ValueError(f"not a real date and time ({exc})") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("falls outside the years 0001..9999 in UTC") from None
