"""Sudden-drop detection (contract section 3.2): daily totals, assessment and episodes.

Per (account, metric) the worker keeps :class:`DailyTotals`, the usage of each UTC day. When a
day closes it calls :func:`assess`, which compares the last few complete days ("recent") with
what the same weekdays looked like in the weeks before ("expected"), and :func:`step`, which
turns assessments into at most one event per drop episode.

Comparing each recent day with the same weekday of earlier weeks is what keeps weekly rhythms
from looking like drops: an account that is quiet every weekend expects a quiet weekend.

Days before the account's first record are *not* zero usage, they are days we know nothing
about, so they are left out of the weekday means instead of diluting them: a ten-day-old
account with a steady 100 a day expects 100 on each recent day, not 25.

All comparisons are exact. A weekday mean over three weeks is a third of a sum and has no
exact decimal form, so the threshold tests run on :class:`fractions.Fraction`; the decimal
fields of :class:`Assessment` are the exact values rounded to 28 significant digits only when
they do not terminate (shown in events, never compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction
from typing import Any, Final

from domain.plans.periods import utc_day

_ZERO: Final = Decimal(0)

# Rounding of values that are exact fractions but shown as decimals; fixed here rather than
# taken from the thread's decimal context so that output does not depend on the caller.
_SHOWN: Final = Context(prec=28, rounding=ROUND_HALF_EVEN)


def _to_decimal(value: Fraction) -> Decimal:
    return _SHOWN.divide(Decimal(value.numerator), Decimal(value.denominator))


class DailyTotals:
    """Usage of one (account, metric) per UTC day, the state drop detection reads.

    ``days`` maps a UTC day number (:func:`domain.plans.periods.utc_day`) to the sum of quantities
    whose timestamps fall on that day; days with no usage are absent (they count as zero).

    ``first_day`` is the earliest day of any record ever added, a zero quantity included (a
    record of zero is still an observation of the account), and survives :meth:`prune`: it is
    where the account's history starts, which decides how old the account is and which
    baseline days count as observed. ``last_active_ms`` is the latest event time of a record
    with a positive quantity (``last_active_at`` in a drop event). Records may arrive out of
    order, so both are a minimum and a maximum, not the first and last seen.

    Totals read with :meth:`from_json` stay in their stored text form until ``days`` is read:
    the usage path adds to one or two days of a month-long history per batch, then writes it
    back, so it touches only those days instead of parsing and re-printing every one of them.
    The stored form is the one :meth:`to_json` writes (day numbers in ascending order, each
    total as ``str`` of its Decimal); additions and pruning work on it directly and give the
    same totals, and the same JSON, as on parsed days.
    """

    __slots__ = (
        "_days",
        "_text",
        "_text_shared",
        "_pending_day",
        "_pending_total",
        "first_day",
        "last_active_ms",
    )
    __match_args__ = ("days", "first_day", "last_active_ms")

    _days: dict[int, Decimal] | None
    _text: dict[str, str]
    _text_shared: bool
    _pending_day: int | None
    _pending_total: Decimal
    first_day: int | None
    last_active_ms: int | None

    def __init__(
        self,
        days: dict[int, Decimal] | None = None,
        first_day: int | None = None,
        last_active_ms: int | None = None,
    ) -> None:
        # Either _days holds the parsed days, or it is None and _text holds them as stored.
        self._days = {} if days is None else days
        self._text = {}
        # The text dict belongs to someone else too (the JSON it came from or went into): it is
        # copied before it is changed.
        self._text_shared = False
        # The day being added to in the stored form, and its total: written into _text (see
        # _flush) before anything reads it, so several records of a day print it once.
        self._pending_day = None
        self._pending_total = _ZERO
        self.first_day = first_day
        self.last_active_ms = last_active_ms

    @property
    def days(self) -> dict[int, Decimal]:
        """Usage per UTC day number (parsed from the stored form on first use)."""
        days = self._days
        if days is None:
            days = self._days = {int(day): Decimal(total) for day, total in self._flush().items()}
            self._text = {}
        return days

    @days.setter
    def days(self, days: dict[int, Decimal]) -> None:
        self._days = days
        self._text = {}
        self._pending_day = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DailyTotals) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.days, self.first_day, self.last_active_ms) == (
            other.days,
            other.first_day,
            other.last_active_ms,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        return (
            f"DailyTotals(days={self.days!r}, first_day={self.first_day!r}, "
            f"last_active_ms={self.last_active_ms!r})"
        )

    def add(self, ts_ms: int, quantity: Decimal) -> None:
        """Count ``quantity`` (finite, >= 0) on the UTC day of event time ``ts_ms``.

        A day older than the caller's retention is counted too; the next :meth:`prune` drops
        it again, and days older than :attr:`DropRules.lookback_days` are never read.
        """
        if not quantity.is_finite() or quantity < 0:
            raise ValueError(f"quantity must be a finite number >= 0, not {quantity}")
        day = utc_day(ts_ms)
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if quantity > 0:
            days = self._days
            if days is not None or not self._add_to_text(day, quantity):
                days = self.days
                days[day] = days.get(day, _ZERO) + quantity
            if self.last_active_ms is None or ts_ms > self.last_active_ms:
                self.last_active_ms = ts_ms

    def _add_to_text(self, day: int, quantity: Decimal) -> bool:
        """Add ``quantity`` to ``day`` in the stored form; False (nothing done) when ``day`` is
        new and not after the last stored day, as appending it would break the order."""
        if day == self._pending_day:
            self._pending_total = self._pending_total + quantity
            return True
        text = self._flush()
        held = text.get(str(day))
        if held is None:
            if text and int(next(reversed(text))) >= day:
                return False
            total = _ZERO + quantity
        else:
            total = Decimal(held) + quantity
        self._pending_day = day
        self._pending_total = total
        return True

    def _flush(self) -> dict[str, str]:
        """The stored form, with the pending day's total written into it (at the end when the
        day is new: it was checked to come after every stored day, and nothing was added
        since)."""
        text = self._text
        day = self._pending_day
        if day is not None:
            if self._text_shared:
                text = self._text = dict(text)
                self._text_shared = False
            text[str(day)] = str(self._pending_total)
            self._pending_day = None
        return text

    def total(self, day: int) -> Decimal:
        """Usage on day number ``day`` (zero when nothing was counted)."""
        days = self._days
        if days is None:
            held = self._flush().get(str(day))
            return _ZERO if held is None else Decimal(held)
        return days.get(day, _ZERO)

    def is_empty(self) -> bool:
        """No day with usage kept (``first_day`` and ``last_active_ms`` aside)."""
        days = self._days
        if days is None:
            return self._pending_day is None and not self._text
        return not days

    def prune(self, oldest_day_kept: int) -> bool:
        """Forget days before ``oldest_day_kept``; True if any went. ``first_day`` stays."""
        days = self._days
        if days is None:
            # Stored days ascend, so the old ones are at the front.
            text = self._flush()
            old_keys: list[str] = []
            for key in text:
                if int(key) >= oldest_day_kept:
                    break
                old_keys.append(key)
            if not old_keys:
                return False
            if self._text_shared:
                text = self._text = dict(text)
                self._text_shared = False
            for key in old_keys:
                del text[key]
            return True
        old = [day for day in days if day < oldest_day_kept]
        for day in old:
            del days[day]
        return bool(old)

    def to_json(self) -> dict[str, Any]:
        """Compact JSON-ready form: ``{"f": first_day, "a": last_active_ms, "d": {day: total}}``.

        Day numbers become string keys and totals strings (nothing is rounded); absent or empty
        members are left out, so an account holding several metrics stays small.
        """
        data: dict[str, Any] = {}
        if self.first_day is not None:
            data["f"] = self.first_day
        if self.last_active_ms is not None:
            data["a"] = self.last_active_ms
        days = self._days
        if days is None:
            text = self._flush()
            if text:
                data["d"] = text
                self._text_shared = True
        elif days:
            data["d"] = {str(day): str(total) for day, total in sorted(days.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DailyTotals:
        """Inverse of :meth:`to_json`; ``None`` gives empty totals."""
        data = data or {}
        text = data.get("d", {})
        totals = cls(None, data.get("f"), data.get("a"))
        if type(text) is dict:
            totals._days = None
            totals._text = text
            totals._text_shared = True
        else:  # not what to_json writes: parse it now, as strictly as ever
            totals._days = {int(day): Decimal(total) for day, total in text.items()}
        return totals


@dataclass(frozen=True, slots=True)
class DropRules:
    """The knobs of drop detection, defaults as in contract section 3.2.

    ``recent_days`` complete days are compared with the same weekdays of the previous
    ``baseline_weeks`` weeks. A drop needs ``min_history_days`` of history before the recent
    days, an expected total of at least ``min_expected`` units, and a recent total of at most
    ``(1 - fraction)`` of expected. An episode ends once recent is back to ``rearm_ratio`` of
    expected.
    """

    recent_days: int = 3
    baseline_weeks: int = 4
    min_expected: Decimal = Decimal(100)
    fraction: Decimal = Decimal("0.7")
    min_history_days: int = 14
    rearm_ratio: Decimal = Decimal("0.6")

    def __post_init__(self) -> None:
        if self.recent_days < 1:
            raise ValueError(f"recent_days must be at least 1, not {self.recent_days}")
        if self.baseline_weeks < 1:
            raise ValueError(f"baseline_weeks must be at least 1, not {self.baseline_weeks}")
        if not self.min_expected.is_finite() or self.min_expected < 0:
            raise ValueError(f"min_expected must be a number >= 0, not {self.min_expected}")
        if not self.fraction.is_finite() or not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], not {self.fraction}")
        if self.min_history_days < 0:
            raise ValueError(f"min_history_days must be >= 0, not {self.min_history_days}")
        if not self.rearm_ratio.is_finite() or self.rearm_ratio < 0:
            raise ValueError(f"rearm_ratio must be a number >= 0, not {self.rearm_ratio}")

    @property
    def lookback_days(self) -> int:
        """How many days :func:`assess` reads, ending at the last complete day (31 by default):
        daily totals older than that can be pruned without changing any assessment."""
        return self.recent_days + 7 * self.baseline_weeks


@dataclass(frozen=True, slots=True)
class Assessment:
    """How the recent days of one (account, metric) compare with their baseline.

    ``recent_days`` are the day numbers assessed, oldest first; ``recent_total`` is their
    usage and ``expected_total`` the sum of their weekday means. ``ratio`` is recent over
    expected, ``None`` when nothing was expected. ``history_days`` counts the days from the
    account's first record up to the first recent day (excluded). ``eligible`` says the account
    is old and busy enough to be judged; ``is_drop`` that it is and recent fell far enough.
    ``expected_exact`` is ``expected_total`` before rounding, what comparisons use.
    """

    recent_days: tuple[int, ...]
    recent_total: Decimal
    expected_total: Decimal
    ratio: Decimal | None
    history_days: int
    eligible: bool
    is_drop: bool
    expected_exact: Fraction = field(repr=False)

    @property
    def first_recent_day(self) -> int:
        """The oldest recent day: the day in a drop event's identity."""
        return self.recent_days[0]


def expected_for(daily: DailyTotals, day: int, baseline_weeks: int) -> Fraction:
    """Mean usage of ``day``'s weekday over the ``baseline_weeks`` weeks before it.

    Baseline days before the account's first record are left out of the mean; a baseline day
    within the history with no usage counts as zero. With no baseline day in the history the
    day expects nothing (zero).
    """
    if daily.first_day is None:
        return Fraction(0)
    observed = [
        daily.total(day - 7 * k)
        for k in range(1, baseline_weeks + 1)
        if day - 7 * k >= daily.first_day
    ]
    if not observed:
        return Fraction(0)
    return Fraction(sum(observed, _ZERO)) / len(observed)


def assess(daily: DailyTotals, last_complete_day: int, rules: DropRules) -> Assessment:
    """Judge the ``rules.recent_days`` complete days ending at ``last_complete_day``.

    Usage after ``last_complete_day`` (a day still open) is ignored. A drop needs at least
    ``rules.min_history_days`` of history, an expected total of at least ``rules.min_expected``
    and ``recent <= (1 - fraction) * expected``, all compared exactly, so a fall of exactly
    the fraction is a drop.
    """
    recent_days = tuple(range(last_complete_day - rules.recent_days + 1, last_complete_day + 1))
    recent_total = sum((daily.total(day) for day in recent_days), _ZERO)
    expected = sum(
        (expected_for(daily, day, rules.baseline_weeks) for day in recent_days), Fraction(0)
    )
    first_recent = recent_days[0]
    history_days = 0 if daily.first_day is None else max(0, first_recent - daily.first_day)
    recent = Fraction(recent_total)
    eligible = history_days >= rules.min_history_days and expected >= Fraction(rules.min_expected)
    is_drop = eligible and recent <= (1 - Fraction(rules.fraction)) * expected
    return Assessment(
        recent_days=recent_days,
        recent_total=recent_total,
        expected_total=_to_decimal(expected),
        ratio=None if expected == 0 else _to_decimal(recent / expected),
        history_days=history_days,
        eligible=eligible,
        is_drop=is_drop,
        expected_exact=expected,
    )


@dataclass(frozen=True, slots=True)
class Episode:
    """Whether a drop of one (account, metric) has been announced and not yet recovered.

    ``opened_day`` is the first recent day of the assessment that opened the episode (the day
    in the event's identity), ``None`` when closed. ``announced`` says whether the drop that
    opened it was sent as an event: episodes move for every account, but only those with a
    known, active plan get a sudden-drop, and only an announced drop gets a usage-recovered
    when the episode ends (contract 3.3: none without a preceding drop event).
    """

    open: bool = False
    opened_day: int | None = None
    announced: bool = True

    def __post_init__(self) -> None:
        if self.open != (self.opened_day is not None):
            raise ValueError("an open episode needs an opened_day, and a closed one has none")

    def to_json(self) -> int | dict[str, Any] | None:
        """JSON-ready form: the opened day (announced), ``{"day": d, "announced": false}``
        (a drop that was not sent), or ``None`` when closed. A bare day is what versions
        before recoveries wrote; those only kept announced drops of active accounts, the
        usual case, so it still means announced."""
        if self.opened_day is not None and not self.announced:
            return {"day": self.opened_day, "announced": False}
        return self.opened_day

    @classmethod
    def from_json(cls, data: int | dict[str, Any] | None) -> Episode:
        """Inverse of :meth:`to_json`."""
        if data is None:
            return CLOSED
        if isinstance(data, dict):
            return cls(True, int(data["day"]), bool(data.get("announced", True)))
        return cls(True, data)


CLOSED: Final = Episode()
"""The episode of an (account, metric) with no unrecovered drop."""


def recovered(assessment: Assessment, rules: DropRules) -> bool:
    """Whether recent usage is back to at least ``rules.rearm_ratio`` of expected (exactly).

    With nothing expected this holds trivially: an account silent for longer than the baseline
    has no pattern left to fall from, and its next drop needs new usage to build one.
    """
    recent = Fraction(assessment.recent_total)
    return recent >= Fraction(rules.rearm_ratio) * assessment.expected_exact


def ended(before: Episode, after: Episode) -> int | None:
    """The opened day of the episode an evaluation ended, when it ended an announced one:
    the moment of a usage-recovered (contract 3.3). ``None`` otherwise."""
    if before.open and not after.open and before.announced:
        return before.opened_day
    return None


def step(episode: Episode, assessment: Assessment, rules: DropRules) -> tuple[bool, Episode]:
    """Advance the drop episode by one assessment: ``(emit, new_episode)``.

    A drop while no episode is open emits and opens one; nothing emits while it is open; it
    closes (re-arms) once recent is back to ``rules.rearm_ratio`` of expected and the
    assessment is no drop, the second condition mattering only when ``rearm_ratio`` is set
    below ``1 - fraction``. Replaying an assessment that opened the episode emits nothing.
    """
    if episode.open:
        if not assessment.is_drop and recovered(assessment, rules):
            return False, CLOSED
        return False, episode
    if assessment.is_drop:
        return True, Episode(True, assessment.first_recent_day)
    return False, episode


def new_pace_period_projection(
    recent_total: Decimal,
    recent_days: int,
    period_days_remaining: Decimal | int,
    period_to_date_total: Decimal,
) -> Decimal:
    """The billing period's total if usage goes on at the recent pace.

    ``period_to_date_total + recent_total / recent_days * period_days_remaining``: what a
    downgrade suggestion is sized against. ``period_days_remaining`` may have a fraction (a
    period need not end at midnight UTC). Computed exactly and rounded once, to 28 significant
    digits, only when the result has no exact decimal form.
    """
    if recent_days < 1:
        raise ValueError(f"recent_days must be at least 1, not {recent_days}")
    if period_days_remaining < 0:
        raise ValueError(f"period_days_remaining must be >= 0, not {period_days_remaining}")
    pace = Fraction(recent_total) / recent_days
    return _to_decimal(Fraction(period_to_date_total) + pace * Fraction(period_days_remaining))
