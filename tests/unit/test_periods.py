"""Billing periods (contract section 2), UTC day numbers and the RFC 3339 helpers."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import (
    DAY_MS,
    datetime_to_ms,
    ms_to_datetime,
    parse_rfc3339,
    parse_rfc3339_ms,
    to_rfc3339,
)
from domain.plans.periods import (
    DEFAULT_ANCHOR,
    DEFAULT_WEEK_ANCHOR,
    PERIOD_LENGTHS,
    WEEK_MS,
    Period,
    PeriodLength,
    calendar_month,
    date_to_day,
    day_start_ms,
    day_to_date,
    default_anchor,
    period_containing,
    utc_day,
    weekday,
)


def ms(text: str) -> int:
    return datetime_to_ms(datetime.fromisoformat(text))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# Instants between 1980 and 2070: wide enough for every calendar oddity (leap days, 2000 as a
# leap century) while keeping periods far from datetime's limits.
instants = st.integers(min_value=ms("1980-01-01T00:00:00Z"), max_value=ms("2070-01-01T00:00:00Z"))


@st.composite
def anchors(draw: st.DrawFn) -> datetime:
    """Anchors with millisecond precision, biased to month ends and the last minute of a day."""
    year = draw(st.integers(1990, 2060))
    month = draw(st.integers(1, 12))
    last = calendar.monthrange(year, month)[1]
    day = draw(st.one_of(st.integers(28, last), st.integers(1, last)))
    hour, minute = draw(
        st.one_of(
            st.just((23, 59)), st.just((0, 0)), st.tuples(st.integers(0, 23), st.integers(0, 59))
        )
    )
    second = draw(st.integers(0, 59))
    millis = draw(st.integers(0, 999))
    offset = draw(st.sampled_from([0, 0, 120, -300, 330]))
    local = datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=UTC)
    # The same instant written with another offset must give the same periods.
    return local.astimezone(timezone(timedelta(minutes=offset)))


lengths = st.sampled_from(PERIOD_LENGTHS)


@given(ts=instants, anchor=anchors(), length=lengths)
def test_every_instant_falls_in_exactly_one_period(
    ts: int, anchor: datetime, length: PeriodLength
) -> None:
    period = period_containing(ts, anchor, length)

    assert period.start_ms <= ts < period.end_ms
    assert period.contains(ts)
    assert not period.contains(period.end_ms)
    assert period.start == ms_to_datetime(period.start_ms)
    assert period.end == ms_to_datetime(period.end_ms)
    assert period.start.tzinfo is UTC
    # Neighbours tile the time line: no gap, no overlap.
    assert period_containing(period.end_ms, anchor, length).start == period.end
    assert period_containing(period.start_ms - 1, anchor, length).end == period.start
    assert period_containing(period.end_ms - 1, anchor, length) == period


@given(anchor=anchors(), length=lengths)
def test_the_anchor_starts_a_period(anchor: datetime, length: PeriodLength) -> None:
    assert period_containing(datetime_to_ms(anchor), anchor, length).start == anchor


@given(ts=instants, anchor=anchors())
def test_monthly_periods_keep_day_and_time_of_the_anchor_clamped_per_month(
    ts: int, anchor: datetime
) -> None:
    anchor_utc = anchor.astimezone(UTC)
    period = period_containing(ts, anchor, "month")

    for boundary in (period.start, period.end):
        last_day = calendar.monthrange(boundary.year, boundary.month)[1]
        assert boundary.day == min(anchor_utc.day, last_day)
        assert boundary.time() == anchor_utc.time()
    months_apart = (period.end.year - period.start.year) * 12 + period.end.month
    assert months_apart - period.start.month == 1
    assert timedelta(days=28) <= period.end - period.start <= timedelta(days=31)


@given(ts=instants, anchor=anchors(), length=st.sampled_from(["week", "day"]))
def test_weekly_and_daily_periods_have_fixed_length(
    ts: int, anchor: datetime, length: PeriodLength
) -> None:
    period = period_containing(ts, anchor, length)
    step = WEEK_MS if length == "week" else DAY_MS

    assert period.end_ms - period.start_ms == step
    assert (period.start_ms - datetime_to_ms(anchor)) % step == 0


@pytest.mark.parametrize(
    ("ts", "anchor", "start", "end"),
    [
        # Anchor Jan 31: February clamps to its last day, March goes back to the 31st.
        ("2025-02-15T00:00:00Z", "2025-01-31T00:00:00Z", "2025-01-31", "2025-02-28"),
        ("2025-03-01T00:00:00Z", "2025-01-31T00:00:00Z", "2025-02-28", "2025-03-31"),
        ("2025-04-15T00:00:00Z", "2025-01-31T00:00:00Z", "2025-03-31", "2025-04-30"),
        ("2025-05-01T00:00:00Z", "2025-01-31T00:00:00Z", "2025-04-30", "2025-05-31"),
        # Leap years: Feb 29 exists in 2024 and 2000, not in 2100.
        ("2024-02-29T12:00:00Z", "2024-01-31T00:00:00Z", "2024-02-29", "2024-03-31"),
        ("2024-02-28T12:00:00Z", "2024-01-31T00:00:00Z", "2024-01-31", "2024-02-29"),
        ("2000-03-15T00:00:00Z", "1999-01-30T00:00:00Z", "2000-02-29", "2000-03-30"),
        ("2100-03-15T00:00:00Z", "1999-01-30T00:00:00Z", "2100-02-28", "2100-03-30"),
        # An anchor on Feb 29 keeps the 29th where it exists.
        ("2025-03-30T00:00:00Z", "2024-02-29T00:00:00Z", "2025-03-29", "2025-04-29"),
        ("2025-02-28T00:00:00Z", "2024-02-29T00:00:00Z", "2025-02-28", "2025-03-29"),
        # Instants before the anchor: periods extend backwards.
        ("2019-12-31T00:00:00Z", "2025-01-31T00:00:00Z", "2019-12-31", "2020-01-31"),
        ("2020-02-29T23:59:59Z", "2025-01-31T00:00:00Z", "2020-02-29", "2020-03-31"),
        # The default anchor gives calendar months.
        ("2026-01-31T23:59:59.999Z", "2000-01-01T00:00:00Z", "2026-01-01", "2026-02-01"),
    ],
)
def test_monthly_periods_clamp_to_month_ends(ts: str, anchor: str, start: str, end: str) -> None:
    period = period_containing(ms(ts), utc(anchor), "month")

    assert period.start == utc(f"{start}T00:00:00Z")
    assert period.end == utc(f"{end}T00:00:00Z")


def test_an_anchor_at_23_59_on_the_31st_keeps_its_minute() -> None:
    anchor = utc("2025-01-31T23:59:00Z")

    assert period_containing(ms("2025-02-28T23:58:59.999Z"), anchor, "month").start == anchor
    february = period_containing(ms("2025-02-28T23:59:00Z"), anchor, "month")
    assert february.start == utc("2025-02-28T23:59:00Z")
    assert february.end == utc("2025-03-31T23:59:00Z")


def test_anchor_offsets_only_move_the_instant() -> None:
    # 2025-02-01T01:00+02:00 is Jan 31 23:00 UTC: periods follow the UTC day.
    anchor = datetime.fromisoformat("2025-02-01T01:00:00+02:00")

    period = period_containing(ms("2025-03-10T00:00:00Z"), anchor, "month")

    assert period.start == utc("2025-02-28T23:00:00Z")
    assert period.end == utc("2025-03-31T23:00:00Z")


def test_default_anchors() -> None:
    assert default_anchor("month") == DEFAULT_ANCHOR == utc("2000-01-01T00:00:00Z")
    assert default_anchor("day") == DEFAULT_ANCHOR
    assert default_anchor("week") == DEFAULT_WEEK_ANCHOR
    assert DEFAULT_WEEK_ANCHOR.weekday() == 0  # Monday
    week = period_containing(ms("2026-01-01T12:00:00Z"), default_anchor("week"), "week")
    assert week.start == utc("2025-12-29T00:00:00Z")  # the Monday before
    assert week.end == utc("2026-01-05T00:00:00Z")
    day = period_containing(ms("2026-01-01T12:00:00Z"), default_anchor("day"), "day")
    assert (day.start, day.end) == (utc("2026-01-01T00:00:00Z"), utc("2026-01-02T00:00:00Z"))


@given(ts=instants)
def test_calendar_month_is_the_utc_month(ts: int) -> None:
    instant = ms_to_datetime(ts)
    period = calendar_month(ts)

    assert period.start == instant.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert period.end == (period.start + timedelta(days=32)).replace(day=1)


def test_repeated_calls_return_equal_periods() -> None:
    anchor = utc("2025-01-31T10:00:00Z")
    first = period_containing(ms("2025-02-10T00:00:00Z"), anchor, "month")

    assert period_containing(ms("2025-02-20T00:00:00Z"), anchor, "month") == first
    assert period_containing(ms("2025-03-10T00:00:00Z"), anchor, "month") != first
    assert period_containing(ms("2025-02-10T00:00:00Z"), anchor, "month") == first


def test_naive_anchor_and_unknown_length_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        period_containing(0, datetime(2025, 1, 1), "month")
    with pytest.raises(ValueError, match="unknown period length"):
        period_containing(0, DEFAULT_ANCHOR, "year")  # type: ignore[arg-type]


def test_periods_beyond_year_9999_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the years"):
        period_containing(ms("9999-12-31T12:00:00Z"), DEFAULT_ANCHOR, "month")


def test_period_from_datetimes_matches_period_from_ms() -> None:
    start = datetime.fromisoformat("2025-01-01T02:00:00+02:00")
    period = Period(start, utc("2025-02-01T00:00:00Z"))

    assert period == Period.from_ms(ms("2025-01-01T00:00:00Z"), ms("2025-02-01T00:00:00Z"))
    assert period.start.tzinfo is UTC
    assert period.start_ms == ms("2025-01-01T00:00:00Z")


def test_empty_or_reversed_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="not after"):
        Period(utc("2025-02-01T00:00:00Z"), utc("2025-01-01T00:00:00Z"))
    with pytest.raises(ValueError, match="not after"):
        Period.from_ms(5, 5)


@given(ts=st.integers(min_value=-(10**13), max_value=10**14))
def test_utc_day_numbers(ts: int) -> None:
    day = utc_day(ts)

    assert day_start_ms(day) <= ts < day_start_ms(day + 1)
    assert day_to_date(day) == ms_to_datetime(ts).date()
    assert date_to_day(day_to_date(day)) == day
    assert weekday(day) == day_to_date(day).weekday()


def test_utc_day_examples() -> None:
    assert utc_day(0) == 0
    assert utc_day(-1) == -1
    assert day_to_date(0) == date(1970, 1, 1)
    assert date_to_day(date(2026, 1, 1)) == 20454
    assert weekday(0) == 3  # a Thursday


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1767225600000, "2026-01-01T00:00:00Z"),
        (1767225600250, "2026-01-01T00:00:00.250Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_to_rfc3339(ts: int, text: str) -> None:
    assert to_rfc3339(ts) == text
    assert parse_rfc3339_ms(text) == ts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"),
        ("2026-01-01t00:00:00z", "2026-01-01T00:00:00+00:00"),
        ("2026-01-01 02:00:00+02:00", "2026-01-01T00:00:00+00:00"),
        ("2026-01-01T00:00:00.123456789-01:30", "2026-01-01T01:30:00.123456+00:00"),
    ],
)
def test_parse_rfc3339_accepts_offsets(text: str, expected: str) -> None:
    assert parse_rfc3339(text) == datetime.fromisoformat(expected)
    assert parse_rfc3339(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00",  # naive
        "2026-01-01",
        "2026-01-01T00:00Z",  # no seconds
        "2026-01-01T00:00:00+0200",
        "20260101T000000Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00+24:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "２026-01-01T00:00:00Z",  # a full-width digit
    ],
)
def test_parse_rfc3339_refuses_other_shapes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_datetime_to_ms_refuses_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ms(datetime(2026, 1, 1))
