"""Instants and their RFC 3339 text (domain/common/timeutil.py): the per-record fast paths give
exactly what the datetime-based definitions give, errors included."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain.common.timeutil import MAX_TIMESTAMP_MS, parse_rfc3339, parse_rfc3339_ms, to_rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


def reference_parse_ms(text: str) -> int:
    """RFC 3339 to epoch ms by datetime, as parse_rfc3339_ms has always been defined."""
    if not SHAPE.fullmatch(text):
        raise ValueError("shape")
    leap = text[17:19] == "60"
    if leap:  # a leap second: the second before it, plus 999 ms, if that ends a UTC day
        text = text[:17] + "59" + re.sub(r"^\.[0-9]+", "", text[19:])
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError:
        raise ValueError("not real") from None
    ms = (parsed - EPOCH) // timedelta(milliseconds=1)
    if leap:
        ms += 999
        if (parsed.astimezone(UTC).hour, parsed.astimezone(UTC).minute) != (23, 59):
            raise ValueError("not real")
    return ms


def reference_to_rfc3339(ms: int) -> str:
    """Epoch ms to RFC 3339 by strftime, as to_rfc3339 has always been defined."""
    dt = EPOCH + timedelta(milliseconds=ms)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# Fields around and beyond their valid ranges, so that invalid dates and times come up often.
date_times = st.builds(
    lambda year, month, day, sep, hour, minute, second, fraction, zone: (
        f"{year:04d}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{zone}"
    ),
    st.integers(0, 9999),
    two(0, 13),
    two(0, 32),
    st.sampled_from(["T", "t", " ", "x"]),
    two(0, 25),
    two(0, 61),
    two(0, 61),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=10).map(".{}".format)),
    st.one_of(
        st.sampled_from(["Z", "z", "", "+0100", "+01:00:00"]),
        st.builds(lambda s, h, m: f"{s}{h}:{m}", st.sampled_from("+-"), two(0, 25), two(0, 61)),
    ),
)


def outcome(parse: Callable[[str], int], text: str) -> int | str:
    try:
        return parse(text)
    except ValueError as exc:
        return "shape" if "RFC 3339 date-time" in str(exc) or str(exc) == "shape" else "not real"


@given(text=date_times | st.text(max_size=40))
@example(text="2025-12-31T23:00:00.1239999Z")
@example(text="2024-02-29T23:59:59.999+23:59")
@example(text="2023-02-29T00:00:00Z")
@example(text="0000-01-01T00:00:00Z")
@example(text="0001-01-01T00:00:00+23:59")
@example(text="9999-12-31T23:59:59-23:59")
@example(text="2025-12-31T24:00:00Z")
@example(text="2025-12-31T23:59:60Z")
def test_parse_rfc3339_ms_is_the_datetime_definition(text: str) -> None:
    assert outcome(parse_rfc3339_ms, text) == outcome(reference_parse_ms, text)


@pytest.mark.parametrize(
    "text",
    ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.25Z", "2017-01-01T00:59:60+01:00"],
)
def test_a_leap_second_is_the_last_millisecond_of_its_utc_day(text: str) -> None:
    assert to_rfc3339(parse_rfc3339_ms(text)) == "2016-12-31T23:59:59.999Z"
    assert parse_rfc3339(text) == datetime(2016, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)


def test_a_sixtieth_second_elsewhere_is_not_a_real_time() -> None:
    with pytest.raises(ValueError, match="a leap second is 23:59:60 in UTC only"):
        parse_rfc3339_ms("2016-12-31T12:00:60Z")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2025-12-31T23:00", "must be an RFC 3339 date-time with an offset"),
        ("2025-02-30T00:00:00Z", "not a real date and time"),
        ("2025-12-31T24:00:00Z", "not a real date and time"),
    ],
)
def test_parse_rfc3339_ms_errors_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_rfc3339_ms(text)


@given(ms=st.integers(-62_135_596_800_000, MAX_TIMESTAMP_MS))
@example(ms=0)
@example(ms=-1)
@example(ms=-62_135_596_800_000)  # 0001-01-01T00:00:00Z
@example(ms=MAX_TIMESTAMP_MS)
@example(ms=1_794_873_599_999)  # 2026-11-16T23:59:59.999Z, the last millisecond of a day
def test_to_rfc3339_is_the_strftime_definition(ms: int) -> None:
    assert to_rfc3339(ms) == reference_to_rfc3339(ms)
    # The text of its second is remembered: the other instants of that second read right too.
    second = ms - ms % 1000
    for other in (second, second + 1, second + 999, ms):
        assert to_rfc3339(other) == reference_to_rfc3339(other)


@pytest.mark.parametrize("ms", [MAX_TIMESTAMP_MS + 1, -62_135_596_800_001])
def test_to_rfc3339_refuses_instants_datetime_cannot_hold(ms: int) -> None:
    with pytest.raises(OverflowError):
        to_rfc3339(ms)
    with pytest.raises(OverflowError):
        reference_to_rfc3339(ms)
