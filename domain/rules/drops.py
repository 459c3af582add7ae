"""Sudden-drop detection (contract section 3.2): assessment and episodes.

Per (account, metric) the worker keeps :class:`~domain.intake.daily.DailyTotals`, the usage
of each UTC day (:class:`~domain.intake.daily.DailyReadings` for a ``max`` or ``latest``
metric: its value each day, a gauge's carried over days without a reading), and the drop
:class:`~domain.intake.daily.Episode` beside it. When a day closes it calls :func:`assess`,
which compares the last few complete days ("recent") with what the same weekdays looked like
in the weeks before ("expected"), and :func:`step`, which turns assessments into at most one
event per drop episode.

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
from typing import Final

from domain.intake.daily import CLOSED, DailyHistory, Episode

_ZERO: Final = Decimal(0)

# Rounding of values that are exact fractions but shown as decimals; fixed here rather than
# taken from the thread's decimal context so that output does not depend on the caller.
_SHOWN: Final = Context(prec=28, rounding=ROUND_HALF_EVEN)


def _to_decimal(value: Fraction) -> Decimal:
    return _SHOWN.divide(Decimal(value.numerator), Decimal(value.denominator))


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


def expected_for(daily: DailyHistory, day: int, baseline_weeks: int) -> Fraction:
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


def assess(daily: DailyHistory, last_complete_day: int, rules: DropRules) -> Assessment:
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
