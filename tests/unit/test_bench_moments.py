"""``make bench --moments N`` (issue 19 item 5): the generated rules are a valid catalog with
the mix the measure needs, and sized to fire sometimes, never on every record."""

from __future__ import annotations

import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from domain.plans.catalog import parse_catalog

SCRIPTS = Path(__file__).parents[2] / "scripts"
SHIPPED = Path(__file__).parents[2] / "config" / "plans.toml"


@pytest.fixture(scope="module")
def rules() -> ModuleType:
    """scripts/benchmark/rules.py."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    from benchmark import rules

    return rules


def test_fifty_rules_load_with_the_shipped_catalog_and_nothing_else(rules: ModuleType) -> None:
    catalog = parse_catalog(rules.catalog_with_rules(50))
    assert len(catalog.moments) == 50
    assert all(rule.id.startswith("bench-") for rule in catalog.moments)  # the shipped ones out
    shipped = parse_catalog(SHIPPED.read_text(encoding="utf-8"))
    assert catalog.plans == shipped.plans
    assert catalog.units == shipped.units
    assert catalog.meters == shipped.meters


def test_zero_rules_is_the_shipped_catalog_without_its_rules(rules: ModuleType) -> None:
    catalog = parse_catalog(rules.catalog_with_rules(0))
    assert catalog.moments == ()
    assert catalog.plans == parse_catalog(SHIPPED.read_text(encoding="utf-8")).plans


def test_the_mix(rules: ModuleType) -> None:
    catalog = parse_catalog(rules.catalog_with_rules(50))
    moments = catalog.moments
    bench_metrics = set(rules.METRIC_SHARES)
    assert {rule.metric for rule in moments} == bench_metrics
    at_least = [rule for rule in moments if rule.at_least]
    at_most = [rule for rule in moments if not rule.at_least]
    assert 2 <= len(at_most) <= 6  # a few
    assert Counter(rule.window for rule in at_least).keys() == {"period", "7d", "1d"}
    assert all(rule.window != "period" for rule in at_most)
    assert 10 <= sum(rule.of_limit for rule in at_least) <= 40
    assert 10 <= sum(rule.plans is not None for rule in moments) < 50
    assert {rule.action for rule in moments} >= {"none", "offer", "upgrade"}
    assert any(rule.cooldown_days == 30 for rule in moments)


def test_thresholds_fire_for_some_accounts_never_all(rules: ModuleType) -> None:
    # The workload gives an account 20-110 % of each limit over the backlog.
    for rule in rules.generated_rules(50):
        amount = rule.get("at_least")
        if amount is None:
            continue
        if rule.get("of_limit"):
            fractions = [amount]
        else:
            fractions = [
                amount / Decimal(str(rules.LIMITS[p][rule["metric"]])) for p in rule["plans"]
            ]
        for fraction in fractions:
            assert Decimal("0.2") < fraction <= Decimal("1.1"), rule


def test_deterministic_for_a_seed(rules: ModuleType) -> None:
    assert rules.generated_rules(50, 7) == rules.generated_rules(50, 7)
    assert rules.generated_rules(50, 7) != rules.generated_rules(50, 8)


def test_without_moments_drops_each_rule_table_to_the_next_header(rules: ModuleType) -> None:
    text = (
        '[metrics]\na = "a"\n\n[[moments]]\nid = "x"\nplans = [\n  "p",\n]\n\n'
        '[[plans]]\nid = "p"\n[[moments]]\nid = "y"\n'
    )
    assert rules.without_moments(text) == '[metrics]\na = "a"\n\n[[plans]]\nid = "p"\n'


def test_toml_values(rules: ModuleType) -> None:
    text = rules.rules_toml(
        [
            {
                "id": "r",
                "at_least": Decimal("0.5"),
                "of_limit": True,
                "plans": ["a", "b"],
                "title": 'say "hi"',
            }
        ]
    )
    assert (
        text == '[[moments]]\nid = "r"\nat_least = 0.5\nof_limit = true\nplans = ["a", "b"]\n'
        'title = "say \\"hi\\""\n'
    )


def test_silent_rules_are_the_same_rules_out_of_reach(rules: ModuleType) -> None:
    loud = rules.generated_rules(50)
    silent = rules.generated_rules(50, silent=True)
    assert [r["id"] for r in silent] == [r["id"] for r in loud]
    for quiet, rule in zip(silent, loud, strict=True):
        if "at_least" in rule:
            assert quiet["at_least"] == rules.SILENT_THRESHOLD and "of_limit" not in quiet
            assert {k: v for k, v in quiet.items() if k not in ("at_least", "of_limit")} == {
                k: v for k, v in rule.items() if k not in ("at_least", "of_limit")
            }
        else:
            assert quiet == rule
    parsed = parse_catalog(rules.catalog_with_rules(50, silent=True))
    assert len(parsed.moments) == 50
