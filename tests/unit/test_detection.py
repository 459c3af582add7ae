"""Threshold detection over a batch's accepted records (contract 3.1)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import datetime_to_ms, to_rfc3339
from domain.intake.accounts import AccountPlan, Status
from domain.intake.batch import Accepted, IntakeRules, IntakeState, RawRecord, run_intake
from domain.intake.records import UsageRecord
from domain.intake.usage import AccountTotals, Change
from domain.moments.detection import DetectionResult, detect_thresholds
from domain.plans.catalog import Catalog, parse_catalog
from domain.plans.periods import Period
from domain.rules.thresholds import AnnouncedLevels
from domain.wording.events import event_id
from domain.wording.templates import Templates, load_templates
from tests.schema import assert_valid

D = Decimal
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES: Templates = load_templates(ROOT / "config" / "messages.toml")
CATALOG: Catalog = parse_catalog(
    """
[defaults]
period = "month"
currency = "USD"
near_levels = [0.8]
[metrics]
api_calls = "API calls"
storage_gb = "GB of storage"
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
pausable = true
limits = { api_calls = 100 }
[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79
pausable = true
limits = { api_calls = 1000, storage_gb = 50 }
near_levels = [0.5, 0.8]
""",
    "test-plans.toml",
)
RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS
)


def ms(text: str) -> int:
    return datetime_to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


NOW = ms("2026-03-15T12:00:00")
PRUNE_BEFORE = NOW - RULES.late_grace_ms - 1  # as the usage agent calls it
MARCH = Period.from_ms(ms("2026-03-01T00:00:00"), ms("2026-04-01T00:00:00"))
FEB = Period.from_ms(ms("2026-02-01T00:00:00"), MARCH.start_ms)


def plan(
    account: str = "acct-1", plan_id: str = "starter", status: Status = "active", **limits: str
) -> AccountPlan:
    return AccountPlan(
        account, plan_id, None, status, {m: D(v) for m, v in limits.items()}, NOW - DAY_MS
    )


@dataclass
class Batch:
    """Factory of a batch of usage records, turned into Accepted items by the real intake."""

    records: list[RawRecord] = field(default_factory=list)

    def add(self, account: str = "acct-1", **fields: Any) -> Batch:
        offset = len(self.records)
        record: dict[str, Any] = {
            "record_id": f"r-{offset}",
            "account_id": account,
            "metric": "api_calls",
            "quantity": 1,
            "timestamp": NOW - HOUR_MS + offset,
        }
        record.update(fields)
        raw = RawRecord(account.encode(), orjson.dumps(record), "usage-records", 0, offset, NOW - 7)
        self.records.append(raw)
        return self

    def accepted(self, *plans: AccountPlan) -> list[Accepted]:
        by_account = {p.account_id: p for p in plans}
        result = run_intake(
            self.records,
            IntakeState(
                plan_of=by_account.get, totals_of=lambda _: AccountTotals(), seen_at=lambda _: None
            ),
            now_ms=NOW,
            rules=RULES,
            catalog=CATALOG,
        )
        return result.accepted


@dataclass
class Announced:
    """The announced-levels table, as a dict of JSON; records the lookups."""

    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def of(self, account: str) -> AnnouncedLevels:
        self.reads.append(account)
        return AnnouncedLevels.from_json(self.stored.get(account))

    def detect(
        self, accepted: Iterable[Accepted], prune_before_ms: int = PRUNE_BEFORE
    ) -> DetectionResult:
        result = detect_thresholds(
            accepted,
            now_ms=NOW,
            prune_before_ms=prune_before_ms,
            catalog=CATALOG,
            templates=TEMPLATES,
            announced_of=self.of,
        )
        self.stored.update({a: levels.to_json() for a, levels in result.announced.items()})
        return result


@pytest.fixture
def announced() -> Callable[..., Announced]:
    def make(**stored: AnnouncedLevels) -> Announced:
        return Announced({a: levels.to_json() for a, levels in stored.items()})

    return make


def summary(result: DetectionResult) -> list[tuple[str, float, list[float], str]]:
    return [
        (
            m.payload["kind"],
            m.payload["level"],
            m.payload["crossed_levels"],
            m.payload["trigger_record_id"],
        )
        for m in result.moments
    ]


# --- which records announce what ------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantities", "expected"),
    [
        ([79], []),
        ([80], [("threshold-near", 0.8, [0.8], "r-0")]),  # exactly 80%: near
        ([79, 1], [("threshold-near", 0.8, [0.8], "r-1")]),
        (
            [50, 30, 19, 1],
            [("threshold-near", 0.8, [0.8], "r-1"), ("threshold-hit", 1.0, [1.0], "r-3")],
        ),
        ([100], [("threshold-hit", 1.0, [0.8, 1.0], "r-0")]),  # one event, highest level
        ([250], [("threshold-hit", 1.0, [0.8, 1.0], "r-0")]),
        (
            [85, 5, 5, 5, 5, 100],
            [("threshold-near", 0.8, [0.8], "r-0"), ("threshold-hit", 1.0, [1.0], "r-3")],
        ),
        ([0, 0], []),
    ],
)
def test_one_event_per_record_for_the_highest_new_level(
    announced: Callable[..., Announced],
    quantities: list[int],
    expected: list[tuple[str, float, list[float], str]],
) -> None:
    batch = Batch()
    for q in quantities:
        batch.add(quantity=q)
    result = announced().detect(batch.accepted(plan()))
    assert summary(result) == expected


def test_a_plans_own_near_levels_are_used(announced: Callable[..., Announced]) -> None:
    batch = Batch().add(quantity=500).add(quantity=299).add(quantity=1).add(quantity=900)
    result = announced().detect(batch.accepted(plan(plan_id="growth")))
    assert summary(result) == [
        ("threshold-near", 0.5, [0.5], "r-0"),
        ("threshold-near", 0.8, [0.8], "r-2"),
        ("threshold-hit", 1.0, [1.0], "r-3"),
    ]


def test_levels_are_compared_exactly(announced: Callable[..., Announced]) -> None:
    # 0.8 * 0.29 = 0.232 exactly; a float product would be 0.23199999999999998.
    batch = Batch().add(quantity=0.231).add(quantity=0.001)
    result = announced().detect(batch.accepted(plan(api_calls="0.29")))
    assert summary(result) == [("threshold-near", 0.8, [0.8], "r-1")]


def test_the_accounts_own_limit_overrides_the_plans(announced: Callable[..., Announced]) -> None:
    result = announced().detect(Batch().add(quantity=400).accepted(plan(api_calls="500")))
    (moment,) = result.moments
    assert moment.payload["usage"]["limit"] == 500
    assert moment.payload["level"] == 0.8


@pytest.mark.parametrize(
    "account_plan",
    [
        None,  # unknown account
        plan(status="paused"),
        plan(status="cancelled"),
        plan(plan_id="legacy"),  # no longer in the catalog
    ],
    ids=["unknown-account", "paused", "cancelled", "plan-not-in-catalog"],
)
def test_inactive_or_unknown_plans_announce_nothing(
    announced: Callable[..., Announced], account_plan: AccountPlan | None
) -> None:
    plans = () if account_plan is None else (account_plan,)
    accepted = Batch().add(quantity=80).add(quantity=100).accepted(*plans)
    assert len(accepted) == 2
    table = announced()
    result = table.detect(accepted)
    assert result.moments == [] and result.announced == {}
    assert table.reads == []


def test_a_metric_without_a_limit_announces_nothing(announced: Callable[..., Announced]) -> None:
    accepted = Batch().add(metric="storage_gb", quantity=10**6).accepted(plan())
    result = announced().detect(accepted)
    assert result.moments == [] and result.announced == {}


def test_an_override_gives_an_unlimited_metric_thresholds(
    announced: Callable[..., Announced],
) -> None:
    accepted = Batch().add(metric="storage_gb", quantity=10).accepted(plan(storage_gb="10"))
    assert summary(announced().detect(accepted)) == [("threshold-hit", 1.0, [0.8, 1.0], "r-0")]


def test_levels_already_announced_are_not_repeated(announced: Callable[..., Announced]) -> None:
    before = AnnouncedLevels()
    before.mark("api_calls", MARCH, "starter", [D("0.8")])
    table = announced(**{"acct-1": before})
    accepted = Batch().add(quantity=85).add(quantity=15).accepted(plan())
    assert summary(table.detect(accepted)) == [("threshold-hit", 1.0, [1.0], "r-1")]
    # Detection reads state once the account crosses something, and it is written back.
    assert table.detect(Batch().add(quantity=500).accepted(plan())).moments == []


def test_another_plan_starts_unannounced(announced: Callable[..., Announced]) -> None:
    before = AnnouncedLevels()
    before.mark("api_calls", MARCH, "growth", [D("0.5"), D("0.8"), D("1.0")])
    table = announced(**{"acct-1": before})
    result = table.detect(Batch().add(quantity=90).accepted(plan()))
    assert summary(result) == [("threshold-near", 0.8, [0.8], "r-0")]
    assert result.announced["acct-1"].announced("api_calls", MARCH, "growth") == {
        D("0.5"),
        D("0.8"),
        D("1"),
    }


# --- returned state -------------------------------------------------------------------------


def test_announced_state_is_returned_for_changed_accounts_only(
    announced: Callable[..., Announced],
) -> None:
    batch = Batch()
    batch.add("acct-1", quantity=90)  # crosses 0.8
    batch.add("acct-2", quantity=10)  # crosses nothing
    batch.add("acct-3", quantity=100, metric="storage_gb")  # unlimited
    batch.add("acct-4", quantity=100)  # paused
    accepted = batch.accepted(
        plan("acct-1"), plan("acct-2"), plan("acct-3"), plan("acct-4", status="paused")
    )
    result = announced().detect(accepted)
    assert set(result.announced) == {"acct-1"}
    assert result.announced["acct-1"].announced("api_calls", MARCH, "starter") == {D("0.8")}


def test_state_is_read_once_a_total_reaches_a_level_and_once_per_batch(
    announced: Callable[..., Announced],
) -> None:
    # starter: api_calls 100 (levels 0.8 and 1.0); growth: storage_gb 50 (levels 0.5 and up).
    batch = Batch()
    batch.add("acct-1", quantity=70)  # 70 % of its limit: no level can be crossed
    batch.add("acct-2", quantity=79)
    batch.add("acct-2", quantity=2)  # 81 %: 0.8
    batch.add("acct-2", quantity=1)  # still read from the batch's copy
    batch.add("acct-3", metric="storage_gb", quantity=20)  # 40 % of 50
    accepted = batch.accepted(plan("acct-1"), plan("acct-2"), plan("acct-3", plan_id="growth"))
    table = announced()
    result = table.detect(accepted)
    assert table.reads == ["acct-2"]
    assert summary(result) == [("threshold-near", 0.8, [0.8], "r-2")]


def test_an_account_crossing_twice_in_a_batch_is_returned_once(
    announced: Callable[..., Announced],
) -> None:
    table = announced()
    result = table.detect(Batch().add(quantity=80).add(quantity=20).accepted(plan()))
    assert len(result.moments) == 2
    assert list(result.announced) == ["acct-1"]
    assert table.reads == ["acct-1"]
    levels = result.announced["acct-1"].announced("api_calls", MARCH, "starter")
    assert levels == {D("0.8"), D("1")}


def test_prune_removes_periods_over(announced: Callable[..., Announced]) -> None:
    before = AnnouncedLevels()
    january = Period.from_ms(ms("2026-01-01T00:00:00"), FEB.start_ms)
    before.mark("api_calls", january, "starter", [D("0.8")])
    before.mark("api_calls", FEB, "starter", [D("0.8"), D("1")])
    before.mark("storage_gb", FEB, "growth", [D("0.5")])
    table = announced(**{"acct-1": before})
    result = table.detect(Batch().add(quantity=80).accepted(plan()))
    assert result.announced["acct-1"].levels == {
        "api_calls": {(MARCH.start_ms, MARCH.end_ms): {"starter": {D("0.8")}}}
    }


@pytest.mark.parametrize(
    ("prune_before_ms", "kept"),
    [(FEB.end_ms - 1, True), (FEB.end_ms, False)],
)
def test_prune_keeps_a_period_ending_after_the_cut(
    announced: Callable[..., Announced], prune_before_ms: int, kept: bool
) -> None:
    before = AnnouncedLevels()
    before.mark("api_calls", FEB, "starter", [D("0.8")])
    table = announced(**{"acct-1": before})
    result = table.detect(Batch().add(quantity=80).accepted(plan()), prune_before_ms)
    assert ((FEB.start_ms, FEB.end_ms) in result.announced["acct-1"].levels["api_calls"]) is kept


# --- the events -----------------------------------------------------------------------------


def test_events_are_valid_and_carry_the_records_identity(
    announced: Callable[..., Announced],
) -> None:
    batch = Batch().add(quantity=80).add(quantity=30)
    accepted = batch.accepted(plan())
    result = announced().detect(accepted)
    assert [m.kind for m in result.moments] == ["threshold-near", "threshold-hit"]
    for moment, item in zip(result.moments, accepted, strict=True):
        event = moment.payload
        assert_valid(event)
        assert moment.kind == event["kind"]
        assert moment.account_id == event["account_id"] == "acct-1"
        assert moment.arrived_ms == item.raw.arrived_ms
        assert event["trigger_record_id"] == item.record.record_id
        assert event["triggered_at"] == to_rfc3339(item.record.timestamp_ms)
        assert event["emitted_at"] == to_rfc3339(NOW)
        assert event["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
        assert event["usage"]["total"] == item.change.after
        assert event["event_id"] == event_id(
            event["kind"], "acct-1", "api_calls", MARCH.start_ms, "starter", D(str(event["level"]))
        )
    assert result.moments[1].payload["suggestion"]["action"] == "upgrade"
    assert result.moments[1].payload["suggestion"]["plan_id"] == "growth"


def test_the_top_plan_suggests_nothing(announced: Callable[..., Announced]) -> None:
    (moment,) = (
        announced().detect(Batch().add(quantity=1000).accepted(plan(plan_id="growth"))).moments
    )
    assert_valid(moment.payload)
    assert moment.payload["suggestion"]["action"] == "none"


def test_hand_built_accepted_items_work_too(announced: Callable[..., Announced]) -> None:
    record = UsageRecord("r-x", "acct-1", "api_calls", D(5), NOW)
    raw = RawRecord(b"acct-1", b"{}", "usage-records", 0, 0, NOW - 3)
    item = Accepted.of(record, raw, plan(), Change("api_calls", MARCH, D(75), D(80)))
    (moment,) = announced().detect([item]).moments
    assert_valid(moment.payload)
    assert (moment.payload["usage"]["total"], moment.arrived_ms) == (80, NOW - 3)


@given(
    quantities=st.lists(st.integers(0, 60), max_size=25),
    plan_id=st.sampled_from(["starter", "growth"]),
)
def test_each_level_is_announced_once_and_when_reached(quantities: list[int], plan_id: str) -> None:
    limit = 100 if plan_id == "starter" else 1000
    scale = 1 if plan_id == "starter" else 10
    batch = Batch()
    for q in quantities:
        batch.add(quantity=q * scale)
    table = Announced()
    accepted = batch.accepted(plan(plan_id=plan_id))
    result = table.detect(accepted)
    levels = CATALOG.plan(plan_id).levels  # type: ignore[union-attr]
    seen: list[float] = []
    for moment in result.moments:
        assert_valid(moment.payload)
        seen += moment.payload["crossed_levels"]
        assert moment.payload["level"] == moment.payload["crossed_levels"][-1]
    total = D(sum(quantities) * scale)
    assert seen == [float(level) for level in levels if total >= level * limit]
    # Replaying the batch announces nothing more.
    assert table.detect(accepted).moments == []
