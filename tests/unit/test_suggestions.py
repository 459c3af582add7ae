"""Plan suggestions of threshold moments (contract 3.1) and sudden drops (contract 3.2)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.plans.catalog import Catalog, Plan, parse_catalog
from domain.rules.suggestions import Suggestion, covers, suggest_for_drop, suggest_upgrade

D = Decimal

CATALOG_TOML = """
[defaults]
period = "month"
currency = "USD"

[metrics]
api_calls = "API calls"
seats = "seats"

[[plans]]
id = "free"
name = "Free"
rank = 0
price = 0
limits = { api_calls = 1_000, seats = 1 }

[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19.0
pausable = true
limits = { api_calls = 10_000, seats = 3 }

[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79.0
pausable = true
limits = { api_calls = 100_000, seats = 10 }

[[plans]]
id = "scale"
name = "Scale"
rank = 3
price = 299.0
pausable = true
limits = { api_calls = 1_000_000, seats = 50 }

[[plans]]
id = "enterprise"
name = "Enterprise"
rank = 4
price = 1499.0
limits = { api_calls = 10_000_000 }
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG_TOML, "test catalog")


def plan(catalog: Catalog, plan_id: str) -> Plan:
    found = catalog.plan(plan_id)
    assert found is not None
    return found


def test_covers(catalog: Catalog) -> None:
    starter = plan(catalog, "starter")
    assert covers(starter, "api_calls", D(10_000))
    assert not covers(starter, "api_calls", D("10000.01"))
    assert covers(plan(catalog, "enterprise"), "seats", D(10**12))  # no limit: covers anything
    assert covers(starter, "storage_gb", D(10**12))


@pytest.mark.parametrize(
    ("current", "projected", "expected"),
    [
        ("starter", 12_000, "growth"),
        ("starter", 100_000, "growth"),  # a limit equal to the projection covers it
        ("starter", 100_001, "scale"),
        ("free", 500, "starter"),  # projected within the limit: still the next rung up
        ("starter", 20_000_000, "enterprise"),  # nothing covers it: the highest plan
    ],
)
def test_upgrade_to_the_cheapest_covering_plan(
    catalog: Catalog, current: str, projected: int, expected: str
) -> None:
    suggestion = suggest_upgrade(catalog, plan(catalog, current), "api_calls", D(projected))
    target = plan(catalog, expected)
    assert suggestion.action == "upgrade"
    assert (suggestion.plan_id, suggestion.plan_name, suggestion.price) == (
        target.id,
        target.name,
        target.price,
    )
    assert suggestion.price_delta == target.price - plan(catalog, current).price


def test_upgrade_rationale_has_real_numbers(catalog: Catalog) -> None:
    suggestion = suggest_upgrade(catalog, plan(catalog, "starter"), "api_calls", D(13_780))
    assert suggestion == Suggestion(
        "upgrade",
        "growth",
        "Growth",
        D("79.0"),
        D(60),
        "At this pace you'll use about 13,780 API calls this month; Growth includes 100,000 "
        "for $79 a month, $60 more than Starter.",
    )
    highest = suggest_upgrade(catalog, plan(catalog, "starter"), "api_calls", D(20_000_000))
    assert "more than any plan includes" in highest.rationale
    assert "20,000,000" in highest.rationale


def test_a_plan_without_a_limit_covers_anything(catalog: Catalog) -> None:
    suggestion = suggest_upgrade(catalog, plan(catalog, "scale"), "seats", D(400))
    assert (suggestion.action, suggestion.plan_id) == ("upgrade", "enterprise")
    assert "no limit on seats" in suggestion.rationale


def test_no_higher_plan_suggests_nothing(catalog: Catalog) -> None:
    suggestion = suggest_upgrade(catalog, plan(catalog, "enterprise"), "api_calls", D(12_000_000))
    assert suggestion.action == "none"
    assert (suggestion.plan_id, suggestion.plan_name) == (None, None)
    assert (suggestion.price, suggestion.price_delta) == (None, None)
    assert "Enterprise is already the largest plan" in suggestion.rationale
    assert "12,000,000" in suggestion.rationale


def test_account_override_skips_plans_that_give_no_more(catalog: Catalog) -> None:
    starter = plan(catalog, "starter")
    # Starter with 200,000 API calls of its own: Growth's 100,000 is no way out.
    suggestion = suggest_upgrade(catalog, starter, "api_calls", D(250_000), D(200_000))
    assert suggestion.plan_id == "scale"
    stuck = suggest_upgrade(catalog, starter, "api_calls", D(60_000_000), D(50_000_000))
    assert stuck.action == "none"
    assert "50,000,000" in stuck.rationale


def test_cheapest_covering_plan_wins_over_the_next_rank() -> None:
    catalog = parse_catalog(
        """
        [[plans]]
        id = "a"
        name = "A"
        rank = 1
        price = 10
        limits = { api_calls = 100 }
        [[plans]]
        id = "b"
        name = "B"
        rank = 2
        price = 50
        limits = { api_calls = 1000 }
        [[plans]]
        id = "c"
        name = "C"
        rank = 3
        price = 40
        limits = { api_calls = 1000 }
        """
    )
    current = catalog.plans[0]
    assert suggest_upgrade(catalog, current, "api_calls", D(500)).plan_id == "c"


def test_drop_to_zero_on_a_pausable_plan_suggests_a_pause(catalog: Catalog) -> None:
    suggestion = suggest_for_drop(
        catalog, plan(catalog, "growth"), "api_calls", D(0), D(30_000), recent_days=3
    )
    assert suggestion == Suggestion(
        "pause",
        None,
        None,
        None,
        None,
        "No API calls in the last 3 days; your Growth plan ($79 a month) can be paused until "
        "you need it again.",
    )


def test_drop_downgrades_to_the_cheapest_plan_covering_the_new_pace(catalog: Catalog) -> None:
    growth = plan(catalog, "growth")
    suggestion = suggest_for_drop(catalog, growth, "api_calls", D(40), D(5_000))
    assert (suggestion.action, suggestion.plan_id, suggestion.price_delta) == (
        "downgrade",
        "starter",
        D(-60),
    )
    assert "about 5,000 API calls" in suggestion.rationale
    assert "$60 less than Growth" in suggestion.rationale
    assert suggest_for_drop(catalog, growth, "api_calls", D(4), D(900)).plan_id == "free"


def test_silent_account_that_cannot_pause_is_offered_a_downgrade(catalog: Catalog) -> None:
    enterprise = plan(catalog, "enterprise")
    suggestion = suggest_for_drop(catalog, enterprise, "api_calls", D(0), D(500))
    assert (suggestion.action, suggestion.plan_id) == ("downgrade", "free")
    assert suggestion.price_delta == D(-1499)


def test_drop_with_no_smaller_plan_that_fits_checks_in(catalog: Catalog) -> None:
    growth = plan(catalog, "growth")
    suggestion = suggest_for_drop(catalog, growth, "api_calls", D(40), D(30_000))
    assert suggestion.action == "none"
    assert suggestion.plan_id is None
    assert "30,000" in suggestion.rationale
    assert "check-in" in suggestion.rationale
    lowest = suggest_for_drop(catalog, plan(catalog, "free"), "api_calls", D(0), D(10))
    assert lowest.action == "none"
    assert "Free is already the most affordable plan" in lowest.rationale


def test_smaller_plan_without_a_limit_for_the_metric_covers_the_drop() -> None:
    catalog = parse_catalog(
        """
        [[plans]]
        id = "basic"
        name = "Basic"
        rank = 1
        price = 5
        limits = { seats = 2 }
        [[plans]]
        id = "pro"
        name = "Pro"
        rank = 2
        price = 50
        limits = { api_calls = 1000 }
        """
    )
    suggestion = suggest_for_drop(catalog, catalog.plans[1], "api_calls", D(10), D(10**9))
    assert (suggestion.action, suggestion.plan_id, suggestion.price_delta) == (
        "downgrade",
        "basic",
        D(-45),
    )
