"""Moments a business defines (contract 3.8): ``at_least`` rules on the usage path and
``at_most`` rules at a day close, checked against a naive oracle that recomputes every window
from the raw list of records."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.common.timeutil import parse_rfc3339_ms
from domain.intake.accounts import AccountPlan, carry_active_since
from domain.intake.batch import IntakeRules, IntakeState, RawRecord
from domain.intake.daily import AccountDaily
from domain.intake.usage import AccountTotals
from domain.moments.custom import ClosedDay, active_since_known, judge_closed_day
from domain.moments.usage import UsageContext, UsageOutcome, UsageState, run_usage
from domain.plans.catalog import Catalog, MomentRule, parse_catalog
from domain.plans.periods import day_start_ms, utc_day
from domain.rules.custom import RuleFirings
from domain.rules.thresholds import AnnouncedLevels
from domain.wording.custom import custom_event_id, day_text
from domain.wording.templates import Templates, load_templates
from tests.schema import assert_valid
from tests.unit.factories import DAY_MS, HOUR_MS, NOW, ms

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES: Templates = load_templates(ROOT / "config" / "messages.toml")
RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS
)
TODAY = utc_day(NOW)  # 2026-03-15

_HEAD = """
[metrics]
calls = "support calls"
logins = { unit = "logins", aggregation = "count" }
storage = { unit = "GB", aggregation = "max" }
seats = { unit = "seats", aggregation = "latest" }
users = { unit = "users", aggregation = "unique_count", unique = "user_id" }

[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
pausable = true
limits = { calls = 10, seats = 4 }

[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79
limits = { calls = 100, seats = 20 }
"""


def rule(**fields: Any) -> str:
    base: dict[str, Any] = {
        "id": "r",
        "metric": "calls",
        "window": "3d",
        "at_least": 3,
        "title": "{value} {unit} in {window_days} days",
        "body": "At least {threshold} on {plan_name} (limit {limit}); {upgrade_plan_name} costs "
        "{upgrade_price}.",
        "action": "none",
    }
    base.update(fields)
    lines = ["[[moments]]"]
    for key, value in base.items():
        if value is None:
            continue
        lines.append(f"{key} = {orjson.dumps(value).decode()}")
    return "\n".join(lines) + "\n"


def catalog(*rules: str) -> Catalog:
    return parse_catalog(_HEAD + "".join(rules), "test-plans.toml")


def plan(account: str = "a", plan_id: str = "starter", since_ms: int | None = 0) -> AccountPlan:
    return AccountPlan(account, plan_id, None, "active", {}, 0, active_since_ms=since_ms)


@dataclass
class World:
    """The tables the usage path reads, as JSON between batches (as a restart sees them)."""

    catalog: Catalog
    plans: dict[str, AccountPlan] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    daily: dict[str, Any] = field(default_factory=dict)
    firings: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    distinct: set[str] = field(default_factory=set)
    offset: int = 0

    def raw(self, account: str = "a", **fields: Any) -> RawRecord:
        record: dict[str, Any] = {
            "record_id": f"r-{self.offset}",
            "account_id": account,
            "metric": "calls",
            "quantity": 1,
            "timestamp": NOW - HOUR_MS,
        }
        record.update(fields)
        raw = RawRecord(account.encode(), orjson.dumps(record), "usage-records", 0, self.offset, 7)
        self.offset += 1
        return raw

    def run(self, raws: Sequence[RawRecord], now_ms: int = NOW) -> UsageOutcome:
        state = UsageState(
            IntakeState(
                plan_of=self.plans.get,
                totals_of=lambda a: AccountTotals.from_json(self.totals.get(a)),
                seen_at=self.seen.get,
                daily_of=lambda a: AccountDaily.from_json(self.daily.get(a)),
                distinct_held=lambda keys: {k for k in keys if k in self.distinct},
            ),
            announced_of=lambda a: AnnouncedLevels.from_json(None),
            firings_of=lambda a: RuleFirings.from_json(self.firings.get(a)),
        )
        context = UsageContext(RULES, self.catalog, TEMPLATES, lambda: now_ms)
        outcome = run_usage(raws, state, context, now_ms=now_ms)
        result = outcome.intake
        self.totals.update({a: t.to_json() for a, t in result.totals.items()})
        self.daily.update({a: d.to_json() for a, d in result.daily.items()})
        self.firings.update({a: f.to_json() for a, f in outcome.firings.items()})
        self.seen.update(result.seen)
        self.distinct.update(result.distinct)
        for moment in outcome.moments:
            assert_valid(moment.payload)
        return outcome


def custom(moments: Sequence[Any]) -> list[tuple[str, str, float, str]]:
    """(kind, account, value, triggered_at) of the custom events among ``moments``."""
    return [
        (m.kind, m.account_id, m.payload["custom"]["value"], m.payload["triggered_at"])
        for m in moments
        if m.kind.startswith("custom.")
    ]


# --- examples ---------------------------------------------------------------------------------


def test_an_at_least_rule_fires_on_the_record_that_reaches_it() -> None:
    world = World(catalog(rule(action="offer", offer="priority support", body="{offer}")))
    world.plans["a"] = plan()
    outcome = world.run([world.raw(timestamp=NOW - 3 * HOUR_MS + i) for i in range(4)])
    [moment] = [m for m in outcome.moments if m.kind.startswith("custom.")]
    event = moment.payload
    assert event["kind"] == "custom.r"
    assert event["custom"] == {"rule": "r", "window": "3d", "value": 3, "threshold": 3}
    assert (
        event["event_id"]
        == hashlib.sha256(f"custom|r|a|calls|{day_text(TODAY - 2)}".encode()).hexdigest()
    )
    assert event["event_id"] == custom_event_id("r", "a", "calls", "2026-03-13")
    assert event["usage"] == {"total": 3, "limit": 10, "ratio": 0.3, "unit": "support calls"}
    assert event["message"] == {"title": "3 support calls in 3 days", "body": "priority support"}
    assert event["suggestion"]["action"] == "offer"
    assert event["suggestion"]["offer"] == "priority support"
    assert event["triggered_at"] == "2026-03-15T09:00:00.002Z"
    assert event["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    # The cooldown (default: the window, 3 days) holds it back, across batches too.
    assert custom(world.run([world.raw()]).moments) == []
    assert RuleFirings.from_json(world.firings["a"]).fired["r"].at_ms == NOW - 3 * HOUR_MS + 2


def test_message_placeholders_render_as_documented() -> None:
    world = World(catalog(rule(at_least=0.2, of_limit=True)))
    world.plans["a"] = plan()
    [moment] = world.run([world.raw(quantity=2)]).moments
    assert moment.payload["message"] == {
        "title": "2 support calls in 3 days",
        "body": "At least 2 on Starter (limit 10); Growth costs $79.",
    }
    assert moment.payload["custom"]["threshold"] == 2
    # On the largest plan there is nothing to upgrade to: the current plan is named.
    world.plans["b"] = plan("b", "growth")
    [moment] = world.run([world.raw("b", quantity=20)]).moments
    assert moment.payload["message"]["body"] == (
        "At least 20 on Growth (limit 100); Growth costs $79."
    )


def test_of_limit_does_not_apply_without_a_limit() -> None:
    world = World(catalog(rule(metric="logins", at_least=0.5, of_limit=True)))
    world.plans["a"] = plan()
    assert custom(world.run([world.raw(metric="logins") for _ in range(5)]).moments) == []


def test_plan_filters_and_inactive_accounts() -> None:
    world = World(catalog(rule(at_least=1, plans=["growth"])))
    world.plans["a"] = plan()
    world.plans["b"] = plan("b", "growth")
    world.plans["c"] = AccountPlan("c", "growth", None, "paused", {}, 0)
    moments = world.run([world.raw(acct) for acct in ("a", "b", "c", "unknown")]).moments
    assert [m.account_id for m in moments] == ["b"]


def test_a_period_rule_fires_once_per_period() -> None:
    world = World(catalog(rule(window="period", at_least=2, cooldown=None)))
    world.plans["a"] = plan()
    first = world.run([world.raw(timestamp=ms("2026-03-02T00:00:00")) for _ in range(3)])
    assert custom(first.moments) == [("custom.r", "a", 2, "2026-03-02T00:00:00Z")]
    assert first.moments[0].payload["event_id"] == custom_event_id(
        "r", "a", "calls", "2026-03-01T00:00:00Z"
    )
    assert custom(world.run([world.raw(), world.raw()]).moments) == []


def test_upgrade_and_downgrade_are_chosen_as_the_built_in_kinds_choose_them() -> None:
    world = World(
        catalog(
            rule(id="up", at_least=9, action="upgrade"),
            rule(id="down", metric="logins", at_least=1, action="downgrade"),
        )
    )
    world.plans["a"] = plan()
    world.plans["b"] = plan("b", "growth")
    moments = world.run([world.raw(quantity=9), world.raw("b", metric="logins")]).moments
    up, down = (m.payload["suggestion"] for m in moments if m.kind.startswith("custom."))
    assert (up["action"], up["plan_id"]) == ("upgrade", "growth")
    assert (down["action"], down["plan_id"]) == ("downgrade", "starter")


def test_rules_of_a_catalog_without_them_change_nothing() -> None:
    plain = World(catalog())
    plain.plans["a"] = plan()
    outcome = plain.run([plain.raw(quantity=9)])
    assert outcome.firings == {}
    assert [m.kind for m in outcome.moments] == ["threshold-near"]


def test_firings_of_rules_gone_from_the_catalog_are_pruned() -> None:
    world = World(catalog(rule(id="kept", at_least=1)))
    world.plans["a"] = plan()
    world.firings["a"] = {"gone": [NOW - DAY_MS], "kept": [NOW - 10 * DAY_MS]}
    outcome = world.run([world.raw()])
    assert world.firings["a"] == {"kept": [NOW - HOUR_MS]}
    assert len(outcome.moments) == 1


def test_active_since_follows_the_status() -> None:
    held = plan(since_ms=5)
    assert carry_active_since(None, plan(since_ms=None), 7).active_since_ms == 7
    assert carry_active_since(held, plan(since_ms=None), 9).active_since_ms == 5
    paused = AccountPlan("a", "starter", None, "paused", {}, 0)
    assert carry_active_since(held, paused, 9).active_since_ms is None
    assert carry_active_since(paused, plan(since_ms=None), 11).active_since_ms == 11
    assert active_since_known(plan(since_ms=None), 42).active_since_ms == 42
    assert active_since_known(held, 42) is held
    assert AccountPlan.from_json(held.to_json()) == held
    assert "active_since_ms" not in paused.to_json()


# --- at_most ----------------------------------------------------------------------------------


def at_most(world: World, account: str, day: int) -> list[Any]:
    firings = RuleFirings.from_json(world.firings.get(account))
    moments = judge_closed_day(
        account,
        world.plans[account],
        AccountDaily.from_json(world.daily.get(account)),
        AccountTotals.from_json(world.totals.get(account)),
        ClosedDay(day, day_start_ms(day + 1) + 900_000),
        catalog=world.catalog,
        firings=lambda: firings,
        emitted_at=lambda: NOW,
    )
    world.firings[account] = firings.to_json()
    for moment in moments:
        assert_valid(moment.payload)
    return moments


def test_an_at_most_rule_fires_at_a_day_close_for_a_quiet_account() -> None:
    quiet = rule(id="quiet", window="7d", at_least=None, at_most=2, action="pause")
    world = World(catalog(quiet))
    world.plans["a"] = plan(since_ms=ms("2026-03-01T00:00:00"))
    world.plans["new"] = plan("new", since_ms=ms("2026-03-10T00:00:00"))
    world.run([world.raw(timestamp=ms("2026-03-05T10:00:00"), quantity=2)], now_ms=NOW)
    [moment] = at_most(world, "a", TODAY - 1)  # Mar 8..14: silence
    event = moment.payload
    assert event["custom"] == {"rule": "quiet", "window": "7d", "value": 0, "threshold": 2}
    assert event["event_id"] == custom_event_id("quiet", "a", "calls", "2026-03-08")
    assert event["triggered_at"] == "2026-03-15T00:00:00Z"
    assert event["suggestion"]["action"] == "pause"
    assert event["usage"]["total"] == 2
    # Not active for the whole window: not judged.
    assert at_most(world, "new", TODAY - 1) == []
    # The cooldown (7 days) holds the next days back; a week later it fires again.
    assert at_most(world, "a", TODAY) == []
    assert len(at_most(world, "a", TODAY + 6)) == 1


# --- the oracle -------------------------------------------------------------------------------

_AGGREGATIONS = {"calls": "sum", "logins": "count", "storage": "max", "seats": "latest"}


@dataclass(frozen=True)
class Sent:
    account: str
    metric: str
    ts_ms: int
    quantity: int
    user: int


def _window_value(metric: str, seen: Sequence[Sent], end_day: int, days: int) -> Decimal:
    """The naive value of the ``days`` ending on ``end_day`` over the records ``seen``."""
    first = end_day - days + 1
    inside = [s for s in seen if first <= utc_day(s.ts_ms) <= end_day]
    kind = _AGGREGATIONS.get(metric, "unique_count")
    if kind == "sum":
        return Decimal(sum(s.quantity for s in inside))
    if kind == "count":
        return Decimal(len(inside))
    if kind == "max":
        return Decimal(max((s.quantity for s in inside), default=0))
    if kind == "latest":
        before = [
            (s.ts_ms, i, s.quantity) for i, s in enumerate(seen) if utc_day(s.ts_ms) <= end_day
        ]
        return Decimal(max(before)[2]) if before else Decimal(0)
    return Decimal(len({s.user for s in inside}))


def _oracle(
    rules: Sequence[MomentRule], plans: dict[str, str], sent: Sequence[Sent]
) -> list[tuple[str, str, Decimal, int]]:
    """(rule, account, value, ts) of every firing, record by record."""
    fired: list[tuple[str, str, Decimal, int]] = []
    last: dict[tuple[str, str], int] = {}
    for index, record in enumerate(sent):
        seen = [
            s for s in sent[: index + 1] if (s.account, s.metric) == (record.account, record.metric)
        ]
        for r in rules:
            if r.metric != record.metric or not r.applies_to(plans[record.account]):
                continue
            assert r.window_days is not None
            value = _window_value(r.metric, seen, utc_day(record.ts_ms), r.window_days)
            threshold = r.amount
            if r.of_limit:
                plan = _RULES.plan(plans[record.account])
                assert plan is not None
                limit = plan.limits.get(r.metric)
                if limit is None:
                    continue  # of_limit without a limit: the rule does not apply
                threshold = r.amount * limit
            if value < threshold:
                continue
            held = last.get((r.id, record.account))
            assert r.cooldown_days is not None
            if held is not None and record.ts_ms < held + r.cooldown_days * DAY_MS:
                continue
            last[(r.id, record.account)] = record.ts_ms
            fired.append((r.id, record.account, value, record.ts_ms))
    return fired


_RULES = catalog(
    rule(id="sum-3d", window="3d", at_least=5),
    rule(id="sum-1d", window="1d", at_least=3, cooldown="2d", plans=["growth"]),
    rule(id="count-7d", metric="logins", window="7d", at_least=4, cooldown="1d"),
    rule(id="max-2d", metric="storage", window="2d", at_least=3),
    rule(id="latest-5d", metric="seats", window="5d", at_least=3, cooldown="1d"),
    rule(id="users-1d", metric="users", window="1d", at_least=2),
    rule(id="limit-7d", window="7d", at_least=0.4, of_limit=True, cooldown="1d"),
    rule(id="seats-limit", metric="seats", window="2d", at_least=0.5, of_limit=True),
    rule(id="logins-limit", metric="logins", window="3d", at_least=0.5, of_limit=True),
)

_sent = st.builds(
    Sent,
    account=st.sampled_from(["a", "b"]),
    metric=st.sampled_from(["calls", "logins", "storage", "seats", "users"]),
    # Within the current period (March) and the last 8 days, at most a minute before NOW.
    ts_ms=st.integers(NOW - 8 * DAY_MS, NOW - 60_000).map(lambda t: t - t % 1000),
    quantity=st.integers(0, 4),
    user=st.integers(0, 3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(_sent, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=5))
def test_at_least_rolling_windows_match_the_oracle(sent: list[Sent], cuts: list[int]) -> None:
    world = World(_RULES)
    plans = {"a": "starter", "b": "growth"}
    for account, plan_id in plans.items():
        world.plans[account] = plan(account, plan_id)
    raws = [
        world.raw(
            s.account,
            metric=s.metric,
            timestamp=s.ts_ms,
            quantity=s.quantity,
            user_id=s.user,
        )
        for s in sent
    ]
    found: list[tuple[str, str, Decimal, int]] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(raws)), len(raws)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        for moment in world.run(raws[start:end]).moments:
            if moment.kind.startswith("custom."):
                found.append(
                    (
                        moment.payload["custom"]["rule"],
                        moment.account_id,
                        Decimal(str(moment.payload["custom"]["value"])),
                        parse_rfc3339_ms(moment.payload["triggered_at"]),
                    )
                )
    assert found == _oracle(_RULES.moments, plans, sent)


@settings(max_examples=100, deadline=None)
@given(
    days=st.lists(st.integers(0, 6), max_size=12),
    closes=st.lists(st.integers(TODAY - 6, TODAY + 10), max_size=8, unique=True),
    since=st.integers(TODAY - 20, TODAY),
)
def test_at_most_windows_and_cooldowns_match_the_oracle(
    days: list[int], closes: list[int], since: int
) -> None:
    quiet = rule(id="quiet", window="3d", at_least=None, at_most=1, cooldown="4d")
    world = World(catalog(quiet))
    world.plans["a"] = plan(since_ms=day_start_ms(since) + 1)
    world.run([world.raw(timestamp=NOW - 60_000 - d * DAY_MS) for d in days], now_ms=NOW)
    last: int | None = None
    for day in sorted(closes):
        found = at_most(world, "a", day)
        value = sum(1 for d in days if day - 2 <= TODAY - d <= day)
        due = (
            value <= 1
            and day_start_ms(since) + 1 < day_start_ms(day - 2)
            and (last is None or day_start_ms(day + 1) >= last + 4 * DAY_MS)
        )
        assert len(found) == int(due), (day, value)
        if due:
            last = day_start_ms(day + 1)
            assert found[0].payload["custom"]["value"] == value
