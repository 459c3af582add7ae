"""Overage levels (contract 3.1): threshold-hit above 1.0, the overage block, money wording."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import datetime_to_ms, to_rfc3339
from domain.intake.accounts import AccountPlan
from domain.intake.batch import IntakeRules, IntakeState, RawRecord, run_intake
from domain.intake.usage import AccountTotals
from domain.moments.detection import detect_thresholds
from domain.plans.catalog import Catalog, parse_catalog
from domain.plans.periods import Period
from domain.rules.overage import is_over_level, overage_of, overage_suggestion
from domain.rules.projection import project
from domain.rules.suggestions import suggest_upgrade
from domain.rules.thresholds import AnnouncedLevels, Crossing, threshold_kind
from domain.wording.events import Crossed, Standing, Wording, threshold_event
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
over_levels = [1.5, 2.0]
[metrics]
api_calls = "API calls"
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
overage = { api_calls = 0.002 }
[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79
pausable = true
limits = { api_calls = 100000 }
overage = { api_calls = 0.001 }
over_levels = [1.25, 3.0]
[[plans]]
id = "unlimited"
name = "Unlimited"
rank = 3
price = 299
pausable = true
limits = { storage_gb = 100 }
[[plans]]
id = "max"
name = "Max"
rank = 4
price = 999
pausable = false
limits = { api_calls = 1000000 }
""",
    "test-plans.toml",
)
LEVELS = {  # the oracle's own copy of each plan's levels, as the contract writes them
    "free": ("0.8", "1.0", "1.5", "2.0"),
    "starter": ("0.8", "1.0", "1.5", "2.0"),
    "growth": ("0.8", "1.0", "1.25", "3.0"),
    "max": ("0.8", "1.0", "1.5", "2.0"),
}
LIMITS = {"free": 1000, "starter": 10000, "growth": 100000, "max": 1000000}
PRICES = {"starter": Fraction("0.002"), "growth": Fraction("0.001")}
RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS
)


def ms(text: str) -> int:
    return datetime_to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


NOW = ms("2026-03-15T12:00:00")
MARCH = Period.from_ms(ms("2026-03-01T00:00:00"), ms("2026-04-01T00:00:00"))


def detect(plan_id: str, quantities: list[int]) -> list[dict[str, Any]]:
    """The events of one batch of records of acct-1, through the real intake and detection."""
    raws = [
        RawRecord(
            b"acct-1",
            orjson.dumps(
                {
                    "record_id": f"r-{i}",
                    "account_id": "acct-1",
                    "metric": "api_calls",
                    "quantity": q,
                    "timestamp": NOW - HOUR_MS + i,
                }
            ),
            "usage-records",
            0,
            i,
            NOW - 7,
        )
        for i, q in enumerate(quantities)
    ]
    plan = AccountPlan("acct-1", plan_id, None, "active", {}, NOW - DAY_MS)
    accepted = run_intake(
        raws,
        IntakeState(
            plan_of=lambda _: plan, totals_of=lambda _: AccountTotals(), seen_at=lambda _: None
        ),
        now_ms=NOW,
        rules=RULES,
        catalog=CATALOG,
    ).accepted
    result = detect_thresholds(
        accepted,
        now_ms=NOW,
        prune_before_ms=NOW - HOUR_MS - 1,
        catalog=CATALOG,
        templates=TEMPLATES,
        announced_of=lambda _: AnnouncedLevels(),
    )
    return [m.payload for m in result.moments]


@given(level=st.decimals(min_value=D("0.01"), max_value=D(10), places=3))
def test_levels_from_the_whole_limit_up_are_hits(level: Decimal) -> None:
    assert threshold_kind(level) == ("threshold-hit" if level >= 1 else "threshold-near")
    assert is_over_level(level) is (level > 1)


def test_ninety_to_one_sixty_percent_is_one_hit_at_1_5_with_the_overage_block() -> None:
    [near, hit, again] = detect("starter", [9000, 7000, 500, 3500])
    assert (near["kind"], near["level"]) == ("threshold-near", 0.8)
    assert (hit["kind"], hit["level"], hit["crossed_levels"]) == ("threshold-hit", 1.5, [1.0, 1.5])
    assert hit["overage"]["units"] == 6000 and hit["overage"]["cost"] == 12
    assert hit["projection"]["limit_reached_at"] == to_rfc3339(NOW - HOUR_MS + 1)
    assert (again["level"], again["crossed_levels"]) == (2.0, [2.0])
    assert again["projection"]["limit_reached_at"] == to_rfc3339(NOW - HOUR_MS + 1)
    assert again["overage"]["units"] == 10000 and again["overage"]["cost"] == 20
    assert hit["message"]["title"] == "You're 60% past your 10,000 API calls"
    assert "$12 of overage so far" in hit["message"]["body"]


@given(
    plan_id=st.sampled_from(sorted(LEVELS)),
    steps=st.lists(st.integers(0, 60), min_size=1, max_size=10),
)
def test_every_level_is_announced_once_by_the_highest_crossed(
    plan_id: str, steps: list[int]
) -> None:
    limit = LIMITS[plan_id]
    quantities = [limit * s // 20 for s in steps]  # steps of 5% of the limit
    events = detect(plan_id, quantities)
    # Oracle: exact fractions, levels from their contract text.
    expected: list[tuple[str, str, list[str]]] = []
    announced: set[str] = set()
    total = Fraction(0)
    reached_at: int | None = None
    for i, quantity in enumerate(quantities):
        total += quantity
        if reached_at is None and total >= limit:
            reached_at = NOW - HOUR_MS + i
        new = [t for t in LEVELS[plan_id] if t not in announced and total >= Fraction(t) * limit]
        announced.update(new)
        if new:
            kind = "threshold-hit" if Fraction(new[-1]) >= 1 else "threshold-near"
            expected.append((kind, new[-1], new))
    assert [(e["kind"], e["level"], e["crossed_levels"]) for e in events] == [
        (kind, float(level), [float(t) for t in crossed]) for kind, level, crossed in expected
    ]
    for event, (kind, level, _) in zip(events, expected, strict=True):
        assert_valid(event)
        identity = f"{kind}|acct-1|api_calls|2026-03-01T00:00:00Z|{plan_id}|{level}"
        assert event["event_id"] == hashlib.sha256(identity.encode()).hexdigest()
        units = Fraction(event["usage"]["total"]) - limit
        if Fraction(level) > 1 and plan_id in PRICES:
            price = PRICES[plan_id]
            projected = Fraction(event["projection"]["period_total"]) - limit
            assert event["overage"] == {
                "units": units,
                "unit_price": float(price),
                "cost": pytest.approx(float(units * price)),
                "projected_cost": pytest.approx(float(max(projected, Fraction(0)) * price)),
            }
            assert "of overage" in event["suggestion"]["rationale"]
        else:
            assert "overage" not in event
        if kind == "threshold-hit":
            assert event["projection"]["limit_reached_at"] == to_rfc3339(reached_at or 0)


def _plan(plan_id: str) -> Any:
    found = CATALOG.plan(plan_id)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("projected", "want"),
    [
        # Growth: $60 more. 16,000 projected on Starter: $12 of overage, less than $60.
        (16_000, "Growth costs $60 more a month and would save about $12 of overage this "
         "month, so for now the overage costs less than the upgrade"),
        # 60,000: $100 of overage, more than $60.
        (60_000, "Growth costs $60 more a month and would save about $100 of overage this "
         "month, so it pays for itself"),
    ],
)  # fmt: skip
def test_the_rationale_weighs_the_upgrade_against_the_overage(projected: int, want: str) -> None:
    starter = _plan("starter")
    overage = overage_of(starter, "api_calls", D(15000), D(10000), D(projected))
    assert overage is not None
    base = suggest_upgrade(CATALOG, starter, "api_calls", D(projected))
    suggestion = overage_suggestion(CATALOG, starter, "api_calls", base, D(projected), overage)
    assert suggestion.rationale.startswith(want)
    assert (suggestion.action, suggestion.plan_id) == ("upgrade", "growth")


def test_the_overage_past_the_suggested_plan_counts_against_its_saving() -> None:
    # 250,000 on Growth: Max covers it; nothing on the way saves less than all of it.
    growth = _plan("growth")
    overage = overage_of(growth, "api_calls", D(130000), D(100000), D(250000))
    assert overage is not None and overage.projected_cost == 150
    base = suggest_upgrade(CATALOG, growth, "api_calls", D(250000))
    suggestion = overage_suggestion(CATALOG, growth, "api_calls", base, D(250000), overage)
    # Unlimited (cheaper than Max) covers anything: it saves all $150 for $220 more.
    assert suggestion.plan_id == "unlimited"
    assert "would save about $150 of overage" in suggestion.rationale
    assert "has no limit on API calls" in suggestion.rationale


def test_no_price_no_change_and_no_higher_plan_adds_the_cost() -> None:
    free = _plan("free")
    assert overage_of(free, "api_calls", D(2000), D(1000), D(3000)) is None
    starter = _plan("starter")
    overage = overage_of(starter, "api_calls", D(9000), D(10000), D(9500))
    assert overage is not None and (overage.units, overage.projected_cost) == (0, 0)
    top = _plan("max")
    base = suggest_upgrade(CATALOG, top, "api_calls", D(3_000_000))
    assert overage_suggestion(CATALOG, top, "api_calls", base, D(3_000_000), None) == base
    priced = overage_of(starter, "api_calls", D(20000), D(10000), D(30000))
    none = overage_suggestion(
        CATALOG, top, "api_calls", base, D(3_000_000), priced
    )  # a priced overage without a higher plan
    assert none.action == "none"
    assert none.rationale.endswith("At this pace that's about $40 of overage this month.")


# --- Every overage template, with every kind of plan -------------------------------------------


def _render(plan_id: str, total: int, limit: int, level: str, **limits: int) -> dict[str, Any]:
    plan = _plan(plan_id)
    crossing = Crossing(D(level), (D(level),))
    return threshold_event(
        Wording(TEMPLATES, CATALOG),
        Standing(
            account_id="acct-1",
            plan=plan,
            metric="api_calls",
            period=MARCH,
            total=D(total),
            limit=D(limit),
        ),
        Crossed(crossing=crossing, record_id="r-1", at_ms=NOW, limit_reached_at_ms=NOW - DAY_MS),
        NOW,
    )


@pytest.mark.parametrize(
    ("plan_id", "total", "limit", "level", "action"),
    [
        ("free", 1500, 1000, "1.5", "upgrade"),  # no lower plan, no overage price
        ("starter", 15000, 10000, "1.5", "upgrade"),  # priced, upgrade covers
        ("starter", 150000, 10000, "2.0", "upgrade"),  # suggested plan is unlimited
        ("growth", 125000, 100000, "1.25", "upgrade"),  # priced, own over levels
        ("max", 1500000, 1000000, "1.5", "none"),  # no higher plan, no overage price
    ],
)
def test_every_overage_template_reads_well(
    plan_id: str, total: int, limit: int, level: str, action: str
) -> None:
    event = _render(plan_id, max(total, limit * 3 // 2), limit, level)
    assert_valid(event)
    assert event["suggestion"]["action"] == action
    for text in (event["message"]["title"], event["message"]["body"]):
        assert text and "None" not in text and "{" not in text and "}" not in text
    assert "past your" in event["message"]["title"]
    if CATALOG.plan(plan_id) and _plan(plan_id).overage_price("api_calls") is not None:
        assert "of overage so far" in event["message"]["body"]
    else:
        assert "overage" not in event
        assert "Your allotment starts afresh on April 1, 2026." in event["message"]["body"]


def test_the_exact_limit_is_still_a_plain_hit() -> None:
    event = _render("starter", 10000, 10000, "1.0")
    assert "overage" not in event
    assert event["message"]["title"] == "You've reached your limit of 10,000 API calls"
    projection = project(D(10000), MARCH, NOW, D(10000), NOW - DAY_MS)
    assert event["projection"]["period_total"] == int(projection.period_total)
