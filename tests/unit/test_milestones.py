"""Lifetime totals and milestones (contract 3.4): the fold, exactness, detection and events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.common.formatting import format_milestone, format_ordinal, format_series, singular_unit
from domain.common.timeutil import parse_rfc3339_ms, to_rfc3339
from domain.intake.accounts import AccountPlan, Status
from domain.intake.batch import IntakeResult, IntakeRules, IntakeState, RawRecord, run_intake
from domain.intake.daily import AccountDaily
from domain.intake.lifetime import AccountLifetime
from domain.intake.usage import AccountTotals
from domain.moments.milestones import MilestoneResult, detect_milestones
from domain.plans.catalog import Catalog, Milestones, load_catalog, parse_catalog
from domain.wording.events import milestone_event_id, milestone_text
from domain.wording.messages import milestone_message
from domain.wording.templates import Templates, load_templates
from tests.schema import assert_valid
from tests.unit.factories import DAY_MS, HOUR_MS, NOW, ms
from tests.unit.test_messages import assert_clean_prose

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES: Templates = load_templates(ROOT / "config" / "messages.toml")
SHIPPED: Catalog = load_catalog(ROOT / "config" / "plans.toml")
CATALOG: Catalog = parse_catalog(
    """
[defaults]
period = "month"
currency = "USD"
near_levels = [0.8]
[metrics]
api_calls = "API calls"
purchases = "purchases"
storage_gb = "GB of storage"
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
pausable = true
limits = { api_calls = 100 }
[[milestones]]
metric = "purchases"
at = [10, 50, 100, 500]
reward = "15% off your next order"
[[milestones]]
metric = "storage_gb"
at = [2.5, 1000]
reward = "a month of extra backups"
""",
    "test-plans.toml",
)
RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS
)
PURCHASES = CATALOG.milestones["purchases"]


def plan(
    account: str = "acct-1", status: Status = "active", plan_id: str = "starter"
) -> AccountPlan:
    return AccountPlan(account, plan_id, None, status, {}, NOW - DAY_MS)


@dataclass
class World:
    """The tables the usage path reads, as JSON between batches (as a restart would see them)."""

    plans: dict[str, AccountPlan] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    daily: dict[str, Any] = field(default_factory=dict)
    lifetime: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    offset: int = 0

    def raw(self, account: str = "acct-1", **fields: Any) -> RawRecord:
        record: dict[str, Any] = {
            "record_id": f"r-{self.offset}",
            "account_id": account,
            "metric": "purchases",
            "quantity": 1,
            # One millisecond apart: an event's triggered_at names its record.
            "timestamp": NOW - HOUR_MS + self.offset,
        }
        record.update(fields)
        quantity = record["quantity"]
        if isinstance(quantity, (Decimal, str)):  # a JSON number written as this very text
            record["quantity"] = "@quantity@"
        value = orjson.dumps(record).replace(b'"@quantity@"', str(quantity).encode())
        raw = RawRecord(account.encode(), value, "usage-records", 0, self.offset, 7)
        self.offset += 1
        return raw

    def run(
        self, raws: Iterable[RawRecord], catalog: Catalog = CATALOG
    ) -> tuple[IntakeResult, MilestoneResult]:
        result = run_intake(
            raws,
            IntakeState(
                plan_of=self.plans.get,
                totals_of=lambda a: AccountTotals.from_json(self.totals.get(a)),
                seen_at=self.seen.get,
                daily_of=lambda a: AccountDaily.from_json(self.daily.get(a)),
                lifetime_of=lambda a: AccountLifetime.from_json(self.lifetime.get(a)),
            ),
            now_ms=NOW,
            rules=RULES,
            catalog=catalog,
        )
        found = detect_milestones(
            result.milestones_due,
            lifetime_of=result.lifetime.__getitem__,
            catalog=catalog,
            templates=TEMPLATES,
            now_ms=NOW,
        )
        # What the agent writes back, through the tables' JSON.
        self.totals.update({a: t.to_json() for a, t in result.totals.items()})
        self.daily.update({a: d.to_json() for a, d in result.daily.items()})
        self.lifetime.update({a: life.to_json() for a, life in result.lifetime.items()})
        self.seen.update(result.seen)
        for moment in found.moments:
            assert_valid(moment.payload)
        return result, found

    def total(self, account: str = "acct-1", metric: str = "purchases") -> Decimal:
        return AccountLifetime.from_json(self.lifetime.get(account)).total(metric)


def summary(found: MilestoneResult) -> list[tuple[float, list[float], float]]:
    return [
        (
            m.payload["milestone"]["value"],
            m.payload["milestone"]["reached"],
            m.payload["milestone"]["lifetime_total"],
        )
        for m in found.moments
    ]


# --- prose ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0th"),
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (10, "10th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (50, "50th"),
        (101, "101st"),
        (102, "102nd"),
        (111, "111th"),
        (112, "112th"),
        (113, "113th"),
        (1_000, "1,000th"),
        (1_011, "1,011th"),
        (10_001, "10,001st"),
        (1_000_000, "1,000,000th"),
    ],
)
def test_format_ordinal(number: int, text: str) -> None:
    assert format_ordinal(number) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_ordinal_suffix_follows_the_last_two_digits(number: int) -> None:
    # Oracle: English ordinals by the rule as people state it.
    tens, units = (number // 10) % 10, number % 10
    expected = "th" if tens == 1 else {1: "st", 2: "nd", 3: "rd"}.get(units, "th")
    text = format_ordinal(number)
    assert text.endswith(expected)
    assert text[:-2].replace(",", "") == str(number)


@pytest.mark.parametrize(
    ("unit", "singular"),
    [
        ("purchases", "purchase"),
        ("API calls", "API call"),
        ("seats", "seat"),
        ("events", "event"),
        ("searches", "search"),
        ("queries", "query"),
        ("boxes", "box"),
        ("addresses", "address"),
        ("GB of storage", None),
        ("kWh", None),
        ("status", None),
        ("GBs", None),
        ("€", None),
    ],
)
def test_singular_unit(unit: str, singular: str | None) -> None:
    assert singular_unit(unit) == singular


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (D(50), "purchases", "your 50th purchase"),
        (D(1), "purchases", "your 1st purchase"),
        (D(10_000), "API calls", "your 10,000th API call"),
        (D("1E+6"), "API calls", "your 1,000,000th API call"),
        (D(1000), "GB of storage", "1,000 GB of storage"),
        (D("2.5"), "purchases", "2.5 purchases"),
    ],
)
def test_format_milestone(value: Decimal, unit: str, text: str) -> None:
    assert format_milestone(value, unit) == text


def test_format_series() -> None:
    assert format_series([]) == ""
    assert format_series(["10"]) == "10"
    assert format_series(["10", "50"]) == "10 and 50"
    assert format_series(["10", "50", "100"]) == "10, 50 and 100"


@pytest.mark.parametrize("plan_id", [p.id for p in SHIPPED.plans])
@pytest.mark.parametrize(
    ("metric", "reached"),
    [
        ("purchases", [D(10)]),  # unlimited in every plan
        ("purchases", [D(10), D(50), D(100)]),
        ("api_calls", [D(10_000)]),  # limited in every plan
        ("seats", [D(2)]),  # limited below Enterprise, unlimited in it
        ("storage_gb", [D("2.5")]),  # not whole: no ordinal
        ("unknown_metric", [D(1)]),  # no display unit in the catalog
    ],
)
def test_the_milestone_template_renders_with_every_plan(
    plan_id: str, metric: str, reached: list[Decimal]
) -> None:
    # Shipped plans: Free (no lower plan), Enterprise (no higher plan, unlimited metrics),
    # none pricing overage.
    catalog_plan = SHIPPED.plan(plan_id)
    assert catalog_plan is not None
    message = milestone_message(
        TEMPLATES,
        catalog=SHIPPED,
        plan=catalog_plan,
        account_id="acct-1",
        metric=metric,
        value=reached[-1],
        reached=reached,
        lifetime_total=reached[-1] + 2,
        reward="15% off your next order",
        rationale="Celebrating it thanks a loyal customer.",
    )
    assert_clean_prose(message)
    assert "15% off your next order" in message.body


def test_the_milestone_message_reads_naturally() -> None:
    starter = CATALOG.plan("starter")
    assert starter is not None
    message = milestone_message(
        TEMPLATES,
        catalog=CATALOG,
        plan=starter,
        account_id="acct-1",
        metric="purchases",
        value=D(50),
        reached=[D(10), D(50)],
        lifetime_total=D(52),
        reward="15% off your next order",
        rationale="x",
    )
    assert message.title == "Congratulations on your 50th purchase!"
    assert message.body.startswith("50 purchases and counting, 52 so far.")
    assert message.body.endswith("here's a little something for you: 15% off your next order.")


# --- the lifetime state -----------------------------------------------------------------------


def test_add_folds_exactly_and_refuses_an_inexact_total() -> None:
    life = AccountLifetime()
    assert life.add("m", D("0.1")) == D("0.1")
    assert life.add("m", D("0.2")) == D("0.3")
    assert life.add("m", D("1e25")) is None  # 1e25 + 0.3 needs 29 digits: would round
    assert life.add("m", D("1e31")) is None  # past the ceiling
    assert life.add("m", D("0.1234567890123456789")) is None  # not a double's text
    assert life.totals == {"m": D("0.3")}  # every refusal left it unchanged
    assert life.add("n", D(2**53)) == D(2**53)
    assert life.add("n", D(1)) is None  # 2**53 + 1: no double holds it


def test_the_json_form_round_trips() -> None:
    life = AccountLifetime()
    life.add("purchases", D(60))
    life.add("storage_gb", D("2.75"))
    assert life.announce("purchases", PURCHASES, D(60)) == (D(10), D(50))
    back = AccountLifetime.from_json(orjson.loads(orjson.dumps(life.to_json())))
    assert back == life
    assert back.announced == {"purchases": (D(10), D(50))}
    assert AccountLifetime.from_json(None).is_empty()


def test_announce_marks_each_milestone_once_and_sees_catalog_changes() -> None:
    life = AccountLifetime()
    assert life.announce("purchases", PURCHASES, D(9)) == ()
    assert life.announce("purchases", PURCHASES, D(10)) == (D(10),)
    assert life.announce("purchases", PURCHASES, D(49)) == ()
    assert life.announce("purchases", PURCHASES, D(120)) == (D(50), D(100))
    assert life.announce("purchases", PURCHASES, D(120)) == ()
    # A catalog with a new milestone below the highest announced: it is announced next.
    more = Milestones("purchases", (D(10), D(25), D(50), D(100), D(500)), "r")
    assert life.due("purchases", more, D(121))
    assert life.announce("purchases", more, D(121)) == (D(25),)
    assert life.announced["purchases"] == (D(10), D(25), D(50), D(100))


# --- the intake fold --------------------------------------------------------------------------


def test_lifetime_counts_every_counted_record_once() -> None:
    world = World()
    late = ms("2026-01-10T00:00:00")
    dup = world.raw(quantity=5)
    raws = [
        dup,
        dup,  # a repeat: once
        world.raw(quantity=2, timestamp=late),  # late: counts in the lifetime total
        world.raw(quantity=-1),  # invalid: does not
        world.raw(account="acct-2", quantity=3),  # unknown account: counts
    ]
    result, _ = world.run(raws)
    assert result.outcomes == {"duplicate": 1, "late": 1, "invalid": 1, "unknown_account": 2}
    assert world.total() == 7
    assert world.total("acct-2") == 3


def test_a_record_making_the_lifetime_total_inexact_is_dead_lettered_and_changes_nothing() -> None:
    world = World()
    # Lifetime 2**53 - 2 already (from earlier periods); this period gets 1, then 0.5: the
    # period total (1.5) is exact, but no double holds the lifetime total 2**53 - 0.5.
    world.lifetime["acct-1"] = {"totals": {"purchases": str(2**53 - 2)}}
    result, found = world.run([world.raw(quantity="1"), world.raw(quantity="0.5")])
    assert result.outcomes == {"unknown_account": 1, "invalid": 1}
    [(raw, letter)] = result.dead_letters
    assert raw.offset == 1
    assert "lifetime total of purchases" in letter["error"]
    assert world.total() == D(2**53 - 1)
    # Nothing else moved: the period total, the daily total and dedup hold only the first.
    assert [*result.totals["acct-1"].periods["purchases"].values()] == [D("1")]
    days = result.daily["acct-1"].to_json()
    assert "0.5" not in orjson.dumps(days).decode()
    assert len(result.seen) == 1
    assert found.moments == []


def test_a_record_making_a_late_lifetime_total_inexact_is_dead_lettered() -> None:
    world = World()
    world.lifetime["acct-1"] = {"totals": {"purchases": "1e25"}}
    late = ms("2026-01-10T00:00:00")
    result, _ = world.run([world.raw(quantity="0.5", timestamp=late)])
    assert result.outcomes == {"invalid": 1}
    assert world.total() == D("1e25")
    assert result.seen == {}


# --- detection and events ---------------------------------------------------------------------


def test_crossing_10_then_50_and_two_at_once() -> None:
    world = World(plans={"acct-1": plan(), "acct-2": plan("acct-2")})
    _, found = world.run([world.raw(quantity=9), world.raw(quantity=1), world.raw(quantity=39)])
    assert summary(found) == [(10, [10], 10)]
    _, found = world.run([world.raw(quantity=1), world.raw(quantity=5)])
    assert summary(found) == [(50, [50], 50)]
    _, found = world.run([world.raw(quantity=1)])
    assert found.moments == []  # 50 is announced once, ever
    _, found = world.run([world.raw("acct-2", quantity=60)])
    [event] = found.moments
    assert summary(found) == [(50, [10, 50], 60)]
    payload = event.payload
    expected_id = hashlib.sha256(b"milestone|acct-2|purchases|50").hexdigest()
    assert payload["event_id"] == expected_id == milestone_event_id("acct-2", "purchases", D(50))
    assert payload["kind"] == "milestone"
    assert payload["metric"] == "purchases"
    assert payload["plan"] == {"id": "starter", "name": "Starter", "price": 19, "currency": "USD"}
    assert payload["usage"] == {"total": 60, "limit": None, "ratio": None, "unit": "purchases"}
    assert payload["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    assert payload["suggestion"]["action"] == "reward"
    assert payload["suggestion"]["offer"] == "15% off your next order"
    assert "your 50th purchase" in payload["suggestion"]["rationale"]
    assert payload["message"]["title"] == "Congratulations on your 50th purchase!"
    assert payload["triggered_at"] == to_rfc3339(NOW - HOUR_MS + 6)
    assert "trigger_record_id" not in payload


def test_usage_while_unknown_or_paused_counts_and_the_next_active_record_announces_all() -> None:
    world = World()
    _, found = world.run([world.raw(quantity=12)])  # plan unknown
    assert found.moments == []
    world.plans["acct-1"] = plan(status="paused")
    _, found = world.run([world.raw(quantity=40)])  # paused
    assert found.moments == []
    assert world.total() == 52
    world.plans["acct-1"] = plan()
    _, found = world.run([world.raw(quantity=0), world.raw(quantity=1)])
    assert summary(found) == [(50, [10, 50], 52)]


def test_a_late_record_announces_without_period_or_usage() -> None:
    world = World(plans={"acct-1": plan()})
    late = ms("2026-01-10T00:00:00")
    result, found = world.run([world.raw(quantity=10, timestamp=late)])
    assert result.outcomes == {"late": 1}
    [event] = found.moments
    assert "period" not in event.payload and "usage" not in event.payload
    assert event.payload["milestone"] == {"value": 10, "lifetime_total": 10, "reached": [10]}


def test_a_metric_without_milestones_or_a_plan_gone_from_the_catalog_announces_nothing() -> None:
    world = World(plans={"acct-1": plan(), "acct-2": plan("acct-2", plan_id="retired")})
    result, found = world.run(
        [world.raw(metric="api_calls", quantity=10**6), world.raw("acct-2", quantity=20)]
    )
    assert found.moments == []
    assert world.total(metric="api_calls") == 10**6
    # The retired plan marked nothing: the milestone is still to announce.
    assert world.lifetime["acct-2"].get("announced") is None


def test_a_milestone_that_is_not_whole_has_a_plain_decimal_id() -> None:
    world = World(plans={"acct-1": plan()})
    _, found = world.run([world.raw(metric="storage_gb", quantity="2.5")])
    [event] = found.moments
    assert milestone_text(D("2.5")) == "2.5"
    assert milestone_text(D("1E+3")) == "1000"
    assert (
        event.payload["event_id"] == hashlib.sha256(b"milestone|acct-1|storage_gb|2.5").hexdigest()
    )
    assert event.payload["message"]["title"] == "Congratulations on 2.5 GB of storage!"


def test_a_forgotten_account_starts_afresh() -> None:
    world = World(plans={"acct-1": plan()})
    _, found = world.run([world.raw(quantity=10)])
    assert len(found.moments) == 1
    world.lifetime.pop("acct-1")  # what a tombstone does to the lifetime table
    _, found = world.run([world.raw(quantity=10)])
    assert summary(found) == [(10, [10], 10)]


# --- the rule against an oracle ---------------------------------------------------------------

QUANTITIES = st.one_of(
    st.integers(min_value=0, max_value=60).map(D),
    st.sampled_from([D("0.5"), D("2.25"), D("9.75")]),
)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),  # account
        st.sampled_from(["purchases", "purchases", "storage_gb", "api_calls"]),
        QUANTITIES,
        st.sampled_from(["active", "active", "paused", None]),  # the plan at that record
        st.booleans(),  # a batch ends after this record
    ),
    max_size=40,
)


def oracle(
    steps: Sequence[tuple[str, str, Decimal, str | None, bool]],
) -> list[tuple[str, str, float, list[float], float, int]]:
    """Replay: prefix sums per (account, metric); a record of an active account announces
    every milestone its prefix sum reaches that no earlier record announced."""
    sums: dict[tuple[str, str], Decimal] = {}
    done: dict[tuple[str, str], set[Decimal]] = {}
    events = []
    for index, (account, metric, quantity, status, _) in enumerate(steps):
        key = (account, metric)
        sums[key] = sums.get(key, D(0)) + quantity
        entry = CATALOG.milestones.get(metric)
        if entry is None or status != "active":
            continue
        new = [m for m in entry.at if m <= sums[key] and m not in done.setdefault(key, set())]
        if new:
            done[key].update(new)
            events.append(
                (account, metric, float(new[-1]), [float(m) for m in new], float(sums[key]), index)
            )
    return events


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_milestones_match_the_replay_oracle(
    steps: list[tuple[str, str, Decimal, str | None, bool]],
) -> None:
    world = World()
    got = []
    batch: list[RawRecord] = []
    statuses: dict[str, str | None] = {}

    def flush() -> None:
        for account, status in statuses.items():
            if status is None:
                world.plans.pop(account, None)
            else:
                world.plans[account] = plan(account, status)  # type: ignore[arg-type]
        _, found = world.run(batch)
        for m in found.moments:
            p = m.payload
            index = record_index(p["triggered_at"])
            got.append(
                (
                    m.account_id,
                    p["metric"],
                    p["milestone"]["value"],
                    p["milestone"]["reached"],
                    p["milestone"]["lifetime_total"],
                    index,
                )
            )
        batch.clear()
        statuses.clear()

    # A batch holds records whose accounts keep one plan (a plan is fixed for a batch), so the
    # oracle sees each record's plan as the worker does.
    for account, metric, quantity, status, ends in steps:
        if account in statuses and statuses[account] != status:
            flush()
        statuses[account] = status
        batch.append(world.raw(account, metric=metric, quantity=str(quantity)))
        if ends:
            flush()
    flush()
    assert got == oracle(steps)


def record_index(triggered_at: str) -> int:
    """The index of the record an event names by its time (records are 1 ms apart)."""
    return parse_rfc3339_ms(triggered_at) - (NOW - HOUR_MS)


def test_only_the_crossing_record_of_a_batch_is_listed() -> None:
    world = World(plans={"acct-1": plan()})
    result, found = world.run([world.raw(quantity=4) for _ in range(40)])  # 4, 8, ... 160
    # Records at 12, 52 and 100: the crossings only, not every record after them.
    assert [d.lifetime_total for d in result.milestones_due] == [12, 52, 100]
    assert summary(found) == [(10, [10], 12), (50, [50], 52), (100, [100], 100)]
    # The next batch is judged by what was announced.
    _, found = world.run([world.raw(quantity=340)])
    assert summary(found) == [(500, [500], 500)]
