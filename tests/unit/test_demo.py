"""The simulator's showcase (commands.simulate.demo): the records it plans trigger every kind
of moment.

Each test replays the planned records through the pure rules of the worker (drop assessment,
anniversary periods, account-change diff) or through an independent sum (milestones,
threshold levels), with the default settings and at several wall-clock times, including the
awkward ones: just after midnight (before the drop grace), at a month's end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from commands.simulate.demo import Planned, Showcase
from domain.intake.accounts import AccountPlan
from domain.intake.cloudevents import MeteredEvent, is_cloudevent, read_usage
from domain.intake.daily import CLOSED, DailyTotals
from domain.intake.records import Metering, UsageRecord, parse_plan, parse_usage
from domain.moments.changes import diff_accounts
from domain.moments.evaluation import due_day
from domain.plans.catalog import Catalog, load_catalog, parse_catalog
from domain.plans.periods import day_start_ms, utc_day
from domain.rules.anniversaries import HOUR_MS, due_cut, latest_closed
from domain.rules.drops import DropRules, assess, step
from domain.wording.kinds import KINDS

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "plans.toml"
GRACE_MS = HOUR_MS
DROP_GRACE_MS = 15 * 60_000
SKEW_MS = 300_000
#: The shipped catalog's metering: the demo's records parse as the worker parses them.
METERING = Metering.of(load_catalog(SHIPPED))
RULES = DropRules(
    recent_days=3, baseline_weeks=4, min_expected=Decimal(100), fraction=Decimal("0.7")
)
NOWS = [
    1_796_092_416_000,  # 2026-12-01T02:33:36Z
    1_767_225_000_000,  # 2025-12-31T23:50:00Z, a year's last minutes
    1_767_226_200_000,  # 2026-01-01T00:10:00Z, before the drop grace
    1_772_323_200_000 - 1,  # 2026-02-28T23:59:59.999Z
    1_779_537_600_000,  # 2026-05-23T12:00:00Z, a Saturday
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(SHIPPED)


def showcase(catalog: Catalog, now_ms: int) -> Showcase:
    return Showcase(catalog, now_ms, tag="t", late_grace_ms=GRACE_MS, drop_grace_ms=DROP_GRACE_MS)


def usage_of(records: list[Planned], account_id: str, now_ms: int) -> list[tuple[int, Decimal]]:
    """(timestamp, quantity) of the account's usage records, validated as the worker does."""
    out = []
    for planned in records:
        if planned.topic == "usage" and planned.key == account_id.encode():
            usage = parse_usage(planned.value, now_ms + int(planned.at_s * 1000), SKEW_MS, METERING)
            out.append((usage.timestamp_ms, Decimal(usage.quantity)))
    return out


def readings(planned: Planned, sent_ms: int, catalog: Catalog) -> tuple[UsageRecord, ...]:
    """What the worker reads from a usage record of the demo: a plain record or a CloudEvent."""
    read = read_usage(planned.value, planned.headers, catalog, sent_ms, 0)
    return read.readings if isinstance(read, MeteredEvent) else (read,)


def daily(records: list[tuple[int, Decimal]]) -> DailyTotals:
    totals = DailyTotals()
    for ts, quantity in records:
        totals.add(ts, quantity)
    return totals


def test_the_showcase_promises_every_kind(catalog: Catalog) -> None:
    custom = {rule.kind for rule in catalog.moments}
    assert custom == {"custom.support-heavy", "custom.quiet-week", "custom.first-export"}
    assert showcase(catalog, NOWS[0]).kinds() == set(KINDS) | {"birthday"} | custom


@pytest.mark.parametrize("now_ms", NOWS)
def test_every_record_is_valid_and_none_is_in_the_future(catalog: Catalog, now_ms: int) -> None:
    demo = showcase(catalog, now_ms)
    for planned in demo.history + demo.live:
        sent_ms = now_ms + int(planned.at_s * 1000)
        if planned.topic == "plans":
            assert parse_plan(planned.value, catalog).account_id == planned.key.decode()
        else:
            for usage in readings(planned, sent_ms, catalog):  # not even within the skew
                assert usage.account_id == planned.key.decode()
                # Kept in daily totals: within the 35 days of retention.
                assert utc_day(usage.timestamp_ms) > utc_day(now_ms) - 35
    ids = [
        orjson.loads(p.value).get("record_id") or orjson.loads(p.value)["id"]
        for p in demo.history + demo.live
        if p.topic == "usage"
    ]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("now_ms", NOWS)
def test_drop_at_the_due_day_and_recovery_at_the_next_one(catalog: Catalog, now_ms: int) -> None:
    demo = showcase(catalog, now_ms)
    due = due_day(now_ms, DROP_GRACE_MS)
    records = demo.history + demo.live
    for role in ("drop", "back"):
        history = daily(usage_of(records, demo.account(role), now_ms))
        assessment = assess(history, due, RULES)
        emit, _ = step(CLOSED, assessment, RULES)
        assert emit, (role, assessment)
        assert assessment.recent_total == 0
    drop = daily(usage_of(records, demo.account("drop"), now_ms))
    # A worker crossing a day close while it starts evaluates the next day: a drop too.
    assert assess(drop, due + 1, RULES).is_drop
    back = daily(usage_of(records, demo.account("back"), now_ms))
    _, episode = step(CLOSED, assess(back, due, RULES), RULES)
    # The evaluation of the day of its last live record ends the episode: usage-recovered
    # (today's, unless the live records cross midnight).
    back_day = utc_day(max(ts for ts, _ in usage_of(demo.live, demo.account("back"), now_ms)))
    assert back_day - utc_day(now_ms) in (0, 1)
    emit, after = step(episode, assess(back, back_day, RULES), RULES)
    assert not emit and not after.open
    assert not assess(drop, back_day, RULES).recent_total  # the other stays silent


@pytest.mark.parametrize("now_ms", NOWS)
def test_anniversaries_final_at_the_current_cut_and_the_next(catalog: Catalog, now_ms: int) -> None:
    demo = showcase(catalog, now_ms)
    cut = due_cut(now_ms, GRACE_MS)
    plans = {
        p.key.decode(): parse_plan(p.value, catalog) for p in demo.history if p.topic == "plans"
    }
    for role, at_cut in (("year", cut), ("renew", cut + HOUR_MS)):
        plan = AccountPlan.from_record(plans[demo.account(role)])
        period = latest_closed(plan, at_cut, catalog)
        assert period.end_ms == at_cut, role
        # A year of periods: the anniversary message celebrates it.
        assert plan.anchor_ms is not None and at_cut - plan.anchor_ms >= 365 * 86_400_000
    # The cut after the next is due within two hours of the start, the first one at once.
    assert now_ms - GRACE_MS - 2 * HOUR_MS < cut <= now_ms - GRACE_MS


@pytest.mark.parametrize("now_ms", NOWS)
def test_milestone_crossed_by_a_live_purchase(catalog: Catalog, now_ms: int) -> None:
    demo = showcase(catalog, now_ms)
    entry = catalog.milestones["purchases"]
    account = demo.account("milestone").encode()
    total = Decimal(0)
    for planned in demo.history:
        if planned.topic == "usage" and planned.key == account:
            total += Decimal(str(orjson.loads(planned.value)["quantity"]))
    assert total < entry.at[0]
    for planned in sorted(demo.live, key=lambda p: p.at_s):
        if planned.key != account:
            continue
        total += Decimal(str(orjson.loads(planned.value)["quantity"]))
        assert ("milestone" in planned.kinds) == (total >= entry.at[0] > total - 1)
    assert total >= entry.at[0]


@pytest.mark.parametrize("now_ms", NOWS[:2])
def test_thresholds_near_hit_and_overage_in_order(catalog: Catalog, now_ms: int) -> None:
    demo = showcase(catalog, now_ms)
    plan = demo.base_plan
    limit = plan.limits[demo.metric]
    over = plan.over_levels or catalog.over_levels
    levels = sorted({*plan.near_levels, Decimal(1), *over})
    account = demo.account("overage").encode()
    total = Decimal(0)
    seen: list[Decimal] = []
    for planned in sorted(demo.live, key=lambda p: p.at_s):
        if planned.key != account:
            continue
        before = total
        total += Decimal(str(orjson.loads(planned.value)["quantity"]))
        crossed = [lv for lv in levels if before < lv * limit <= total]
        kind = None if not crossed else ("threshold-near" if crossed[-1] < 1 else "threshold-hit")
        assert planned.kinds == (() if kind is None else (kind,))
        seen += crossed
    assert Decimal("0.8") in seen and Decimal(1) in seen and any(lv > 1 for lv in seen)
    assert plan.overage.get(demo.metric)  # the overage event carries a cost


def test_account_changes_one_of_each_type(catalog: Catalog) -> None:
    demo = showcase(catalog, NOWS[0])
    account = demo.account("change").encode()
    records = [p for p in demo.history + sorted(demo.live, key=lambda p: p.at_s)]
    held: tuple[int, AccountPlan] | None = None
    types: list[str] = []
    for planned in records:
        if planned.key != account:
            continue
        record = parse_plan(planned.value, catalog)
        plan = AccountPlan.from_record(record)
        if held is not None:
            assert record.updated_at_ms > held[0]
            changes = [c.type for c in diff_accounts(held[1], plan, catalog)]
            assert len(changes) == 1 and planned.kinds == ("account-change",)
            types += changes
        held = (record.updated_at_ms, plan)
    assert types == [
        "plan_upgraded",
        "members_added",
        "region_changed",
        "paused",
        "resumed",
        "plan_downgraded",
        "cancelled",
    ]


def test_same_clock_same_records_and_new_tag_new_accounts(catalog: Catalog) -> None:
    first, second = showcase(catalog, NOWS[0]), showcase(catalog, NOWS[0])
    assert first.history == second.history and first.live == second.live
    other = Showcase(catalog, NOWS[0], tag="u")
    assert {p.key for p in other.history}.isdisjoint({p.key for p in first.history})


@pytest.mark.parametrize("api_calls", [True, False], ids=["shipped", "no-api-calls-limit"])
def test_demo_usage_adds_up_it_sends_no_level_as_a_sum(catalog: Catalog, api_calls: bool) -> None:
    """The drop history and the overage job add records up: they use a sum (or count)
    metric, never a level (latest, max) or a distinct count, even when the demo plan does not
    limit api_calls."""
    if not api_calls:
        text = SHIPPED.read_text().replace("limits = { api_calls = 10_000, ", "limits = { ", 1)
        catalog = parse_catalog(text, "plans.toml")
        assert "api_calls" not in catalog.plans[1].limits
    demo = showcase(catalog, NOWS[0])
    # The accounts of [[moments]] rules send their rule's metric, whatever it is (tested below).
    rules = {demo.account(rule.id).encode() for rule in catalog.moments}
    metrics = {
        orjson.loads(p.value)["metric"]
        for p in demo.history + demo.live
        if p.topic == "usage" and p.key not in rules
    }
    assert metrics
    assert {catalog.aggregation(m) for m in metrics} <= {"sum", "count"}
    assert demo.metric == ("api_calls" if api_calls else "events")


# ---------------------------------------------------------------- issue 19: rules and birthdays

#: The shipped rules, and rules of other shapes: a sum over the billing period (of_limit), a
#: count over one day needing more records than go live, a level, a distinct count.
MORE_RULES = """
[[moments]]
id = "heavy-period"
metric = "api_calls"
window = "period"
at_least = 0.5
of_limit = true
title = "{value}"
body = "{value}"
action = "none"

[[moments]]
id = "busy-day"
metric = "support_calls"
window = "1d"
at_least = 7
title = "{value}"
body = "{value}"
action = "none"

[[moments]]
id = "big-disk"
metric = "storage_gb"
window = "1d"
at_least = 5
plans = ["growth"]
title = "{value}"
body = "{value}"
action = "none"

[[moments]]
id = "crowd"
metric = "active_users"
window = "period"
at_least = 4
title = "{value}"
body = "{value}"
action = "none"

[[moments]]
id = "quiet-day"
metric = "events"
window = "1d"
at_most = 10
title = "{value}"
body = "{value}"
action = "none"
"""


@pytest.fixture(scope="module")
def rules_catalog() -> Catalog:
    return parse_catalog(SHIPPED.read_text() + MORE_RULES, "plans.toml")


def account_records(demo: Showcase, account_id: str) -> list[Planned]:
    return [p for p in demo.history + demo.live if p.key == account_id.encode()]


def window_value(
    catalog: Catalog, metric: str, window_days: int | None, records: list[UsageRecord], at_ms: int
) -> Decimal:
    """The oracle: the window's value at ``at_ms`` under the metric's aggregation, from the
    records alone (the demo accounts' periods start at a UTC day start: the default anchor)."""
    day = utc_day(at_ms)
    if window_days is None:
        moment = datetime.fromtimestamp(at_ms / 1000, UTC)
        first = utc_day(
            int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
        )
    else:
        first = day - window_days + 1
    inside = [
        r
        for r in records
        if r.metric == metric
        and first <= utc_day(r.timestamp_ms) <= day
        and r.timestamp_ms <= at_ms
    ]
    aggregation = catalog.aggregation(metric)
    if not inside:
        return Decimal(0)
    if aggregation == "count":
        return Decimal(len(inside))
    if aggregation == "unique_count":
        return Decimal(len({r.unique for r in inside}))
    if aggregation in ("max",):
        return max(r.quantity for r in inside)
    if aggregation == "latest":
        return max(inside, key=lambda r: r.timestamp_ms).quantity
    return sum((r.quantity for r in inside), Decimal(0))


@pytest.mark.parametrize("now_ms", NOWS)
def test_each_at_least_rule_is_reached_by_its_last_live_record_only(
    rules_catalog: Catalog, now_ms: int
) -> None:
    demo = showcase(rules_catalog, now_ms)
    at_least = [rule for rule in rules_catalog.moments if rule.at_least]
    assert len(at_least) == 6
    for rule in at_least:
        account_id = demo.account(rule.id)
        mine = account_records(demo, account_id)
        plan = parse_plan(next(p for p in mine if p.topic == "plans").value, rules_catalog)
        assert rule.applies_to(plan.plan_id)
        limit = rules_catalog.plan(plan.plan_id).limits.get(rule.metric)
        threshold = rule.amount * limit if rule.of_limit and limit else rule.amount
        usage = sorted(
            (p for p in mine if p.topic == "usage"), key=lambda p: (p.at_s, p.kinds != ())
        )
        seen: list[UsageRecord] = []
        for planned in usage:
            sent_ms = now_ms + int(planned.at_s * 1000)
            got = readings(planned, sent_ms, rules_catalog)
            assert [r.metric for r in got] == [rule.metric]
            before = window_value(rules_catalog, rule.metric, rule.window_days, seen, sent_ms)
            seen += got
            after = window_value(rules_catalog, rule.metric, rule.window_days, seen, sent_ms)
            fires = before < threshold <= after
            assert fires == (planned.kinds == (rule.kind,)), (rule.id, planned)
        assert usage[-1].kinds == (rule.kind,)
        assert usage[-1].at_s <= 180  # within three minutes of the start


def test_the_shipped_rules_live_records(catalog: Catalog) -> None:
    """Three support calls 10 s apart, one export: CloudEvents of the meters' types."""
    demo = showcase(catalog, NOWS[0])
    for rule_id, event_type, count in (
        ("support-heavy", "support-call", 3),
        ("first-export", "data-export", 1),
    ):
        usage = [p for p in account_records(demo, demo.account(rule_id)) if p.topic == "usage"]
        assert len(usage) == count and all(p in demo.live for p in usage)
        assert [orjson.loads(p.value)["type"] for p in usage] == [event_type] * count
        assert all(is_cloudevent(p.headers) for p in usage)
        assert [p.at_s - usage[0].at_s for p in usage] == [10.0 * i for i in range(count)]
        assert usage[0].at_s < 60


@pytest.mark.parametrize("now_ms", NOWS)
def test_an_at_most_account_was_active_before_the_window_and_quiet_since(
    rules_catalog: Catalog, now_ms: int
) -> None:
    demo = showcase(rules_catalog, now_ms)
    day = due_day(now_ms, DROP_GRACE_MS)
    at_most = [rule for rule in rules_catalog.moments if not rule.at_least]
    assert [rule.id for rule in at_most] == ["quiet-week", "quiet-day"]
    for rule in at_most:
        mine = account_records(demo, demo.account(rule.id))
        plans = [p for p in mine if p.topic == "plans"]
        assert len(plans) == 1 and plans[0].kinds == (rule.kind,)
        record = parse_plan(plans[0].value, rules_catalog)
        assert rule.applies_to(record.plan_id)
        if rule.id == "quiet-week":
            assert rules_catalog.plan(record.plan_id).price > 0  # a paid plan
        assert plans[0].timestamp_ms is not None
        assert plans[0].timestamp_ms == record.updated_at_ms
        # Known and active before the first day of the window of the due day, and of the
        # day before and after it (whichever a pass judges).
        days = rule.window_days
        assert days is not None
        assert plans[0].timestamp_ms < day_start_ms(day - 1 - days + 1)
        limit = rules_catalog.plan(record.plan_id).limits.get(rule.metric)
        threshold = rule.amount * limit if rule.of_limit and limit else rule.amount
        usage = [r for p in mine if p.topic == "usage" for r in readings(p, now_ms, rules_catalog)]
        assert all(p in demo.history for p in mine)
        for judged in (day - 1, day, day + 1):
            end_ms = day_start_ms(judged + 1) - 1
            assert window_value(rules_catalog, rule.metric, days, usage, end_ms) <= threshold
        if rule.id == "quiet-week":
            assert usage, "some usage, for a value that is not 0"


@pytest.mark.parametrize("now_ms", NOWS)
def test_two_birthdays_today(catalog: Catalog, now_ms: int) -> None:
    demo = showcase(catalog, now_ms)
    today = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%m-%d")
    born = {}
    for planned in demo.history + demo.live:
        if planned.topic == "plans" and "birth_date" in orjson.loads(planned.value):
            assert planned.kinds == ("birthday",) and planned in demo.history
            born[planned.key.decode()] = orjson.loads(planned.value)["birth_date"]
    assert born == {
        demo.account("birthday"): f"{int(datetime.fromtimestamp(now_ms / 1000, UTC).year) - 28}"
        f"-{today}",
        demo.account("bday"): f"--{today}",
    }


def test_no_rules_no_rule_accounts(catalog: Catalog) -> None:
    text = SHIPPED.read_text()
    bare = parse_catalog(text[: text.index("# Moments you define")], "plans.toml")
    assert bare.moments == ()
    demo = showcase(bare, NOWS[0])
    assert not [
        p for p in demo.history + demo.live if any(k.startswith("custom.") for k in p.kinds)
    ]
    full = showcase(catalog, NOWS[0])
    rule_keys = {demo_key for r in catalog.moments for demo_key in [full.account(r.id).encode()]}
    assert [
        p for p in full.history + full.live if p.key not in rule_keys
    ] == demo.history + demo.live
