"""Period and day cells per aggregation (issue 18, contract 1.4): domain/intake/usage.py and
domain/intake/daily.py against an oracle.

The oracle is a plain list of ``(ts_ms, quantity, value)`` records in the order they were read,
and naive functions of that list: the value of a period or a day under each aggregation
(``latest``: the record with the greatest timestamp before the end, a tie going to the one read
last; ``unique_count``: the number of distinct values). The state is fed as the intake feeds it:
1 per record for ``count``, 1 per value new in the period (day) for ``unique_count``.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import PACKAGED_PLANS_FILE
from domain.intake.accounts import AccountPlan
from domain.intake.accounts import period_of as period_of_plan
from domain.intake.daily import AccountDaily, DailyReadings, DailyTotals
from domain.intake.regroup import regroup_totals
from domain.intake.usage import AccountTotals, Change, ReadingChange
from domain.plans.catalog import AGGREGATIONS, Aggregation, load_catalog
from domain.plans.periods import Period, day_start_ms, utc_day
from domain.rules.drops import DropRules, assess

D = Decimal
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PERIOD_DAYS = 10
PERIODS = tuple(
    Period.from_ms(BASE_MS + i * PERIOD_DAYS * DAY_MS, BASE_MS + (i + 1) * PERIOD_DAYS * DAY_MS)
    for i in range(4)
)
DAYS = tuple(range(utc_day(BASE_MS), utc_day(BASE_MS) + 4 * PERIOD_DAYS))
METRIC = "m"

Record = tuple[int, Decimal, int]  # (ts_ms, quantity, distinct value)

# Timestamps on a 6-hour grid over the 40 days, so that days and periods hold several
# records and timestamps tie often.
records_st = st.lists(
    st.tuples(
        st.integers(0, 4 * PERIOD_DAYS * 4 - 1).map(lambda k: BASE_MS + k * 6 * HOUR_MS),
        st.one_of(
            st.integers(0, 30).map(D),
            st.integers(0, 300).map(lambda n: D(n).scaleb(-1)),
        ),
        st.integers(0, 4),
    ),
    max_size=30,
)
aggregations = st.sampled_from(AGGREGATIONS)


def period_of(ts_ms: int) -> Period:
    return next(p for p in PERIODS if p.start_ms <= ts_ms < p.end_ms)


# --- the oracle ---------------------------------------------------------------------------


def oracle(aggregation: Aggregation, records: list[Record], start_ms: int, end_ms: int) -> Decimal:
    """The value of the span ``[start_ms, end_ms)`` under ``aggregation``, naively."""
    inside = [r for r in records if start_ms <= r[0] < end_ms]
    if aggregation == "sum":
        return sum((q for _, q, _ in inside), D(0))
    if aggregation == "count":
        return D(len(inside))
    if aggregation == "unique_count":
        return D(len({v for _, _, v in inside}))
    if aggregation == "max":
        return max((q for _, q, _ in inside), default=D(0))
    value, best_ms = D(0), None
    for ts_ms, quantity, _ in records:  # in reading order: a later record wins a tie
        if ts_ms < end_ms and (best_ms is None or ts_ms >= best_ms):
            value, best_ms = quantity, ts_ms
    return value


def period_value(aggregation: Aggregation, records: list[Record], period: Period) -> Decimal:
    return oracle(aggregation, records, period.start_ms, period.end_ms)


def day_value(aggregation: Aggregation, records: list[Record], day: int) -> Decimal:
    return oracle(aggregation, records, day_start_ms(day), day_start_ms(day + 1))


# --- feeding the state as the intake does -------------------------------------------------


class Feeder:
    """Folds records into one account's state, the way the intake calls it."""

    def __init__(self, aggregation: Aggregation) -> None:
        self.aggregation = aggregation
        self.totals = AccountTotals()
        self.daily = AccountDaily()
        self.seen_in_period: set[tuple[int, int]] = set()
        self.seen_on_day: set[tuple[int, int]] = set()

    def quantity(self, record: Record, seen: set[tuple[int, int]], scope: int) -> Decimal | None:
        _, quantity, value = record
        if self.aggregation == "count":
            return D(1)
        if self.aggregation == "unique_count":
            if (scope, value) in seen:
                return None
            seen.add((scope, value))
            return D(1)
        return quantity

    def fold_period(self, record: Record) -> Change | None:
        period = period_of(record[0])
        quantity = self.quantity(record, self.seen_in_period, period.start_ms)
        if quantity is None:
            return None
        if self.aggregation == "sum":
            return self.totals.add(METRIC, period, quantity)
        return self.totals.fold(METRIC, self.aggregation, period, quantity, record[0])

    def fold_day(self, record: Record) -> None:
        quantity = self.quantity(record, self.seen_on_day, utc_day(record[0]))
        if quantity is None:
            return
        if self.aggregation == "sum":
            self.daily.add(METRIC, record[0], quantity)
        else:
            self.daily.fold(METRIC, self.aggregation, record[0], quantity)

    def fold(self, records: list[Record]) -> None:
        for record in records:
            self.fold_period(record)
            self.fold_day(record)


def fed(aggregation: Aggregation, records: list[Record]) -> Feeder:
    feeder = Feeder(aggregation)
    feeder.fold(records)
    return feeder


def day_total(daily: AccountDaily, day: int) -> Decimal:
    history = daily.metrics.get(METRIC)
    return D(0) if history is None else history.total(day)


def roundtrip(data: Any) -> Any:
    return json.loads(json.dumps(data))


# --- any order gives the oracle's values --------------------------------------------------


@given(aggregations, records_st, st.randoms(use_true_random=False))
def test_periods_and_days_hold_the_oracle_values_in_any_order(
    aggregation: Aggregation, records: list[Record], random: Any
) -> None:
    shuffled = list(records)
    random.shuffle(shuffled)
    for order in (records, shuffled):
        state = fed(aggregation, order)
        for period in PERIODS:
            assert state.totals.total(METRIC, period) == period_value(aggregation, order, period)
        for day in DAYS:
            assert day_total(state.daily, day) == day_value(aggregation, order, day)


@given(aggregations, records_st, st.randoms(use_true_random=False))
def test_the_order_changes_nothing_but_which_tied_reading_wins(
    aggregation: Aggregation, records: list[Record], random: Any
) -> None:
    # Distinct timestamps: no tie to break, so every order gives the same values.
    records = list({r[0]: r for r in records}.values())
    shuffled = list(records)
    random.shuffle(shuffled)
    first, second = fed(aggregation, records), fed(aggregation, shuffled)
    for period in PERIODS:
        assert first.totals.total(METRIC, period) == second.totals.total(METRIC, period)
    for day in DAYS:
        assert day_total(first.daily, day) == day_total(second.daily, day)


def test_a_tie_in_latest_goes_to_the_record_read_last() -> None:
    ts_ms = PERIODS[0].start_ms + 5 * HOUR_MS
    for order in ([D(3), D(7)], [D(7), D(3)]):
        state = fed("latest", [(ts_ms, q, 0) for q in order])
        assert state.totals.total(METRIC, PERIODS[0]) == order[-1]
        assert day_total(state.daily, utc_day(ts_ms)) == order[-1]


def test_an_older_reading_changes_nothing_but_is_folded() -> None:
    totals = AccountTotals()
    period = PERIODS[0]
    totals.fold(METRIC, "latest", period, D(5), period.start_ms + 2 * HOUR_MS)
    change = totals.fold(METRIC, "latest", period, D(9), period.start_ms + HOUR_MS)
    assert (change.before, change.after) == (D(5), D(5))
    assert totals.total(METRIC, period) == D(5)


# --- latest carries into later periods and days, across prune ------------------------------


def test_latest_carries_into_periods_and_days_without_readings() -> None:
    ts_ms = PERIODS[0].start_ms + DAY_MS
    state = fed("latest", [(ts_ms, D(4), 0)])
    assert [state.totals.total(METRIC, p) for p in PERIODS] == [D(4)] * 4
    assert day_total(state.daily, utc_day(ts_ms) - 1) == D(0)
    assert all(day_total(state.daily, d) == D(4) for d in DAYS if d >= utc_day(ts_ms))
    change = state.totals.fold(METRIC, "latest", PERIODS[2], D(6), PERIODS[2].start_ms)
    assert (change.before, change.after) == (D(4), D(6))
    assert [state.totals.total(METRIC, p) for p in PERIODS] == [D(4), D(4), D(6), D(6)]


@given(aggregations, records_st, st.integers(0, len(PERIODS)), records_st)
def test_prune_keeps_the_values_of_kept_periods_and_the_carry(
    aggregation: Aggregation, records: list[Record], cut: int, more: list[Record]
) -> None:
    keep_end_after_ms = PERIODS[0].start_ms if cut == 0 else PERIODS[cut - 1].end_ms
    kept = [p for p in PERIODS if p.end_ms > keep_end_after_ms]
    state = fed(aggregation, records)
    state.totals.prune(keep_end_after_ms)
    state.totals = AccountTotals.from_json(roundtrip(state.totals.to_json()))
    # Records after the prune fall in the kept periods only (older ones would be late).
    more = [r for r in more if r[0] >= keep_end_after_ms]
    for record in more:
        state.fold_period(record)
    everything = records + more
    for period in kept:
        assert state.totals.total(METRIC, period) == period_value(aggregation, everything, period)
    if aggregation != "latest":
        assert all(p[1] > keep_end_after_ms for p in state.totals.periods.get(METRIC, {}))
    assert state.totals.is_empty() == (
        not any(r[0] >= keep_end_after_ms for r in everything)
        and (aggregation != "latest" or not everything)
    )


@given(aggregations, records_st, st.sampled_from(DAYS), records_st, st.integers(0, 15))
def test_daily_prune_keeps_the_values_of_kept_days_and_the_carry(
    aggregation: Aggregation, records: list[Record], oldest_day: int, more: list[Record], step: int
) -> None:
    state = fed(aggregation, records)
    state.daily.prune(oldest_day)
    state.daily = AccountDaily.from_json(roundtrip(state.daily.to_json()))
    more = [r for r in more if utc_day(r[0]) >= oldest_day]
    for record in more:
        state.fold_day(record)
    everything = records + more
    state.daily.prune(oldest_day + step)  # a second prune: the carry moves on
    for day in DAYS:
        if day >= oldest_day + step:
            assert day_total(state.daily, day) == day_value(aggregation, everything, day)
    history = state.daily.metrics.get(METRIC)
    if everything:
        assert history is not None
        assert history.first_day == min(utc_day(r[0]) for r in everything)
        if aggregation != "unique_count":  # (its repeated values are not folded)
            positive = [r[0] for r in everything if r[1] > 0 or aggregation == "count"]
            assert history.last_active_ms == max(positive, default=None)


def test_daily_latest_carries_across_prune() -> None:
    ts_ms = day_start_ms(DAYS[3]) + HOUR_MS
    daily = AccountDaily()
    daily.fold(METRIC, "latest", ts_ms, D(8))
    daily.fold(METRIC, "latest", ts_ms - DAY_MS, D(2))
    assert daily.prune(DAYS[10])
    assert not daily.is_empty()  # the carry is state
    history = daily.metrics[METRIC]
    assert history == DailyReadings(
        "latest", carry=(ts_ms, D(8)), first_day=DAYS[2], last_active_ms=ts_ms
    )
    assert history.total(DAYS[20]) == D(8)
    assert history.total(DAYS[3]) == D(8)  # a pruned day reads as the carry, not zero


# --- undo restores exactly -----------------------------------------------------------------


@given(aggregations, records_st, records_st.filter(bool), st.integers(0, len(PERIODS)))
def test_undo_restores_the_state_exactly(
    aggregation: Aggregation, records: list[Record], last: list[Record], cut: int
) -> None:
    state = fed(aggregation, records)
    if cut:
        state.totals.prune(PERIODS[cut - 1].end_ms)
    before = copy.deepcopy(state.totals.to_json())
    record = last[0]
    if record[0] < (PERIODS[cut - 1].end_ms if cut else 0):
        return  # late: the intake folds no record into a pruned period
    change = state.fold_period(record)
    if change is None:
        return
    state.totals.undo(change)
    assert state.totals.to_json() == before


def test_undo_puts_back_a_cell_that_held_zero() -> None:
    # A period holding 0 (a record of quantity 0) keeps its cell when a later add is undone.
    totals = AccountTotals()
    totals.add(METRIC, PERIODS[0], D(0))
    totals.undo(totals.add(METRIC, PERIODS[0], D(5)))
    assert totals.to_json() == {METRIC: {f"{PERIODS[0].start_ms}:{PERIODS[0].end_ms}": "0"}}
    totals.undo(totals.fold(METRIC, "max", PERIODS[0], D(5), PERIODS[0].start_ms))
    assert totals.periods == {METRIC: {(PERIODS[0].start_ms, PERIODS[0].end_ms): D(0)}}
    totals = AccountTotals()
    totals.undo(totals.add(METRIC, PERIODS[0], D(0)))
    assert totals.to_json() == {}


def test_the_change_of_a_reading_says_what_undo_puts_back() -> None:
    totals = AccountTotals()
    period = PERIODS[1]
    first = totals.fold(METRIC, "latest", period, D(3), period.start_ms)
    assert first == ReadingChange(METRIC, period, D(0), D(3), None)
    second = totals.fold(METRIC, "latest", period, D(4), period.start_ms + 1)
    assert second == ReadingChange(METRIC, period, D(3), D(4), (period.start_ms, D(3)))


# --- JSON ----------------------------------------------------------------------------------


@given(aggregations, records_st, st.integers(0, len(PERIODS)), st.sampled_from(DAYS))
def test_json_round_trips(
    aggregation: Aggregation, records: list[Record], cut: int, oldest_day: int
) -> None:
    state = fed(aggregation, records)
    if cut:
        state.totals.prune(PERIODS[cut - 1].end_ms)
    state.daily.prune(oldest_day)
    totals = AccountTotals.from_json(roundtrip(state.totals.to_json()))
    assert totals == state.totals
    assert totals.to_json() == state.totals.to_json()
    daily = AccountDaily.from_json(roundtrip(state.daily.to_json()))
    assert daily == state.daily
    assert daily.to_json() == state.daily.to_json()
    for period in PERIODS:
        assert totals.total(METRIC, period) == state.totals.total(METRIC, period)


def test_json_of_each_kind_of_cell() -> None:
    p0, p1 = PERIODS[0], PERIODS[1]
    span0, span1 = f"{p0.start_ms}:{p0.end_ms}", f"{p1.start_ms}:{p1.end_ms}"
    totals = AccountTotals()
    totals.add("calls", p0, D("2.5"))
    totals.fold("logins", "count", p0, D(1), p0.start_ms)
    totals.fold("storage", "max", p0, D(40), p0.start_ms)
    totals.fold("seats", "latest", p0, D(3), p0.start_ms + 7)
    totals.fold("seats", "latest", p1, D(5), p1.start_ms + 9)
    assert totals.to_json() == {
        "calls": {span0: "2.5"},
        "logins": {span0: "1"},
        "storage": {span0: "40"},
        "seats": {span0: [p0.start_ms + 7, "3"], span1: [p1.start_ms + 9, "5"]},
    }
    totals.prune(p0.end_ms)
    assert totals.to_json() == {
        "seats": {span1: [p1.start_ms + 9, "5"]},
        "@carry": {"seats": [p0.start_ms + 7, "3"]},
    }
    totals.prune(p1.end_ms)
    assert totals.to_json() == {"@carry": {"seats": [p1.start_ms + 9, "5"]}}
    assert not totals.periods and not totals.is_empty()
    assert AccountTotals.from_json(totals.to_json()).total("seats", PERIODS[3]) == D(5)


def test_json_of_sum_cells_is_as_before() -> None:
    """Golden: the JSON the sum path writes and reads, as before meters."""
    stored = {
        "api_calls": {"1767225600000:1769904000000": "12.5", "1769904000000:1772323200000": "3"},
        "tokens": {"1769904000000:1772323200000": "1000000"},
    }
    totals = AccountTotals.from_json(stored)
    assert totals.stamps == {} and totals.carry == {}
    assert totals.to_json() == stored
    fresh = AccountTotals()
    fresh.add("api_calls", PERIODS[0], D("1.5"))
    fresh.fold("api_calls", "sum", PERIODS[0], D(2), PERIODS[0].start_ms)
    assert fresh.to_json() == {"api_calls": {f"{PERIODS[0].start_ms}:{PERIODS[0].end_ms}": "3.5"}}


def test_json_of_daily_sums_is_as_before() -> None:
    """Golden: DailyTotals' JSON, whether fed by add or by fold under a sum or a count."""
    day = DAYS[2]
    ts_ms = day_start_ms(day) + HOUR_MS
    expected = {"m": {"calls": {"f": day, "a": ts_ms, "d": {str(day): "3.5"}}}}
    for aggregation in ("sum", "count"):
        daily = AccountDaily()
        daily.fold("calls", aggregation, ts_ms, D("1.5"))
        daily.fold("calls", aggregation, ts_ms, D(2))
        assert daily.to_json() == expected
        assert type(daily.metrics["calls"]) is DailyTotals
    stored = {"m": {"calls": {"f": 20000, "a": 1, "d": {"20000": "1", "20001": "2"}}}, "f": 9}
    assert AccountDaily.from_json(stored).to_json() == stored


def test_json_of_daily_readings_is_marked() -> None:
    ts_ms = day_start_ms(DAYS[1]) + 5
    daily = AccountDaily()
    daily.fold("storage", "max", ts_ms, D(40))
    daily.fold("storage", "max", ts_ms + 1, D(30))
    daily.fold("seats", "latest", ts_ms, D(3))
    daily.prune(DAYS[2])
    daily.fold("seats", "latest", ts_ms + DAY_MS, D(4))
    day = str(DAYS[2])
    assert daily.to_json() == {
        "m": {
            "storage": {"k": "max", "f": DAYS[1], "a": ts_ms + 1},
            "seats": {
                "k": "latest",
                "f": DAYS[1],
                "a": ts_ms + DAY_MS,
                "d": {day: [ts_ms + DAY_MS, "4"]},
                "c": [ts_ms, "3"],
            },
        }
    }


# --- readers: days view, aggregation changes -----------------------------------------------


def test_days_of_latest_fill_the_gaps_with_the_carried_value() -> None:
    readings = DailyReadings("latest")
    readings.fold(day_start_ms(DAYS[1]), D(2))
    readings.fold(day_start_ms(DAYS[4]), D(5))
    assert readings.days == {DAYS[1]: D(2), DAYS[2]: D(2), DAYS[3]: D(2), DAYS[4]: D(5)}
    maxima = DailyReadings("max")
    maxima.fold(day_start_ms(DAYS[4]), D(5))
    maxima.fold(day_start_ms(DAYS[1]), D(2))
    assert list(maxima.days.items()) == [(DAYS[1], D(2)), (DAYS[4], D(5))]


@pytest.mark.parametrize("aggregation", ["count", "max", "latest", "unique_count"])
def test_a_metric_folded_under_another_aggregation_starts_over(aggregation: Aggregation) -> None:
    period, ts_ms = PERIODS[0], PERIODS[0].start_ms
    other: Aggregation = "latest" if aggregation != "latest" else "max"
    totals, daily = AccountTotals(), AccountDaily()
    totals.fold(METRIC, other, period, D(7), ts_ms)
    daily.fold(METRIC, other, ts_ms, D(7))
    totals.prune(period.end_ms)  # a latest metric leaves its carry
    totals.fold(METRIC, aggregation, PERIODS[1], D(1), PERIODS[1].start_ms)
    daily.fold(METRIC, aggregation, ts_ms + DAY_MS, D(1))
    assert totals.total(METRIC, PERIODS[1]) == D(1)
    assert totals.total(METRIC, PERIODS[2]) == (D(1) if aggregation == "latest" else D(0))
    assert day_total(daily, utc_day(ts_ms)) == D(0)
    assert day_total(daily, utc_day(ts_ms) + 1) == D(1)


@pytest.mark.parametrize("before", ["max", "latest"])
def test_a_sum_added_to_the_days_of_readings_starts_them_over(before: Aggregation) -> None:
    ts_ms = PERIODS[0].start_ms
    daily = AccountDaily()
    daily.fold(METRIC, before, ts_ms, D(7))
    daily.add(METRIC, ts_ms + DAY_MS, D(2))
    assert daily.metrics[METRIC] == DailyTotals(
        {utc_day(ts_ms) + 1: D(2)}, utc_day(ts_ms) + 1, ts_ms + DAY_MS
    )


# --- the readers of period values: recap, regrouped periods --------------------------------


def test_period_values_hold_a_gauge_carried_into_the_period() -> None:
    totals = AccountTotals()
    totals.add("calls", PERIODS[2], D(4))
    totals.fold("storage", "max", PERIODS[1], D(9), PERIODS[1].start_ms)
    totals.fold("seats", "latest", PERIODS[0], D(3), PERIODS[0].start_ms)
    totals.prune(PERIODS[0].end_ms)
    assert totals.period_values(PERIODS[2]) == {"calls": D(4), "seats": D(3)}
    assert totals.period_values(PERIODS[1]) == {"storage": D(9), "seats": D(3)}
    assert AccountTotals().period_values(PERIODS[1]) == {}


ANCHORED = AccountPlan("a", "starter", BASE_MS + 15 * DAY_MS, "active", {}, 0)


@given(st.sampled_from(("max", "latest")), records_st, st.sampled_from(DAYS), st.booleans())
def test_regrouped_periods_of_readings_match_the_oracle(
    aggregation: Aggregation, records: list[Record], oldest_day: int, keep_all: bool
) -> None:
    catalog = load_catalog(PACKAGED_PLANS_FILE)
    daily = AccountDaily()
    for ts_ms, quantity, _ in records:
        daily.fold(METRIC, aggregation, ts_ms, quantity)
    daily.prune(oldest_day)
    periods = [period_of_plan(ANCHORED, BASE_MS + k * DAY_MS, catalog) for k in (0, 20, 50)]
    keep_end_after_ms = 0 if keep_all else periods[0].end_ms
    totals = regroup_totals(daily, ANCHORED, catalog, keep_end_after_ms=keep_end_after_ms)
    for period in periods:
        # (A period starting before the days kept has lost some of its days, as a sum has.)
        if period.end_ms > keep_end_after_ms and period.start_ms >= day_start_ms(oldest_day):
            assert totals.total(METRIC, period) == period_value(aggregation, records, period)
    assert all(span[1] > keep_end_after_ms for span in totals.periods.get(METRIC, {}))


# --- drop detection and /accounts read days of readings as they read days of totals --------


@given(st.sampled_from(("max", "latest")), records_st, st.sampled_from(DAYS), st.sampled_from(DAYS))
def test_drops_judge_readings_by_their_daily_values(
    aggregation: Aggregation, records: list[Record], oldest_day: int, last_complete_day: int
) -> None:
    """Drop detection reads a gauge's days only through total(day) and first_day: it judges
    them as it judges a sum holding the oracle's daily values."""
    readings = DailyReadings("max" if aggregation == "max" else "latest")
    for ts_ms, quantity, _ in records:
        readings.fold(ts_ms, quantity)
    readings.prune(oldest_day)
    same = DailyTotals(
        {
            # (Days before the window kept read as the carry says: drops never look there.)
            d: v
            for d in range(DAYS[0] - 40, DAYS[-1] + 3)
            if (v := day_value(aggregation, records, d) if d >= oldest_day else readings.total(d))
            > 0
        },
        readings.first_day,
        readings.last_active_ms,
    )
    rules = DropRules(min_expected=D(1), min_history_days=3)
    judged = assess(readings, last_complete_day + 1, rules)
    assert judged == assess(same, last_complete_day + 1, rules)
    shown = dict(readings.days)
    assert all(shown[d] == day_value(aggregation, records, d) for d in shown)
