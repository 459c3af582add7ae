"""Sudden-drop evaluation of one account for one closed day (contract 3.2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import datetime_to_ms, to_rfc3339
from domain.intake.accounts import AccountPlan, Status, period_of
from domain.intake.daily import CLOSED, AccountDaily, Episode
from domain.intake.usage import AccountTotals
from domain.moments.detection import Moment
from domain.moments.evaluation import due_day, evaluate_account
from domain.plans.catalog import Catalog, parse_catalog
from domain.plans.periods import date_to_day, day_start_ms, day_to_date
from domain.rules.drops import DropRules
from domain.wording.events import drop_event_id, recovered_event_id
from domain.wording.templates import Templates, load_templates
from tests.schema import assert_valid

D = Decimal
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
GRACE_MS = 15 * MINUTE_MS
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES: Templates = load_templates(ROOT / "config" / "messages.toml")
CATALOG: Catalog = parse_catalog(
    """
[defaults]
period = "month"
currency = "USD"
[metrics]
api_calls = "API calls"
events = "events"
[[plans]]
id = "free"
name = "Free"
rank = 0
price = 0
pausable = false
limits = { api_calls = 1000 }
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
pausable = true
limits = { api_calls = 10000 }
[[plans]]
id = "pro"
name = "Pro"
rank = 2
price = 99
pausable = false
limits = { api_calls = 100000 }
""",
    "test-plans.toml",
)
RULES = DropRules()
DAY = date_to_day(date(2026, 3, 15))  # the evaluated day: the last complete one
FIRST_RECENT = DAY - RULES.recent_days + 1
STEADY_FROM = DAY - 40
CLOSE_MS = day_start_ms(DAY + 1)
NOW = CLOSE_MS + GRACE_MS + 1234
ARRIVED = NOW - 5


def ms(text: str) -> int:
    return datetime_to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


def plan(plan_id: str = "starter", status: Status = "active", **limits: int) -> AccountPlan:
    return AccountPlan("acct-1", plan_id, None, status, {m: D(v) for m, v in limits.items()}, 0)


Usage = Callable[[int], int]


def silent_from(start: int, rate: int = 200) -> Usage:
    return lambda day: 0 if day >= start else rate


def build(
    usage: Usage,
    first: int = STEADY_FROM,
    last: int = DAY,
    metrics: tuple[str, ...] = ("api_calls",),
) -> tuple[AccountDaily, AccountTotals]:
    """Daily state and March totals of one record a day at noon; days of zero send nothing."""
    daily = AccountDaily()
    totals = AccountTotals()
    for day in range(first, last + 1):
        quantity = usage(day)
        if quantity:
            for metric in metrics:
                daily.add(metric, day_start_ms(day) + DAY_MS // 2, D(quantity))
                period = period_of(plan(), day_start_ms(day), CATALOG)
                totals.add(metric, period, D(quantity))
    return daily, totals


@pytest.fixture
def evaluate() -> Callable[..., tuple[list[Moment], bool]]:
    """Factory: evaluate_account with the test's catalog, templates and clock."""

    def run(
        daily: AccountDaily,
        account_plan: AccountPlan | None,
        totals: AccountTotals | None = None,
        day: int = DAY,
        **kwargs: Any,
    ) -> tuple[list[Moment], bool]:
        now_ms = day_start_ms(day + 1) + GRACE_MS + 1234
        return evaluate_account(
            "acct-1",
            daily,
            account_plan,
            totals if totals is not None else AccountTotals(),
            day,
            rules=kwargs.pop("rules", RULES),
            catalog=CATALOG,
            templates=TEMPLATES,
            now_ms=kwargs.pop("now_ms", now_ms),
            arrived_ms=kwargs.pop("arrived_ms", ARRIVED),
        )

    return run


# --- due_day --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "grace_ms", "due"),
    [
        ("2026-03-16T00:14:59.999", GRACE_MS, date(2026, 3, 14)),
        ("2026-03-16T00:15:00", GRACE_MS, date(2026, 3, 15)),
        ("2026-03-16T23:59:59.999", GRACE_MS, date(2026, 3, 15)),
        ("2026-03-17T00:14:59", GRACE_MS, date(2026, 3, 15)),
        ("2026-03-16T00:00:00", 0, date(2026, 3, 15)),
        ("2026-03-15T23:59:59.999", 0, date(2026, 3, 14)),
        ("2026-03-16T00:59:59", HOUR_MS, date(2026, 3, 14)),
        ("2026-03-16T01:00:00", HOUR_MS, date(2026, 3, 15)),
        ("2026-01-01T00:15:00", GRACE_MS, date(2025, 12, 31)),
    ],
)
def test_due_day_boundaries(now: str, grace_ms: int, due: date) -> None:
    assert day_to_date(due_day(ms(now), grace_ms)) == due


@given(st.integers(0, 4_102_444_800_000), st.integers(0, DAY_MS - 1))
def test_due_day_is_the_latest_day_closed_a_grace_ago(now_ms: int, grace_ms: int) -> None:
    due = due_day(now_ms, grace_ms)
    assert day_start_ms(due + 1) + grace_ms <= now_ms  # closed at least a grace ago
    assert now_ms < day_start_ms(due + 2) + grace_ms  # the next day is not yet due


# --- a drop ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan_id", "action", "suggested"),
    [
        ("starter", "pause", None),  # pausable, nothing used
        ("pro", "downgrade", "starter"),  # not pausable: cheapest lower plan that covers
        ("free", "none", None),  # nothing cheaper, nothing to pause
    ],
)
def test_silence_after_steady_use_is_one_drop(
    evaluate: Callable[..., tuple[list[Moment], bool]],
    plan_id: str,
    action: str,
    suggested: str | None,
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT))
    moments, changed = evaluate(daily, plan(plan_id), totals)
    assert changed
    (moment,) = moments
    event = moment.payload
    assert_valid(event)
    assert (moment.kind, moment.account_id, moment.arrived_ms) == ("sudden-drop", "acct-1", ARRIVED)
    assert event["kind"] == "sudden-drop"
    assert (event["account_id"], event["metric"]) == ("acct-1", "api_calls")
    assert event["event_id"] == drop_event_id("acct-1", "api_calls", day_to_date(FIRST_RECENT))
    assert event["triggered_at"] == to_rfc3339(CLOSE_MS) == "2026-03-16T00:00:00Z"
    assert event["emitted_at"] == to_rfc3339(NOW)
    assert event["plan"]["id"] == plan_id
    assert event["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    assert event["usage"]["total"] == 200 * 12  # March 1 .. 12
    assert event["drop"] == {
        "recent_days": 3,
        "recent_total": 0,
        "expected_total": 600,
        "ratio": 0,
        "last_active_at": to_rfc3339(day_start_ms(FIRST_RECENT - 1) + DAY_MS // 2),
    }
    assert event["suggestion"]["action"] == action
    assert event["suggestion"]["plan_id"] == suggested
    assert event["message"]["title"] and event["message"]["body"]
    assert daily.episode("api_calls") == Episode(True, FIRST_RECENT)


@pytest.mark.parametrize(
    ("plan_id", "recent_rate", "action", "suggested"),
    [
        ("pro", 20, "downgrade", "starter"),
        ("starter", 20, "none", None),  # used a little: no pause; Free would not cover it
        ("starter", 0, "pause", None),
    ],
)
def test_a_sharp_fall_that_is_not_silence(
    evaluate: Callable[..., tuple[list[Moment], bool]],
    plan_id: str,
    recent_rate: int,
    action: str,
    suggested: str | None,
) -> None:
    daily, totals = build(lambda day: recent_rate if day >= FIRST_RECENT else 200)
    (moment,), _ = evaluate(daily, plan(plan_id), totals)
    assert_valid(moment.payload)
    assert moment.payload["drop"]["recent_total"] == 3 * recent_rate
    assert moment.payload["suggestion"]["action"] == action
    assert moment.payload["suggestion"]["plan_id"] == suggested


def test_the_next_evaluation_of_an_open_episode_emits_nothing(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT))
    assert len(evaluate(daily, plan(), totals)[0]) == 1
    for day in (DAY + 1, DAY + 2, DAY + 5):
        moments, changed = evaluate(daily, plan(), totals, day=day)
        assert (moments, changed) == ([], False)
        assert daily.episode("api_calls") == Episode(True, FIRST_RECENT)


def test_evaluating_the_same_day_again_emits_nothing(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT))
    assert len(evaluate(daily, plan(), totals)[0]) == 1
    assert evaluate(daily, plan(), totals) == ([], False)


@pytest.mark.parametrize(
    "account_plan",
    [
        plan(status="paused"),
        plan(status="cancelled"),
        None,  # plan not known yet
        plan("legacy"),  # no longer in the catalog
    ],
    ids=["paused", "cancelled", "no-plan", "unknown-plan"],
)
def test_accounts_without_an_active_plan_open_the_episode_silently(
    evaluate: Callable[..., tuple[list[Moment], bool]], account_plan: AccountPlan | None
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT))
    moments, changed = evaluate(daily, account_plan, totals)
    assert moments == []
    assert changed
    # Opened, but marked as never sent: its end will bring no usage-recovered (contract 3.3).
    assert daily.episode("api_calls") == Episode(True, FIRST_RECENT, announced=False)
    # Reactivated the next day: the drop that happened while paused is not announced late.
    assert evaluate(daily, plan(), totals, day=DAY + 1) == ([], False)


@pytest.mark.parametrize(
    "usage",
    [
        lambda day: 200,
        lambda day: 150 if day >= FIRST_RECENT else 200,  # a dip, not a drop
        silent_from(FIRST_RECENT, rate=30),  # too little to notice (expected < 100)
    ],
    ids=["steady", "dip", "small"],
)
def test_no_drop_no_event_no_change(
    evaluate: Callable[..., tuple[list[Moment], bool]], usage: Usage
) -> None:
    daily, totals = build(usage)
    assert evaluate(daily, plan(), totals) == ([], False)
    assert daily.episodes == {}


def test_a_young_account_is_not_judged(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT), first=FIRST_RECENT - 13)
    assert evaluate(daily, plan(), totals) == ([], False)
    daily, totals = build(silent_from(FIRST_RECENT), first=FIRST_RECENT - 14)
    assert len(evaluate(daily, plan(), totals)[0]) == 1


def test_an_empty_account_is_not_evaluated(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    assert evaluate(AccountDaily(), plan()) == ([], False)


def test_recovery_rearms_and_the_next_drop_has_a_new_id(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    back = DAY + 3
    silent_again = DAY + 20

    def usage(day: int) -> int:
        return 0 if FIRST_RECENT <= day < back or day >= silent_again else 200

    daily, totals = build(usage, last=silent_again + 5)
    emitted: list[tuple[int, str]] = []
    for day in range(DAY, silent_again + 3):
        moments, changed = evaluate(daily, plan(), totals, day=day)
        emitted += [(day, m.payload["event_id"]) for m in moments]
        if day == back + 1:  # recent days back..back+1 at 200 and one silent: 400/600
            assert changed and daily.episode("api_calls") == CLOSED
    assert emitted == [
        (DAY, drop_event_id("acct-1", "api_calls", day_to_date(FIRST_RECENT))),
        (back + 1, recovered_event_id("acct-1", "api_calls", day_to_date(FIRST_RECENT))),
        (silent_again + 2, drop_event_id("acct-1", "api_calls", day_to_date(silent_again))),
    ]


def test_only_the_metric_that_dropped_is_announced(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT), metrics=("api_calls",))
    steady, _ = build(lambda day: 50, metrics=("events",))
    daily.metrics["events"] = steady.metrics["events"]
    moments, changed = evaluate(daily, plan(), totals)
    assert changed
    assert [m.payload["metric"] for m in moments] == ["api_calls"]
    assert set(daily.episodes) == {"api_calls"}


def test_several_metrics_drop_in_name_order(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT), metrics=("events", "api_calls"))
    moments, _ = evaluate(daily, plan(), totals)
    assert [m.payload["metric"] for m in moments] == ["api_calls", "events"]
    assert len({m.payload["event_id"] for m in moments}) == 2


def test_a_metric_without_a_limit_has_null_limit_and_ratio(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT), metrics=("events",))
    (moment,), _ = evaluate(daily, plan(), totals)
    assert_valid(moment.payload)
    assert moment.payload["usage"]["limit"] is None
    assert moment.payload["usage"]["ratio"] is None
    assert moment.payload["usage"]["unit"] == "events"


def test_the_accounts_own_limit_is_shown(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, totals = build(silent_from(FIRST_RECENT))
    (moment,), _ = evaluate(daily, plan(api_calls=5000), totals)
    assert_valid(moment.payload)
    assert moment.payload["usage"]["limit"] == 5000
    assert moment.payload["usage"]["ratio"] == 0.48


def test_the_period_follows_the_billing_anchor(
    evaluate: Callable[..., tuple[list[Moment], bool]],
) -> None:
    daily, _ = build(silent_from(FIRST_RECENT))
    anchored = AccountPlan("acct-1", "starter", ms("2025-06-10T00:00:00"), "active", {}, 0)
    (moment,), _ = evaluate(daily, anchored)
    assert_valid(moment.payload)
    assert moment.payload["period"] == {
        "start": "2026-03-10T00:00:00Z",
        "end": "2026-04-10T00:00:00Z",
    }
    assert moment.payload["triggered_at"] == "2026-03-16T00:00:00Z"


@given(
    rates=st.lists(st.integers(0, 1000), min_size=45, max_size=45),
    plan_id=st.sampled_from(["free", "starter", "pro"]),
)
def test_every_drop_event_is_valid_and_announced_once_per_episode(
    rates: list[int], plan_id: str
) -> None:
    daily = AccountDaily()
    first = DAY - 44
    ids: list[str] = []
    for offset, rate in enumerate(rates):
        day = first + offset
        if rate:
            daily.add("api_calls", day_start_ms(day) + DAY_MS // 2, D(rate))
        before = daily.episode("api_calls")
        moments, changed = evaluate_account(
            "acct-1",
            daily,
            plan(plan_id),
            AccountTotals(),
            day,
            rules=RULES,
            catalog=CATALOG,
            templates=TEMPLATES,
            now_ms=day_start_ms(day + 1) + GRACE_MS,
            arrived_ms=0,
        )
        after = daily.episode("api_calls")
        assert changed is (after != before)
        assert len(moments) <= 1
        if moments and moments[0].kind == "usage-recovered":  # see tests/unit/test_recovery.py
            assert before.open and not after.open
            assert_valid(moments[0].payload)
            assert moments[0].payload["drop"]["drop_event_id"] in ids
        elif moments:
            assert not before.open and after.open
            event = moments[0].payload
            assert_valid(event)
            assert event["triggered_at"] == to_rfc3339(day_start_ms(day + 1))
            assert event["event_id"] == drop_event_id(
                "acct-1", "api_calls", day_to_date(after.opened_day or 0)
            )
            ids.append(event["event_id"])
    assert len(ids) == len(set(ids))
