"""Billing periods (contract section 2) and UTC day numbers.

An account's periods start at its billing anchor and repeat every month, week or day, forwards
and backwards in time. Monthly periods keep the anchor's day of month and time of day (UTC),
clamped to the last day of shorter months: with an anchor on Jan 31 at 10:00 the periods start
Jan 31 10:00, Feb 28 (or 29) 10:00, Mar 31 10:00, ... The clamp applies to each month on its
own, so a short February does not pull later periods to the 28th, which is what billing systems
do.

:func:`period_containing` runs for every usage record, so it is O(1): it finds the period from
the calendar month of the instant instead of stepping from the anchor.

Periods have millisecond resolution, like event timestamps: an anchor's sub-millisecond digits
are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final, Literal, get_args

from domain.common.bounded import remember
from domain.common.timeutil import DAY_MS, EPOCH, datetime_to_ms, ms_to_datetime

PeriodLength = Literal["month", "week", "day"]
"""Length of a billing period, as written in the catalog's ``[defaults] period``."""

PERIOD_LENGTHS: Final[tuple[PeriodLength, ...]] = get_args(PeriodLength)

DEFAULT_ANCHOR: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""Anchor of accounts without a ``billing_anchor``: periods start on the 1st at 00:00 UTC
(monthly) or at midnight UTC (daily). 2000-01-01 is a Saturday, so weekly periods use
:data:`DEFAULT_WEEK_ANCHOR` instead (see :func:`default_anchor`)."""

DEFAULT_WEEK_ANCHOR: Final = datetime(2000, 1, 3, tzinfo=UTC)
"""Anchor of weekly periods of accounts without a ``billing_anchor``: a Monday at 00:00 UTC, so
default weeks run Monday to Monday (ISO 8601 weeks)."""

WEEK_MS: Final = 7 * DAY_MS

_DEFAULT_ANCHOR_MS: Final = datetime_to_ms(DEFAULT_ANCHOR)

_EPOCH_ORDINAL: Final = EPOCH.toordinal()

_DAYS_IN_MONTH: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval of time ``[start, end)``: ``end`` is the next period's start.

    ``start`` and ``end`` are aware datetimes in UTC; ``start_ms`` and ``end_ms`` are the same
    instants in epoch milliseconds, computed once because the hot path compares integers.
    """

    start: datetime
    end: datetime
    start_ms: int = field(init=False, repr=False, compare=False)
    end_ms: int = field(init=False, repr=False, compare=False)
    #: ``(start_ms, end_ms)``, the key of the period's cells in state, made once (the intake
    #: folds every record into its period's cell).
    span: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        start_ms = datetime_to_ms(self.start)
        end_ms = datetime_to_ms(self.end)
        if end_ms <= start_ms:
            raise ValueError(f"period end {self.end} is not after its start {self.start}")
        # Frozen dataclass: fields can only be set through object.__setattr__.
        _set = object.__setattr__
        _set(self, "start", self.start.astimezone(UTC))
        _set(self, "end", self.end.astimezone(UTC))
        _set(self, "start_ms", start_ms)
        _set(self, "end_ms", end_ms)
        _set(self, "span", (start_ms, end_ms))

    @classmethod
    def from_ms(cls, start_ms: int, end_ms: int) -> Period:
        """The period ``[start_ms, end_ms)`` given in epoch milliseconds."""
        if end_ms <= start_ms:
            raise ValueError(f"period end {end_ms} is not after its start {start_ms}")
        # Skips __post_init__'s round trip through datetimes: this runs once per record.
        period = object.__new__(cls)
        _set = object.__setattr__
        _set(period, "start", ms_to_datetime(start_ms))
        _set(period, "end", ms_to_datetime(end_ms))
        _set(period, "start_ms", start_ms)
        _set(period, "end_ms", end_ms)
        _set(period, "span", (start_ms, end_ms))
        return period

    def contains(self, ts_ms: int) -> bool:
        """Whether the instant ``ts_ms`` (epoch ms) lies in this period (``end`` excluded)."""
        return self.start_ms <= ts_ms < self.end_ms


def default_anchor(length: PeriodLength) -> datetime:
    """The anchor used when an account has none: the 1st of the month, a Monday, or midnight."""
    return DEFAULT_WEEK_ANCHOR if length == "week" else DEFAULT_ANCHOR


# Consecutive records of an account nearly always fall in the period of the previous one, so
# the last period is remembered per (anchor, length), the anchor in epoch ms. Clearing the
# cache wholesale when it is full keeps it bounded without the bookkeeping of an LRU.
_RECENT_PERIODS_MAX: Final = 65_536
_recent_periods: dict[tuple[int, str], Period] = {}


def period_containing(ts_ms: int, anchor: datetime, length: PeriodLength) -> Period:
    """The period of length ``length`` anchored at ``anchor`` that contains instant ``ts_ms``.

    ``anchor`` must be aware; any offset is fine, the periods follow its UTC day and time.
    Instants before the anchor get the periods that precede it. Raises ``ValueError`` for a
    naive anchor, an unknown length, or a period outside the years 1..9999.
    """
    return period_containing_ms(ts_ms, datetime_to_ms(anchor), length)


def period_containing_ms(ts_ms: int, anchor_ms: int, length: PeriodLength) -> Period:
    """:func:`period_containing` with the anchor in epoch milliseconds (the per-record form)."""
    key = (anchor_ms, length)
    recent = _recent_periods.get(key)
    if recent is not None and recent.start_ms <= ts_ms < recent.end_ms:
        return recent
    period = _compute_period(ts_ms, anchor_ms, length)
    remember(_recent_periods, key, period, _RECENT_PERIODS_MAX)
    return period


def _compute_period(ts_ms: int, anchor_ms: int, length: PeriodLength) -> Period:
    if length not in PERIOD_LENGTHS:
        raise ValueError(f"unknown period length {length!r}: expected one of {PERIOD_LENGTHS}")
    try:
        if length == "month":
            start_ms, end_ms = _month_bounds(ts_ms, anchor_ms)
        else:
            step = WEEK_MS if length == "week" else DAY_MS
            start_ms = ts_ms - (ts_ms - anchor_ms) % step
            end_ms = start_ms + step
        return Period.from_ms(start_ms, end_ms)
    except (OverflowError, ValueError):
        raise ValueError(f"the period containing {ts_ms} falls outside the years 1..9999") from None


# Periods as state keys ("start_ms:end_ms" text) and back. Periods are shared by many accounts
# (every account without its own anchor has the same ones) and recur in every batch, so each
# text is split and parsed, or printed, once. Bounded like the period cache.
_SPANS_MAX: Final = 65_536
_span_of_text: dict[str, tuple[int, int]] = {}
_text_of_span: dict[tuple[int, int], str] = {}


def span_of_text(text: str) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of a period's state key ``"start_ms:end_ms"``."""
    span = _span_of_text.get(text)
    if span is None:
        start, _, end = text.partition(":")
        span = (int(start), int(end))
        remember(_span_of_text, text, span, _SPANS_MAX)
    return span


def span_text(span: tuple[int, int]) -> str:
    """The state key ``"start_ms:end_ms"`` of the period ``(start_ms, end_ms)``."""
    text = _text_of_span.get(span)
    if text is None:
        text = f"{span[0]}:{span[1]}"
        remember(_text_of_span, span, text, _SPANS_MAX)
    return text


def calendar_month(ts_ms: int) -> Period:
    """The UTC calendar month containing ``ts_ms``: where usage of accounts with no known plan
    accumulates until a plan arrives."""
    return period_containing_ms(ts_ms, _DEFAULT_ANCHOR_MS, "month")


def utc_day(ts_ms: int) -> int:
    """The UTC day number of ``ts_ms``: days since 1970-01-01 (day 0), negative before it."""
    return ts_ms // DAY_MS


def day_start_ms(day: int) -> int:
    """Epoch milliseconds of 00:00 UTC on day number ``day``."""
    return day * DAY_MS


def day_to_date(day: int) -> date:
    """The calendar date of day number ``day``."""
    return date.fromordinal(day + _EPOCH_ORDINAL)


def date_to_day(d: date) -> int:
    """The day number of the calendar date ``d`` (its time and zone, if a datetime, ignored)."""
    return d.toordinal() - _EPOCH_ORDINAL


def weekday(day: int) -> int:
    """Weekday of day number ``day``, Monday 0 to Sunday 6 (like ``date.weekday``)."""
    return (day + 3) % 7  # 1970-01-01, day 0, was a Thursday.


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def _month_start_ms(month_index: int, day: int, time_ms: int) -> int:
    """Start of the monthly period that begins in month ``month_index`` (``year * 12 + month -
    1``): the anchor's ``day``, clamped to the month's length, at ``time_ms`` after midnight."""
    year, month0 = divmod(month_index, 12)
    clamped = min(day, _days_in_month(year, month0 + 1))
    return (date(year, month0 + 1, clamped).toordinal() - _EPOCH_ORDINAL) * DAY_MS + time_ms


def _month_bounds(ts_ms: int, anchor_ms: int) -> tuple[int, int]:
    anchor_day = day_to_date(anchor_ms // DAY_MS).day
    anchor_time = anchor_ms % DAY_MS
    civil = day_to_date(ts_ms // DAY_MS)
    month_index = civil.year * 12 + civil.month - 1
    # Each month holds exactly one period start, so the period starts either in the instant's
    # own month or, when the instant comes before that month's start, in the month before.
    start = _month_start_ms(month_index, anchor_day, anchor_time)
    if ts_ms < start:
        return _month_start_ms(month_index - 1, anchor_day, anchor_time), start
    return start, _month_start_ms(month_index + 1, anchor_day, anchor_time)
