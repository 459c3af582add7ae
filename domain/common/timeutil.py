"""Instants as integer epoch milliseconds, and their RFC 3339 text form.

The whole project counts time in integer milliseconds since the Unix epoch (UTC): it is what
Kafka timestamps use, it compares and hashes cheaply, and it never carries a time zone that could
be forgotten. Datetimes appear only at the edges (parsing input, writing events), always aware and
in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

from domain.common.bounded import remember

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
# The same shape with its fields captured, for the per-record fast path of parse_rfc3339_ms.
_RFC3339_FIELDS = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
_RFC3339_SHAPE = (
    "must be an RFC 3339 date-time with an offset, like 2026-01-31T09:30:00Z "
    "or 2026-01-31T10:30:00+01:00"
)


_EPOCH_ORDINAL: Final = EPOCH.toordinal()

# Day number (days since 1970-01-01) of each "YYYY-MM-DD" text seen, and the reverse, so a
# date is checked, converted or printed once, not once per record or event. Records come from
# a few days at a time; clearing a cache when it is full keeps it bounded without the
# bookkeeping of an LRU.
_DAY_NUMBERS_MAX: Final = 4096
_day_numbers: dict[str, int] = {}
_date_texts: dict[int, str] = {}


# The time-of-day parts of to_rfc3339, written once (an event writes three or four instants):
# "HH:MM" of each minute of a day, "SS" of each second, ".mmmZ" of each millisecond.
_TWO_DIGITS: Final = tuple(f"{n:02d}" for n in range(60))
_HOURS_MINUTES: Final = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_MILLIS: Final = tuple(f".{n:03d}Z" for n in range(1000))

# "YYYY-MM-DDTHH:MM:SS" of the seconds written lately, by epoch second: the events of a batch
# share their emitted_at second, and the periods and records of busy accounts their seconds.
_SECONDS_MAX: Final = 4096
_second_texts: dict[int, str] = {}


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
    seconds, millis = divmod(ms, 1000)
    text = _second_texts.get(seconds)
    if text is None:
        day, second_of_day = divmod(seconds, 86_400)
        date_text = _date_texts.get(day)
        if date_text is None:
            # strftime, as ever, for the date (it also refuses instants outside datetime's range).
            date_text = ms_to_datetime(ms).strftime("%Y-%m-%d")
            remember(_date_texts, day, date_text, _DAY_NUMBERS_MAX)
        minutes, second = divmod(second_of_day, 60)
        text = f"{date_text}T{_HOURS_MINUTES[minutes]}:{_TWO_DIGITS[second]}"
        remember(_second_texts, seconds, text, _SECONDS_MAX)
    return f"{text}{_MILLIS[millis]}" if millis else f"{text}Z"


def _day_number(text: str) -> int | None:
    """Day number of the date ``YYYY-MM-DD`` (ASCII digits), or None if no such date exists."""
    day = _day_numbers.get(text)
    if day is None:
        try:
            day = date(int(text[:4]), int(text[5:7]), int(text[8:10])).toordinal()
        except ValueError:
            return None
        day -= _EPOCH_ORDINAL
        remember(_day_numbers, text, day, _DAY_NUMBERS_MAX)
    return day


def parse_rfc3339_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time with an offset; see :func:`parse_rfc3339`.

    Faster than ``datetime_to_ms(parse_rfc3339(text))``, for the per-record path: a valid
    date-time is converted with integer arithmetic (sub-millisecond digits truncated, as
    ``datetime.fromisoformat`` truncates beyond microseconds and the conversion floors).
    Anything else takes the ``datetime`` path, which words the error.
    """
    match = _RFC3339_FIELDS.fullmatch(text)
    if match is not None:
        date_text, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
        day = _day_number(date_text)
        h, m, s = int(hour), int(minute), int(second)
        if day is not None and h < 24 and m < 60 and s < 60:
            ms = ((day * 24 + h) * 60 + m) * 60_000 + s * 1000
            if fraction is not None:
                ms += int(fraction[:3].ljust(3, "0"))
            if sign is not None:
                offset_ms = (int(off_hour) * 60 + int(off_minute)) * 60_000
                ms += -offset_ms if sign == "+" else offset_ms
            return ms
        if day is not None and s == 60 and h < 24 and m < 60:
            return _leap_second_ms(text)
    return _parse_rfc3339_ms_slow(text)


def _leap_second_ms(text: str) -> int:
    """A leap second (``23:59:60`` UTC, RFC 3339 5.7) as the last millisecond before the next
    UTC day, as Unix time has no 61st second: it stays in its day and billing period."""
    match = _RFC3339_FIELDS.fullmatch(text)
    if match is None:
        raise ValueError(_RFC3339_SHAPE)
    start, end = match.span(4)
    ms = parse_rfc3339_ms(text[:start] + "59.999" + text[match.end(5) if match[5] else end :])
    if ms % DAY_MS != DAY_MS - 1:
        raise ValueError("not a real date and time (a leap second is 23:59:60 in UTC only)")
    return ms


def _parse_rfc3339_ms_slow(text: str) -> int:
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
    match = _RFC3339_FIELDS.fullmatch(text)
    if match is not None and match[4] == "60":
        return ms_to_datetime(_leap_second_ms(text))
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ValueError(f"not a real date and time ({exc})") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("falls outside the years 0001..9999 in UTC") from None
