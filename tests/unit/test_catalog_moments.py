"""The catalog's ``[[moments]]`` rules (contract 3.8): parsed into typed rules, or refused with
an error naming the rule (by id, else by position) and the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import CatalogError
from domain.plans.catalog import (
    MAX_WINDOW_DAYS,
    MOMENT_PLACEHOLDERS,
    Catalog,
    MomentRule,
    parse_catalog,
    window_days,
)

_HEAD = """
[metrics]
api_calls = "API calls"
support_calls = "support calls"
logins = { unit = "logins", aggregation = "count" }
storage_gb = { unit = "GB of storage", aggregation = "max" }
active_users = { unit = "active users", aggregation = "unique_count", unique = "user_id" }

[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19.0
limits = { api_calls = 10000 }

[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79.0
limits = { api_calls = 100000 }
"""

_SUPPORT_HEAVY = """
[[moments]]
id = "support-heavy"
metric = "support_calls"
window = "7d"
at_least = 3
plans = ["starter", "growth"]
cooldown = "30d"
title = "Need a hand? {value} support calls this week"
body = "You've called us {value} times in the last {window_days} days. \
{plan_name} customers can add priority support for {offer}."
action = "offer"
offer = "$10 a month, first month free"
"""


def _moment(**fields: object) -> str:
    """One ``[[moments]]`` table: a valid at_least rule with ``fields`` replaced (``None``
    leaves a field out)."""
    base: dict[str, object] = {
        "id": "r",
        "metric": "api_calls",
        "window": "7d",
        "at_least": 5,
        "title": "t {value}",
        "body": "b {threshold} {unit}",
        "action": "none",
    }
    base.update(fields)
    lines = ["[[moments]]"]
    for key, value in base.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, str):
            text = '"' + value.replace('"', '\\"') + '"'
        elif isinstance(value, list):
            text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        else:
            text = str(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def _catalog(*moments: str) -> Catalog:
    return parse_catalog(_HEAD + "".join(moments), "etc/plans.toml")


def _refusal(*moments: str) -> str:
    with pytest.raises(CatalogError) as caught:
        _catalog(*moments)
    return str(caught.value)


def test_a_rule_becomes_a_typed_moment_rule() -> None:
    catalog = _catalog(_SUPPORT_HEAVY)
    (rule,) = catalog.moments
    assert rule == MomentRule(
        id="support-heavy",
        metric="support_calls",
        window="7d",
        window_days=7,
        at_least=True,
        amount=Decimal(3),
        of_limit=False,
        plans=frozenset({"starter", "growth"}),
        cooldown_days=30,
        title="Need a hand? {value} support calls this week",
        body=(
            "You've called us {value} times in the last {window_days} days. {plan_name} "
            "customers can add priority support for {offer}."
        ),
        action="offer",
        offer="$10 a month, first month free",
    )
    assert rule.kind == "custom.support-heavy"
    assert rule.applies_to("starter") and not rule.applies_to("scale")
    assert catalog.moments_for("support_calls") == (rule,)
    assert catalog.moments_for("api_calls") == ()


def test_a_catalog_without_moments_has_none() -> None:
    catalog = _catalog()
    assert catalog.moments == ()
    assert catalog.moments_for("api_calls") == ()


def test_defaults_cooldown_is_the_window_and_plans_all() -> None:
    rolling, period, quiet = _catalog(
        _moment(id="a", window="5d"),
        _moment(id="b", window="period", at_least=0.5, of_limit=True),
        _moment(id="c", window="3d", at_least=None, at_most=2.5, action="pause"),
    ).moments
    assert (rolling.cooldown_days, rolling.plans, rolling.offer) == (5, None, None)
    assert rolling.applies_to("anything")
    # A "period" window fires once per period: no cooldown of its own unless given.
    assert (period.window_days, period.cooldown_days) == (None, None)
    assert (period.amount, period.of_limit, period.at_least) == (Decimal("0.5"), True, True)
    assert (quiet.at_least, quiet.amount, quiet.cooldown_days) == (False, Decimal("2.5"), 3)
    # at_most = 0: nothing at all in the window.
    (silent,) = _catalog(_moment(at_least=None, at_most=0)).moments
    assert (silent.at_least, silent.amount) == (False, Decimal(0))


def test_rules_are_grouped_by_metric_in_catalog_order() -> None:
    catalog = _catalog(
        _moment(id="a"),
        _moment(id="b", metric="logins"),
        _moment(id="c"),
    )
    assert [r.id for r in catalog.moments_for("api_calls")] == ["a", "c"]
    assert [r.id for r in catalog.moments_for("logins")] == ["b"]


@pytest.mark.parametrize(
    ("window", "days"), [("1d", 1), ("7d", 7), (f"{MAX_WINDOW_DAYS}d", 35), ("period", None)]
)
def test_windows(window: str, days: int | None) -> None:
    (rule,) = _catalog(_moment(window=window)).moments
    assert (rule.window, rule.window_days) == (window, days)
    assert window_days(window) == days


def test_every_placeholder_is_accepted() -> None:
    text = " ".join(f"{{{p}}}" for p in sorted(MOMENT_PLACEHOLDERS))
    (rule,) = _catalog(_moment(title=text, body=text, offer="o")).moments
    assert rule.title == text


_PLACE = "etc/plans.toml: moment 'r'"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"window": "36d"},
            f'{_PLACE}: window: must be "period" or "<N>d" with N from 1 to 35, like "7d", '
            'got string "36d"',
        ),
        ({"window": "0d"}, f'{_PLACE}: window: must be "period" or "<N>d"'),
        ({"window": "7"}, f'{_PLACE}: window: must be "period" or "<N>d"'),
        ({"window": 7}, f'{_PLACE}: window: must be "period" or "<N>d"'),
        ({"window": "01d"}, f'{_PLACE}: window: must be "period" or "<N>d"'),
        (
            {"at_least": None},
            f"{_PLACE}: at_least: give exactly one of at_least (fires when the window's value "
            "reaches it) and at_most (fires at a day close when it is at or below it)",
        ),
        ({"at_most": 3}, f"{_PLACE}: at_most: give exactly one of at_least"),
        ({"at_least": 0}, f"{_PLACE}: at_least: must be a number > 0, got 0"),
        ({"at_least": -1.5}, f"{_PLACE}: at_least: must be a number > 0, got -1.5"),
        (
            {"at_least": None, "at_most": -1},
            f"{_PLACE}: at_most: must be a number >= 0, got -1",
        ),
        ({"at_least": "3"}, f'{_PLACE}: at_least: must be a number, got string "3"'),
        ({"at_least": True}, f"{_PLACE}: at_least: must be a number, got boolean true"),
        (
            {"at_least": 1.5, "of_limit": True},
            f"{_PLACE}: at_least: with of_limit, must be a fraction of the plan's limit, above 0 "
            "and at most 1, got 1.5",
        ),
        ({"of_limit": "yes"}, f"{_PLACE}: of_limit: must be true or false"),
        (
            {"at_least": None, "at_most": 1, "window": "period"},
            f"{_PLACE}: window: at_most rules judge complete UTC days; use a rolling window",
        ),
        ({"plans": ["pro"]}, f"{_PLACE}: plans: 'pro' is not a plan of the catalog; plans: "),
        ({"plans": []}, f"{_PLACE}: plans: must be a non-empty list of plan ids"),
        ({"plans": ["starter", "starter"]}, f"{_PLACE}: plans: names 'starter' twice"),
        ({"cooldown": "0d"}, f'{_PLACE}: cooldown: must be whole days "<N>d" with N >= 1'),
        ({"cooldown": "12h"}, f'{_PLACE}: cooldown: must be whole days "<N>d"'),
        (
            {"title": "{value} {price}"},
            f"{_PLACE}: title: unknown placeholder {{price}}; known here: {{limit}}, {{offer}}",
        ),
        ({"body": "{value:.2f}"}, f"{_PLACE}: body: placeholder {{value}} has a format"),
        ({"body": "{value"}, f"{_PLACE}: body: "),
        ({"body": "  "}, f"{_PLACE}: body: must be a non-empty string"),
        ({"title": None}, f"{_PLACE}: title: missing; it is required"),
        ({"action": "upsell"}, f"{_PLACE}: action: must be one of 'upgrade', 'downgrade'"),
        ({"action": "offer"}, f'{_PLACE}: offer: missing; action = "offer" needs the offer'),
        ({"action": "reward"}, f'{_PLACE}: offer: missing; action = "reward" needs the offer'),
        ({"body": "{offer}"}, f"{_PLACE}: offer: missing; {{offer}} needs the offer's text"),
        (
            {"metric": "support"},
            f"{_PLACE}: metric: 'support' is not in [metrics]; a rule watches a metric declared "
            "there",
        ),
        ({"metric": "API"}, f"{_PLACE}: metric: metric names must match"),
        (
            {"metric": "active_users", "window": "7d"},
            f"{_PLACE}: window: 'active_users' is a unique_count metric: its window must be "
            '"period" or "1d"',
        ),
        ({"colour": "red"}, f"{_PLACE}: unknown field 'colour'; accepted: 'id', 'metric'"),
    ],
)
def test_rule_errors_name_the_rule_and_field(fields: dict[str, object], message: str) -> None:
    assert _refusal(_moment(**fields)).startswith(message)


def test_a_rule_without_a_valid_id_is_named_by_position() -> None:
    assert _refusal(_moment(id="a"), _moment(id="Bad_Id")).startswith(
        "etc/plans.toml: moments[1]: id: must be a string matching [a-z0-9-]{1,40}, "
        'got string "Bad_Id"'
    )
    assert _refusal(_moment(id="x" * 41)).startswith("etc/plans.toml: moments[0]: id: must be")
    assert _refusal(_moment(id=None)) == (
        'etc/plans.toml: moments[0]: id: missing; every rule needs an id like "support-heavy"'
    )


def test_rule_ids_are_unique() -> None:
    assert _refusal(_moment(id="a"), _moment(id="a")) == (
        "etc/plans.toml: moment 'a': id: appears twice; rule ids must be unique"
    )


def test_moments_must_be_an_array_of_tables() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog("moments = 3\n" + _HEAD, "etc/plans.toml")
    assert str(caught.value).startswith(
        "etc/plans.toml: moments: must be an array of tables, written as [[moments]] sections"
    )


@pytest.mark.parametrize("window", ["1d", "period"])
def test_unique_count_rules_take_period_or_one_day(window: str) -> None:
    (rule,) = _catalog(_moment(metric="active_users", window=window)).moments
    assert rule.window == window


def test_rules_may_watch_any_aggregation() -> None:
    rules = _catalog(
        _moment(id="a", metric="logins"),
        _moment(id="b", metric="storage_gb", at_least=None, at_most=1),
    ).moments
    assert [r.metric for r in rules] == ["logins", "storage_gb"]
