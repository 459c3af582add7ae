"""Threshold detection (contract 3.1): exact levels, announced once, highest level per record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.intake.accounts import AccountPlan
from domain.intake.usage import AccountTotals
from domain.plans.periods import Period
from domain.rules.thresholds import (
    AnnouncedLevels,
    Crossing,
    detect,
    level_text,
    reaches,
    should_announce,
    threshold_kind,
)

D = Decimal
NEAR_AND_HIT = (D("0.8"), D(1))
NOV = Period.from_ms(1_793_491_200_000, 1_796_083_200_000)  # 2026-11-01 .. 2026-12-01 UTC
DEC = Period.from_ms(1_796_083_200_000, 1_798_761_600_000)  # 2026-12-01 .. 2027-01-01 UTC


@pytest.mark.parametrize(
    ("total", "limit", "expected"),
    [
        ("80", "100", ("0.8",)),  # exactly 80 % announces 0.8
        ("79.99", "100", ()),
        ("100", "100", ("0.8", "1")),  # a jump past both levels lists both
        ("1000", "100", ("0.8", "1")),
        ("99.999", "100", ("0.8",)),
        ("0.232", "0.29", ("0.8",)),  # 0.8 * 0.29 exactly
        ("0.2319", "0.29", ()),
        ("5.6", "7", ("0.8",)),  # the float product 0.8 * 7.0 is 5.6000000000000005
        ("26.4", "33", ("0.8",)),  # ... and 0.8 * 33.0 is 26.400000000000002
        ("0", "100", ()),
    ],
)
def test_detect_compares_exactly(total: str, limit: str, expected: tuple[str, ...]) -> None:
    crossing = detect(D(total), D(limit), NEAR_AND_HIT, frozenset())
    if not expected:
        assert crossing is None
    else:
        assert crossing == Crossing(D(expected[-1]), tuple(D(e) for e in expected))


def test_detect_skips_announced_levels_and_unlimited_metrics() -> None:
    assert detect(D(85), D(100), NEAR_AND_HIT, {D("0.8")}) is None
    assert detect(D(100), D(100), NEAR_AND_HIT, {D("0.80")}) == Crossing(D(1), (D(1),))
    assert detect(D(100), D(100), NEAR_AND_HIT, {D("0.8"), D("1.0")}) is None
    assert detect(D(10**9), None, NEAR_AND_HIT, frozenset()) is None


def test_detect_orders_unsorted_levels_and_ignores_repeats() -> None:
    levels = (D(1), D("0.5"), D("0.8"), D("0.50"))
    assert detect(D(90), D(100), levels, frozenset()) == Crossing(D("0.8"), (D("0.5"), D("0.8")))


level_values = st.sampled_from(
    [D("0.5"), D("0.50"), D("0.75"), D("0.8"), D("0.80"), D("0.9"), D(1), D("1.0"), D("1.5")]
)
exact_numbers = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False)


@given(
    total=exact_numbers,
    limit=st.decimals(min_value="0.001", max_value=10**6, places=3, allow_nan=False),
    levels=st.lists(level_values, max_size=6),
    announced=st.frozensets(level_values, max_size=3),
)
def test_detect_is_the_exact_definition(
    total: Decimal, limit: Decimal, levels: list[Decimal], announced: frozenset[Decimal]
) -> None:
    new = sorted(
        {
            lv
            for lv in levels
            if lv not in announced and Fraction(total) >= Fraction(lv) * Fraction(limit)
        }
    )
    expected = Crossing(new[-1], tuple(new)) if new else None
    assert detect(total, limit, levels, announced) == expected


def test_reaches_is_exact_beyond_default_decimal_precision() -> None:
    # 30 significant digits: in the default 28-digit context 0.8 * limit would round to
    # ...654.31 and a total of ...654.311 would wrongly count as reached.
    limit = D("123456789012345678901234567.89")
    exact = D("98765431209876543120987654.312")  # 0.8 * limit, worked out by hand
    assert reaches(exact, D("0.8"), limit)
    assert not reaches(D("98765431209876543120987654.311"), D("0.8"), limit)


def test_level_text() -> None:
    assert [level_text(D(x)) for x in ("0.8", "0.80", "1", "1.000", "0.75", "0.125")] == [
        "0.8",
        "0.8",
        "1.0",
        "1.0",
        "0.75",
        "0.125",
    ]


def test_threshold_kind() -> None:
    assert threshold_kind(D(1)) == "threshold-hit"
    assert threshold_kind(D("1.0")) == "threshold-hit"
    assert threshold_kind(D("0.8")) == "threshold-near"


def _plan(status: str = "active") -> AccountPlan:
    return AccountPlan("acct", "starter", None, status, {}, 0)  # type: ignore[arg-type]


def test_should_announce_only_active_known_timely_accounts() -> None:
    assert should_announce(_plan())
    assert not should_announce(_plan(), late=True)
    assert not should_announce(_plan("paused"))
    assert not should_announce(_plan("cancelled"))
    assert not should_announce(None)


def test_observe_announces_each_level_once_per_period_and_plan() -> None:
    announced = AnnouncedLevels()
    observe = announced.observe
    assert observe("api", NOV, "starter", D(80), D(100), NEAR_AND_HIT) == Crossing(
        D("0.8"), (D("0.8"),)
    )
    assert observe("api", NOV, "starter", D(90), D(100), NEAR_AND_HIT) is None
    assert observe("api", NOV, "starter", D(100), D(100), NEAR_AND_HIT) == Crossing(D(1), (D(1),))
    assert observe("api", NOV, "starter", D(200), D(100), NEAR_AND_HIT) is None
    # Another metric, another period: their own levels.
    assert observe("gb", NOV, "starter", D(9), D(10), NEAR_AND_HIT) is not None
    assert observe("api", DEC, "starter", D(85), D(100), NEAR_AND_HIT) is not None
    # A new plan starts unannounced: a downgrade to a smaller limit announces on the next record.
    assert observe("api", NOV, "free", D(200), D(100), NEAR_AND_HIT) == Crossing(
        D(1), (D("0.8"), D(1))
    )
    # Switching back to the first plan does not repeat its moments.
    assert observe("api", NOV, "starter", D(200), D(100), NEAR_AND_HIT) is None
    assert announced.announced("api", NOV, "starter") == {D("0.8"), D(1)}
    assert announced.announced("api", NOV, "growth") == frozenset()


def test_announced_levels_json_round_trip_and_prune() -> None:
    announced = AnnouncedLevels()
    announced.mark("api", NOV, "starter", [D(1), D("0.80")])
    announced.mark("api", DEC, "growth", [D("0.75")])
    data = json.loads(json.dumps(announced.to_json()))
    key = f"{NOV.start_ms}:{NOV.end_ms}"
    assert data["api"][key] == {"starter": ["0.8", "1.0"]}
    restored = AnnouncedLevels.from_json(data)
    assert restored == announced
    assert AnnouncedLevels.from_json(None) == AnnouncedLevels()

    assert not restored.prune(NOV.end_ms - 1)
    assert restored.prune(NOV.end_ms)  # a period ending at the cut-off goes
    assert restored.announced("api", NOV, "starter") == frozenset()
    assert restored.announced("api", DEC, "growth") == {D("0.75")}
    assert restored.prune(DEC.end_ms)
    assert restored.levels == {}


# --- The stateful detector against a brute-force oracle -------------------------------------

# Plans of the simulation: metric -> limit, and levels. Decimal limits such as 0.29 and 7 are
# where a float product would go wrong; "free" has no limit for m2, "big" none at all.
PLANS: Mapping[str, tuple[Mapping[str, str], tuple[str, ...]]] = {
    "starter": ({"m1": "0.29", "m2": "7"}, ("0.5", "0.8", "1")),
    "growth": ({"m1": "33", "m2": "100"}, ("0.8", "1")),
    "free": ({"m1": "0.1"}, ("0.1", "0.3", "0.9", "1")),
    "big": ({}, ("0.8", "1")),
}
PERIODS = (NOV, DEC)


@dataclass(frozen=True)
class Record:
    record_id: int
    metric: str
    period: int
    quantity: Decimal


@dataclass(frozen=True)
class PlanChange:
    plan_id: str


quantities = st.one_of(
    st.decimals(min_value=0, max_value=40, places=2),
    st.sampled_from([D("0.232"), D("0.058"), D("5.6"), D("1.4"), D("26.4"), D(0)]),
)
operations = st.lists(
    st.one_of(
        st.builds(
            Record,
            st.integers(0, 25),  # a small pool of record ids: repeats are common
            st.sampled_from(["m1", "m2"]),
            st.integers(0, 1),
            quantities,
        ),
        st.builds(PlanChange, st.sampled_from(sorted(PLANS))),
    ),
    max_size=60,
)


def run_detector(ops: list[Record | PlanChange]) -> list[tuple[int, Crossing | None]]:
    """The usage path's way: dedup, add to totals, observe; state round-trips through JSON."""
    plan_id = "starter"
    seen: set[int] = set()
    totals = AccountTotals()
    announced = AnnouncedLevels()
    results: list[tuple[int, Crossing | None]] = []
    for index, op in enumerate(ops):
        if isinstance(op, PlanChange):
            plan_id = op.plan_id
            continue
        if op.record_id in seen:
            continue
        seen.add(op.record_id)
        period = PERIODS[op.period]
        change = totals.add(op.metric, period, op.quantity)
        limits, levels = PLANS[plan_id]
        limit = limits.get(op.metric)
        crossing = announced.observe(
            op.metric,
            period,
            plan_id,
            change.after,
            None if limit is None else D(limit),
            tuple(D(level) for level in levels),
        )
        results.append((index, crossing))
        announced = AnnouncedLevels.from_json(json.loads(json.dumps(announced.to_json())))
        totals = AccountTotals.from_json(json.loads(json.dumps(totals.to_json())))
    return results


def oracle(ops: list[Record | PlanChange]) -> list[tuple[int, tuple[Fraction, ...]]]:
    """Per accepted record, the levels it newly crossed, recomputed from scratch in fractions."""

    def crossed_at(step: int) -> tuple[str, int, str, set[Fraction]]:
        """(metric, period, plan) of accepted record ``step`` and the levels its total reaches."""
        plan_id = "starter"
        seen: set[int] = set()
        accepted: list[Record] = []
        for op in ops[: step + 1]:
            if isinstance(op, PlanChange):
                plan_id = op.plan_id
            elif op.record_id not in seen:
                seen.add(op.record_id)
                accepted.append(op)
        record = ops[step]
        assert isinstance(record, Record)
        total = sum(
            (
                Fraction(r.quantity)
                for r in accepted
                if r.metric == record.metric and r.period == record.period
            ),
            Fraction(0),
        )
        limits, levels = PLANS[plan_id]
        limit = limits.get(record.metric)
        reached: set[Fraction] = set()
        if limit is not None:
            reached = {Fraction(lv) for lv in levels if total >= Fraction(lv) * Fraction(limit)}
        return record.metric, record.period, plan_id, reached

    steps: list[int] = []
    seen: set[int] = set()
    for index, op in enumerate(ops):
        if isinstance(op, Record) and op.record_id not in seen:
            seen.add(op.record_id)
            steps.append(index)
    results: list[tuple[int, tuple[Fraction, ...]]] = []
    history: list[tuple[str, int, str, set[Fraction]]] = []
    for step in steps:
        metric, period, plan_id, reached = crossed_at(step)
        before: set[Fraction] = set()
        for m, p, plan, levels in history:
            if (m, p, plan) == (metric, period, plan_id):
                before |= levels
        history.append((metric, period, plan_id, reached))
        results.append((step, tuple(sorted(reached - before))))
    return results


@settings(max_examples=300, deadline=None)
@example([Record(1, "m1", 0, D("0.232"))])  # exactly 80 % of 0.29
@example([Record(1, "m2", 0, D("5.6")), PlanChange("growth"), Record(2, "m2", 0, D(80))])
@example([Record(1, "m2", 0, D(8)), PlanChange("free"), Record(2, "m2", 0, D(1))])
@given(operations)
def test_detector_matches_brute_force_oracle(ops: list[Record | PlanChange]) -> None:
    detected = run_detector(ops)
    expected = oracle(ops)
    assert [index for index, _ in detected] == [index for index, _ in expected]
    announced_moments: set[tuple[str, int, str, Fraction]] = set()
    plan_id = "starter"
    plan_at: dict[int, str] = {}
    for index, op in enumerate(ops):
        if isinstance(op, PlanChange):
            plan_id = op.plan_id
        plan_at[index] = plan_id
    for (index, crossing), (_, new_levels) in zip(detected, expected, strict=True):
        if not new_levels:
            assert crossing is None
            continue
        # One event per record, for the highest level, listing every level crossed.
        assert crossing is not None
        assert tuple(Fraction(level) for level in crossing.crossed) == new_levels
        assert Fraction(crossing.level) == new_levels[-1]
        op = ops[index]
        assert isinstance(op, Record)
        for level in new_levels:
            moment = (op.metric, op.period, plan_at[index], level)
            assert moment not in announced_moments  # never twice
            announced_moments.add(moment)
