"""Daily totals of an account (contract 3.2): AccountDaily, and how the intake fills it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.intake.accounts import AccountPlan, Status
from domain.intake.batch import (
    IntakeResult,
    IntakeRules,
    IntakeState,
    RawRecord,
    dedup_key,
    run_intake,
)
from domain.intake.daily import CLOSED, AccountDaily, DailyTotals, Episode
from domain.intake.usage import AccountTotals
from domain.plans.catalog import Catalog, parse_catalog
from domain.plans.periods import date_to_day, day_start_ms, utc_day
from tests.unit.factories import DAY_MS, HOUR_MS, NOW, Raws, ms

D = Decimal
CATALOG: Catalog = parse_catalog(
    """
[defaults]
period = "month"
[metrics]
api_calls = "API calls"
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = { api_calls = 100 }
""",
    "test-plans.toml",
)
RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000,
    dedup_horizon_ms=7 * DAY_MS,
    late_grace_ms=HOUR_MS,
    daily_retention_days=35,
)


TODAY = utc_day(NOW)
OLDEST_KEPT = TODAY - RULES.daily_retention_days + 1  # 2026-02-09
MONDAY = date_to_day(date(2026, 3, 2))


def noon(day: int) -> int:
    return day_start_ms(day) + DAY_MS // 2


# --- AccountDaily ---------------------------------------------------------------------------


def test_a_new_account_is_empty_with_closed_episodes() -> None:
    daily = AccountDaily()
    assert daily.is_empty()
    assert daily.episode("api_calls") == CLOSED
    assert daily.to_json() == {"m": {}}


def test_add_keeps_each_metric_apart() -> None:
    daily = AccountDaily()
    daily.add("api_calls", noon(MONDAY), D(5))
    daily.add("api_calls", noon(MONDAY) + 1, D("2.5"))
    daily.add("api_calls", noon(MONDAY + 1), D(1))
    daily.add("storage_gb", noon(MONDAY), D("0.25"))
    assert set(daily.metrics) == {"api_calls", "storage_gb"}
    assert daily.metrics["api_calls"].days == {MONDAY: D("7.5"), MONDAY + 1: D(1)}
    assert daily.metrics["storage_gb"].days == {MONDAY: D("0.25")}
    assert daily.metrics["api_calls"].last_active_ms == noon(MONDAY + 1)
    assert daily.metrics["storage_gb"].last_active_ms == noon(MONDAY)
    assert not daily.is_empty()


def test_add_counts_in_the_utc_day_of_the_timestamp() -> None:
    daily = AccountDaily()
    daily.add("api_calls", day_start_ms(MONDAY) - 1, D(1))  # 23:59:59.999 on Sunday
    daily.add("api_calls", day_start_ms(MONDAY), D(2))  # 00:00 on Monday
    assert daily.metrics["api_calls"].days == {MONDAY - 1: D(1), MONDAY: D(2)}


def test_a_zero_record_creates_the_metric_without_a_day() -> None:
    daily = AccountDaily()
    daily.add("api_calls", noon(MONDAY), D(0))
    assert daily.metrics["api_calls"] == DailyTotals({}, MONDAY, None)
    assert daily.is_empty()  # nothing kept worth a table row


def test_add_refuses_a_negative_quantity() -> None:
    with pytest.raises(ValueError, match="quantity"):
        AccountDaily().add("api_calls", 0, D(-1))


def test_an_open_episode_is_stored_and_read_back() -> None:
    daily = AccountDaily()
    daily.set_episode("api_calls", Episode(True, MONDAY))
    assert daily.episode("api_calls") == Episode(True, MONDAY)
    assert daily.episode("storage_gb") == CLOSED
    assert daily.episodes == {"api_calls": Episode(True, MONDAY)}
    assert not daily.is_empty()  # an open episode must survive silence


@pytest.mark.parametrize("stored", [None, Episode(True, 7)])
def test_closed_episodes_are_not_stored(stored: Episode | None) -> None:
    daily = AccountDaily()
    if stored is not None:
        daily.set_episode("api_calls", stored)
    daily.set_episode("api_calls", CLOSED)
    assert daily.episodes == {}
    assert daily.episode("api_calls") == CLOSED
    assert "e" not in daily.to_json()


def test_prune_drops_old_days_of_every_metric_and_keeps_first_day() -> None:
    daily = AccountDaily()
    for day in range(MONDAY - 10, MONDAY + 1):
        daily.add("api_calls", noon(day), D(10))
    daily.add("storage_gb", noon(MONDAY - 20), D(1))
    assert daily.prune(MONDAY - 5)
    assert sorted(daily.metrics["api_calls"].days) == list(range(MONDAY - 5, MONDAY + 1))
    assert daily.metrics["storage_gb"].days == {}
    assert daily.metrics["api_calls"].first_day == MONDAY - 10
    assert daily.metrics["storage_gb"].first_day == MONDAY - 20
    assert not daily.prune(MONDAY - 5)  # nothing more to go


@pytest.mark.parametrize(
    ("days", "episode", "prune_to", "empty"),
    [
        ([], False, None, True),
        ([0], False, None, False),
        ([0], False, 1, True),  # every day pruned: first_day alone does not keep the account
        ([0], True, 1, False),  # an open episode does
        ([], True, None, False),
        ([0, 5], False, 3, False),
    ],
)
def test_is_empty(days: list[int], episode: bool, prune_to: int | None, empty: bool) -> None:
    daily = AccountDaily()
    for offset in days:
        daily.add("api_calls", noon(MONDAY + offset), D(1))
    if episode:
        daily.set_episode("api_calls", Episode(True, MONDAY))
    if prune_to is not None:
        daily.prune(MONDAY + prune_to)
    assert daily.is_empty() is empty


@pytest.mark.parametrize("data", [None, {}, {"m": {}}, {"m": {}, "e": {}}])
def test_from_json_of_nothing_is_empty(data: dict[str, Any] | None) -> None:
    assert AccountDaily.from_json(data) == AccountDaily()


def test_json_shape() -> None:
    daily = AccountDaily()
    daily.add("api_calls", noon(MONDAY), D("12.50"))
    daily.set_episode("api_calls", Episode(True, MONDAY - 2))
    assert daily.to_json() == {
        "m": {"api_calls": {"f": MONDAY, "a": noon(MONDAY), "d": {str(MONDAY): "12.50"}}},
        "e": {"api_calls": MONDAY - 2},
    }


metric_names = st.sampled_from(["api_calls", "storage_gb", "seats", "events.v2"])
additions = st.lists(
    st.tuples(
        metric_names,
        st.integers(0, 4_102_444_800_000),  # 1970 .. 2100
        st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False),
    ),
    max_size=25,
)
episodes = st.dictionaries(metric_names, st.none() | st.integers(0, 50_000), max_size=4)


@given(additions, episodes, st.none() | st.integers(0, 50_000))
def test_json_round_trip_property(
    added: list[tuple[str, int, Decimal]], opened: dict[str, int | None], keep_from: int | None
) -> None:
    daily = AccountDaily()
    for metric, ts_ms, quantity in added:
        daily.add(metric, ts_ms, quantity)
    for metric, day in opened.items():
        daily.set_episode(metric, Episode.from_json(day))
    if keep_from is not None:
        daily.prune(keep_from)
    back = AccountDaily.from_json(orjson.loads(orjson.dumps(daily.to_json())))
    assert back == daily
    assert back.to_json() == daily.to_json()
    assert back.is_empty() is daily.is_empty()


# --- the intake fills the daily totals ------------------------------------------------------


def plan(account: str = "acct-1", status: Status = "active") -> AccountPlan:
    return AccountPlan(account, "starter", None, status, {}, NOW - DAY_MS)


@dataclass
class State:
    """Dict-backed tables; ``run`` writes the result back as the usage agent does."""

    plans: dict[str, AccountPlan] = field(default_factory=dict)
    totals: dict[str, AccountTotals] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    daily: dict[str, dict[str, Any]] = field(default_factory=dict)
    daily_reads: list[str] = field(default_factory=list)

    def daily_of(self, account: str) -> AccountDaily:
        self.daily_reads.append(account)
        return AccountDaily.from_json(self.daily.get(account))

    def run(
        self, batch: Iterable[RawRecord], now_ms: int = NOW, rules: IntakeRules = RULES
    ) -> IntakeResult:
        result = run_intake(
            batch,
            IntakeState(
                plan_of=self.plans.get,
                totals_of=lambda a: AccountTotals.from_json(
                    self.totals[a].to_json() if a in self.totals else None
                ),
                seen_at=self.seen.get,
                daily_of=self.daily_of,
            ),
            now_ms=now_ms,
            rules=rules,
            catalog=CATALOG,
        )
        self.totals.update(result.totals)
        self.seen.update(result.seen)
        self.daily.update({a: d.to_json() for a, d in result.daily.items()})
        return result

    def days(self, account: str = "acct-1", metric: str = "api_calls") -> dict[int, Decimal]:
        return AccountDaily.from_json(self.daily.get(account)).metrics[metric].days


@pytest.fixture
def make_state() -> Callable[..., State]:
    def make(*plans: AccountPlan) -> State:
        return State(plans={p.account_id: p for p in plans})

    return make


@pytest.mark.parametrize(
    ("plans", "timestamp", "outcome"),
    [
        ([plan()], "2026-03-15T11:00:00", "accepted"),
        ([], "2026-03-15T11:00:00", "unknown_account"),
        ([plan(status="paused")], "2026-03-15T11:00:00", "accepted"),
        ([plan()], "2026-02-20T08:00:00", "late"),  # February is over, its day still kept
        ([], "2026-02-20T08:00:00", "late"),
    ],
)
def test_counted_records_go_into_their_utc_day(
    make_state: Callable[..., State], plans: list[AccountPlan], timestamp: str, outcome: str
) -> None:
    state = make_state(*plans)
    result = state.run([Raws().usage(quantity=7, timestamp=ms(timestamp))])
    assert result.outcomes == {outcome: 1}
    assert state.days() == {utc_day(ms(timestamp)): D(7)}


def test_the_day_is_the_utc_day_not_the_producers() -> None:
    state = State(plans={"acct-1": plan()})
    # 01:30 on the 15th in +02:00 is 23:30 UTC on the 14th.
    state.run([Raws().usage(quantity=3, timestamp="2026-03-15T01:30:00+02:00")])
    assert state.days() == {TODAY - 1: D(3)}


def test_duplicates_count_once_in_the_day(make_state: Callable[..., State]) -> None:
    state = make_state(plan())
    raws = Raws()
    result = state.run([raws.usage(record_id="r-1", quantity=5) for _ in range(3)])
    assert result.outcomes == {"accepted": 1, "duplicate": 2}
    assert state.days() == {TODAY: D(5)}
    result = state.run([raws.usage(record_id="r-1", quantity=5)])  # a later batch
    assert result.outcomes == {"duplicate": 1}
    assert state.days() == {TODAY: D(5)}


def test_a_duplicate_alone_does_not_touch_the_daily_state(
    make_state: Callable[..., State],
) -> None:
    state = make_state(plan())
    state.seen[dedup_key("acct-1", "r-1")] = NOW - HOUR_MS
    result = state.run([Raws().usage(record_id="r-1")])
    assert result.outcomes == {"duplicate": 1}
    assert result.daily == {} and state.daily_reads == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"quantity": -1},
        {"quantity": "5"},
        {"metric": "API Calls"},
        {"timestamp": NOW + RULES.max_clock_skew_ms + 1},
        {"timestamp": "yesterday"},
        {"record_id": ""},
    ],
)
def test_invalid_records_do_not_count(
    make_state: Callable[..., State], overrides: dict[str, Any]
) -> None:
    state = make_state(plan())
    result = state.run([Raws().usage(**overrides)])
    assert result.outcomes == {"invalid": 1}
    assert result.daily == {} and state.daily_reads == []


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[]", b"\xff"])
def test_garbage_does_not_count(make_state: Callable[..., State], value: bytes | None) -> None:
    state = make_state(plan())
    result = state.run([Raws().value(value)])
    assert result.outcomes == {"invalid": 1}
    assert result.daily == {}


def test_rekeyed_records_count_only_when_they_come_back(make_state: Callable[..., State]) -> None:
    state = make_state(plan())
    result = state.run([Raws().usage(key=None)])
    assert result.rekey and result.daily == {}


@pytest.mark.parametrize(
    ("timestamp_ms", "kept"),
    [
        (day_start_ms(OLDEST_KEPT), True),
        (day_start_ms(OLDEST_KEPT) + DAY_MS - 1, True),
        (day_start_ms(OLDEST_KEPT) - 1, False),
        (day_start_ms(OLDEST_KEPT - 10), False),
    ],
)
def test_records_older_than_the_retention_are_not_added(
    make_state: Callable[..., State], timestamp_ms: int, kept: bool
) -> None:
    state = make_state(plan())
    result = state.run([Raws().usage(quantity=4, timestamp=timestamp_ms)])
    assert result.outcomes == {"late": 1}  # still counted under one outcome
    if kept:
        assert state.days() == {utc_day(timestamp_ms): D(4)}
    else:
        assert "acct-1" not in state.daily


@pytest.mark.parametrize("retention_days", [1, 2, 10, 35, 60])
def test_the_retention_is_a_setting(make_state: Callable[..., State], retention_days: int) -> None:
    rules = IntakeRules(
        max_clock_skew_ms=RULES.max_clock_skew_ms,
        dedup_horizon_ms=RULES.dedup_horizon_ms,
        late_grace_ms=RULES.late_grace_ms,
        daily_retention_days=retention_days,
    )
    state = make_state()  # unknown account: March records count, older ones are late
    raws = Raws()
    batch = [raws.usage(quantity=1, timestamp=NOW - HOUR_MS - age * DAY_MS) for age in range(70)]
    result = state.run(batch, rules=rules)
    assert sum(result.outcomes.values()) == 70
    assert sorted(state.days()) == list(range(TODAY - retention_days + 1, TODAY + 1))


def test_days_older_than_the_retention_are_pruned_from_state(
    make_state: Callable[..., State],
) -> None:
    state = make_state(plan())
    stored = AccountDaily()
    for day in range(OLDEST_KEPT - 5, TODAY):
        stored.add("api_calls", noon(day), D(10))
    stored.add("storage_gb", noon(OLDEST_KEPT - 1), D(1))
    state.daily["acct-1"] = stored.to_json()
    state.run([Raws().usage(quantity=2, timestamp=NOW - HOUR_MS)])
    daily = AccountDaily.from_json(state.daily["acct-1"])
    assert min(daily.metrics["api_calls"].days) == OLDEST_KEPT
    assert daily.metrics["api_calls"].total(TODAY) == D(2)
    assert daily.metrics["api_calls"].first_day == OLDEST_KEPT - 5  # history start survives
    assert daily.metrics["storage_gb"].days == {}
    assert daily.metrics["storage_gb"].first_day == OLDEST_KEPT - 1


def test_daily_state_continues_and_is_read_once_per_account(
    make_state: Callable[..., State],
) -> None:
    state = make_state(plan("acct-1"))
    raws = Raws()
    state.run([raws.usage(quantity=1)])
    batch = [raws.usage(quantity=2), raws.usage(account_id="acct-2", quantity=3)]
    batch += [raws.usage(quantity=4, metric="storage_gb"), raws.usage(quantity=5)]
    state.daily_reads.clear()
    result = state.run(batch)
    assert sorted(state.daily_reads) == ["acct-1", "acct-2"]
    assert result.outcomes == {"accepted": 3, "unknown_account": 1}
    assert state.days() == {TODAY: D(8)}
    assert state.days(metric="storage_gb") == {TODAY: D(4)}
    assert state.days("acct-2") == {TODAY: D(3)}


def test_without_daily_of_nothing_is_tracked() -> None:
    result = run_intake(
        [Raws().usage()],
        IntakeState(
            plan_of=lambda _: plan(), totals_of=lambda _: AccountTotals(), seen_at=lambda _: None
        ),
        now_ms=NOW,
        rules=RULES,
        catalog=CATALOG,
    )
    assert result.outcomes == {"accepted": 1}
    assert result.daily == {}


KINDS = ("accepted", "unknown", "late", "too_old", "duplicate", "invalid")


@given(
    kinds=st.lists(st.sampled_from(KINDS), max_size=30),
    quantities=st.lists(st.integers(0, 10**6), min_size=30, max_size=30),
    hours=st.lists(st.integers(1, 24 * 20), min_size=30, max_size=30),
)
def test_the_days_sum_exactly_the_counted_records(
    kinds: list[str], quantities: list[int], hours: list[int]
) -> None:
    state = State(plans={"acct-1": plan()})
    raws = Raws()
    batch: list[RawRecord] = []
    expected: dict[int, Decimal] = {}
    for index, kind in enumerate(kinds):
        q = quantities[index]
        ts = NOW - hours[index] * HOUR_MS
        account = "nobody" if kind == "unknown" else "acct-1"
        if kind == "late":
            ts = ms("2026-02-10T00:00:00") + hours[index] * HOUR_MS % (18 * DAY_MS)
        elif kind == "too_old":
            ts = day_start_ms(OLDEST_KEPT) - hours[index] * HOUR_MS
        if kind == "duplicate":
            batch.append(raws.usage(record_id="dup", quantity=q, timestamp=ts))
            if sum(1 for k in kinds[: index + 1] if k == "duplicate") > 1:
                continue
        elif kind == "invalid":
            batch.append(raws.usage(quantity=-1 - q, timestamp=ts))
            continue
        else:
            batch.append(raws.usage(account_id=account, quantity=q, timestamp=ts))
        if account == "acct-1" and kind != "too_old" and q:
            day = utc_day(ts)
            expected[day] = expected.get(day, D(0)) + q
    state.run(batch)
    got = AccountDaily.from_json(state.daily.get("acct-1")).metrics.get("api_calls")
    assert (got.days if got is not None else {}) == expected
