"""Projections: period total at the current pace, and when the limit is (or was) reached."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import DAY_MS
from domain.plans.periods import Period
from domain.rules.projection import Projection, project, project_recent, round_total

D = Decimal
START = 1_793_491_200_000  # 2026-11-01T00:00:00Z
PERIOD = Period.from_ms(START, START + 30 * DAY_MS)  # November: 30 days
HALF = START + 15 * DAY_MS


def test_pace_doubles_a_total_half_way_through() -> None:
    assert project(D(60), PERIOD, HALF, D(100), None) == Projection(
        D(120),
        START + 25 * DAY_MS,  # 100 at 4 a day: day 25
    )


def test_limit_reached_exactly_at_the_end_is_not_reached_in_the_period() -> None:
    assert project(D(50), PERIOD, HALF, D(100), None) == Projection(D(100), None)


def test_limit_already_reached_reports_when_it_was() -> None:
    reached = START + 10 * DAY_MS
    assert project(D(100), PERIOD, HALF, D(100), reached) == Projection(D(200), reached)
    assert project(D(150), PERIOD, HALF, D(100), None).limit_reached_at_ms is None


def test_no_limit_or_no_usage_reaches_nothing() -> None:
    assert project(D(60), PERIOD, HALF, None, None) == Projection(D(120), None)
    assert project(D(0), PERIOD, HALF, D(100), None) == Projection(D(0), None)


def test_elapsed_is_clamped_to_the_period() -> None:
    # At the very start the pace divides by 1 ms rather than by zero.
    assert project(D(1), PERIOD, START, None, None).period_total == D(30 * DAY_MS)
    assert project(D(1), PERIOD, START - 5, None, None).period_total == D(30 * DAY_MS)
    # A late record within the grace counts the whole period: the total is the projection.
    assert project(D(70), PERIOD, PERIOD.end_ms + 1000, D(100), None) == Projection(D(70), None)


def test_limit_instant_is_rounded_up_to_the_millisecond() -> None:
    # 100 / (3 per 10 ms) = 333.33... ms after the start: 334.
    period = Period.from_ms(0, 1000)
    assert project(D(3), period, 10, D(100), None).limit_reached_at_ms == 334


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (D(10), D(21)),  # whole usage projects to a whole number (20.67 -> 21)
        (D("10.5"), D("21.72")),  # else to hundredths (21.7241...)
        (D("0.001"), D("0.002")),  # as many decimals as the total has (0.00207...)
    ],
)
def test_rounding(total: Decimal, expected: Decimal) -> None:
    at = START + 14 * DAY_MS + DAY_MS // 2  # 14.5 days in
    projected = project(total, PERIOD, at, None, None).period_total
    assert projected == expected
    assert str(projected) == str(expected)


def test_round_total_never_goes_below_the_total() -> None:
    assert round_total(D("0.12341"), D("0.1234")) == D("0.1234")
    assert round_total(D("9.994"), D("9.995")) == D("9.995")
    assert round_total(D("7.499"), D(7)) == D(7)
    assert round_total(D("7.5"), D(7)) == D(8)


def test_recent_pace_carries_the_rest_of_the_period() -> None:
    at = START + 20 * DAY_MS
    # 30 over 3 days: 10 a day for the 10 days left.
    projection = project_recent(D(1000), PERIOD, at, D(1050), D(30), 3)
    assert projection == Projection(D(1100), at + 5 * DAY_MS)
    assert project_recent(D(1000), PERIOD, at, D(2000), D(30), 3).limit_reached_at_ms is None
    assert project_recent(D(1000), PERIOD, at, None, D(30), 3) == Projection(D(1100), None)
    assert project_recent(D(1000), PERIOD, at, D(1050), D(0), 3) == Projection(D(1000), None)
    assert project_recent(D(1000), PERIOD, at, D(900), D(0), 3, START) == Projection(D(1000), START)


def test_recent_pace_needs_a_day() -> None:
    with pytest.raises(ValueError, match="recent_days"):
        project_recent(D(1), PERIOD, HALF, None, D(1), 0)


totals = st.decimals(min_value=0, max_value=10**9, places=2)
instants = st.integers(PERIOD.start_ms - DAY_MS, PERIOD.end_ms + DAY_MS)
limits = st.decimals(min_value=D("0.01"), max_value=10**9, places=2)


@given(totals, instants, limits)
def test_projection_invariants(total: Decimal, at: int, limit: Decimal) -> None:
    projection = project(total, PERIOD, at, limit, None)
    assert projection.period_total >= total
    reached = projection.limit_reached_at_ms
    if reached is not None:
        assert total < limit
        assert max(at, PERIOD.start_ms) <= reached < PERIOD.end_ms
        # Consistent with the projected total: reached within the period means it gets there.
        assert projection.period_total >= limit - D("0.5")


@given(totals, instants, limits, totals, st.integers(1, 7))
def test_recent_projection_invariants(
    total: Decimal, at: int, limit: Decimal, recent: Decimal, days: int
) -> None:
    projection = project_recent(total, PERIOD, at, limit, recent, days)
    assert projection.period_total >= total
    reached = projection.limit_reached_at_ms
    if reached is not None:
        assert total < limit
        assert max(at, PERIOD.start_ms) <= reached < PERIOD.end_ms
