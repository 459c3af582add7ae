"""Period totals of one account (domain/intake/usage.py): add, total, prune, JSON round trip."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.intake.usage import AccountTotals, Change
from domain.plans.periods import Period

D = Decimal
DAY_MS = 86_400_000
BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def day(n: int, length: int = 1) -> Period:
    return Period.from_ms(BASE_MS + n * DAY_MS, BASE_MS + (n + length) * DAY_MS)


@pytest.fixture
def make_totals() -> Callable[..., AccountTotals]:
    """Factory: totals holding ``(metric, period, quantity)`` entries."""

    def make(*entries: tuple[str, Period, str]) -> AccountTotals:
        totals = AccountTotals()
        for metric, period, quantity in entries:
            totals.add(metric, period, D(quantity))
        return totals

    return make


def test_add_reports_before_and_after() -> None:
    totals = AccountTotals()
    assert totals.add("api_calls", day(0), D("1.5")) == Change("api_calls", day(0), D(0), D("1.5"))
    assert totals.add("api_calls", day(0), D("2.5")) == Change("api_calls", day(0), D("1.5"), D(4))
    assert totals.add("api_calls", day(1), D(1)).before == D(0)


def test_total_is_zero_for_anything_not_counted(make_totals: Callable[..., AccountTotals]) -> None:
    totals = make_totals(("api_calls", day(0), "3"))
    assert totals.total("api_calls", day(0)) == D(3)
    assert totals.total("api_calls", day(1)) == D(0)
    assert totals.total("seats", day(0)) == D(0)
    assert totals.total("api_calls", day(0, length=2)) == D(0)  # other bounds, other period


def test_totals_are_exact(make_totals: Callable[..., AccountTotals]) -> None:
    totals = make_totals(*[("m", day(0), "0.1")] * 10)
    assert totals.total("m", day(0)) == D(1)


@pytest.mark.parametrize(
    ("cutoff_day", "kept"),
    [
        (0, [0, 1, 2]),
        (1, [1, 2]),  # day 0 ends at the start of day 1: "at or before" the cutoff
        (2, [2]),
        (3, []),
    ],
)
def test_prune_forgets_periods_ended_at_or_before(
    make_totals: Callable[..., AccountTotals], cutoff_day: int, kept: list[int]
) -> None:
    totals = make_totals(*[("m", day(n), "1") for n in range(3)])
    changed = totals.prune(day(cutoff_day).start_ms)
    assert changed == (len(kept) < 3)
    assert [n for n in range(3) if totals.total("m", day(n))] == kept
    assert ("m" in totals.periods) == bool(kept)


def test_prune_of_nothing_changes_nothing() -> None:
    totals = AccountTotals()
    assert totals.prune(BASE_MS) is False
    assert totals.periods == {}


def test_from_json_of_none_is_empty() -> None:
    assert AccountTotals.from_json(None) == AccountTotals()
    assert AccountTotals.from_json({}) == AccountTotals()


def test_json_keeps_decimals_as_text(make_totals: Callable[..., AccountTotals]) -> None:
    totals = make_totals(("api_calls", day(0), "0.30"))
    assert totals.to_json() == {"api_calls": {f"{day(0).start_ms}:{day(0).end_ms}": "0.30"}}


metrics = st.sampled_from(["api_calls", "storage_gb", "seats"])
periods = st.builds(day, st.integers(min_value=-400, max_value=400), st.sampled_from([1, 7, 31]))
quantities = st.decimals(
    min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=3
)
entries = st.lists(st.tuples(metrics, periods, quantities), max_size=30)


@given(entries=entries)
def test_total_is_the_sum_of_what_was_added(entries: list[tuple[str, Period, Decimal]]) -> None:
    totals = AccountTotals()
    expected: dict[tuple[str, int, int], Decimal] = defaultdict(Decimal)
    for metric, period, quantity in entries:
        change = totals.add(metric, period, quantity)
        key = (metric, period.start_ms, period.end_ms)
        assert change.before == expected[key]
        expected[key] += quantity
        assert change.after == expected[key]
    for metric, period, _ in entries:
        assert totals.total(metric, period) == expected[(metric, period.start_ms, period.end_ms)]


@given(entries=entries)
def test_json_round_trip(entries: list[tuple[str, Period, Decimal]]) -> None:
    totals = AccountTotals()
    for metric, period, quantity in entries:
        totals.add(metric, period, quantity)
    through_text = json.loads(json.dumps(totals.to_json()))
    back = AccountTotals.from_json(through_text)
    assert back == totals
    assert back.to_json() == totals.to_json()


@given(entries=entries, cutoff=st.integers(min_value=-400, max_value=450))
def test_prune_keeps_exactly_the_periods_ending_after_the_cutoff(
    entries: list[tuple[str, Period, Decimal]], cutoff: int
) -> None:
    totals = AccountTotals()
    for metric, period, quantity in entries:
        totals.add(metric, period, quantity)
    before = {
        (m, span): t for m, by_period in totals.periods.items() for span, t in by_period.items()
    }
    cutoff_ms = BASE_MS + cutoff * DAY_MS
    changed = totals.prune(cutoff_ms)
    after = {
        (m, span): t for m, by_period in totals.periods.items() for span, t in by_period.items()
    }
    assert after == {k: t for k, t in before.items() if k[1][1] > cutoff_ms}
    assert changed == (after != before)
    assert all(totals.periods.values())  # no metric left without periods
