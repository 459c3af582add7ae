"""The plan catalog's messages, word for word: one line naming the file, the place (a plan by
its id, else by its position; a section; a milestone by its metric) and what is accepted.

Every branch of the schema in domain/plans/catalog.py, pinned as it read before the schema
became pydantic models; tests/unit/test_catalog.py checks the words that matter most.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.errors import CatalogError
from domain.plans.catalog import DEFAULT_LOCALE, parse_catalog
from tests.unit.test_catalog import catalog_text

# (TOML put before the plans, the message after "etc/plans.toml: ")
SECTION_CASES: list[tuple[str, str]] = [
    (
        "[defaults]\nover_levels = [0.5]\n",
        "[defaults] over_levels: 0.5 is not above 1: over levels are past the limit",
    ),
    (
        "[defaults]\nover_levels = [1.5, 1.2]\n",
        "[defaults] over_levels: must be strictly increasing, without repeats: 1.2 follows 1.5",
    ),
    (
        "[defaults]\nover_levels = 2\n",
        "[defaults] over_levels: must be a list of fractions above 1.0, increasing, "
        "like [1.5, 2.0], got integer 2",
    ),
    (
        '[defaults]\nover_levels = ["x"]\n',
        "[defaults] over_levels: must be a list of fractions above 1.0, increasing, "
        'like [1.5, 2.0], got string "x"',
    ),
    (
        "[defaults]\nover_levels = [1e31]\n",
        "[defaults] over_levels: over level: 1E+31 cannot be carried exactly in "
        "events: use 0 or a number between 1e-30 and 1e+30 with at most 15 significant "
        "digits",
    ),
    (
        "[defaults]\nunderuse_level = 1\n",
        "[defaults] underuse_level: must be a fraction between 0 and 1, got 1",
    ),
    (
        '[defaults]\nunderuse_level = "0.3"\n',
        '[defaults] underuse_level: must be a fraction between 0 and 1, got string "0.3"',
    ),
    (
        "[defaults]\nunderuse_level = 0\n",
        "[defaults] underuse_level: must be a fraction between 0 and 1, got 0",
    ),
    (
        "[defaults]\nnear_levels = [nan]\n",
        "[defaults] near_levels: NaN is outside (0, 1): the level 1.0 (threshold-hit) is implicit",
    ),
    (
        "[defaults]\nover_levels = [inf]\n",
        "[defaults] over_levels: Infinity is not above 1: over levels are past the limit",
    ),
    (
        "[defaults]\ncurrency = 5\n",
        "[defaults] currency: must be a three-letter ISO 4217 code like 'USD', got integer 5",
    ),
    (
        "[defaults]\nfoo = 1\nbar = 2\n",
        "[defaults]: unknown key 'bar', 'foo'; accepted: 'period', 'currency', "
        "'near_levels', 'over_levels', 'underuse_level'",
    ),
    (
        "metrics = 3\n",
        "[metrics]: must be a table, got integer 3",
    ),
    (
        '[metrics]\napi_calls = ""\n',
        '[metrics] api_calls: must be a non-empty display unit like "API calls", or a table like '
        '{ unit = "seats", aggregation = "latest" }, got string ""',
    ),
    (
        '[metrics]\napi_calls = "  "\n',
        '[metrics] api_calls: must be a non-empty display unit like "API calls", or a table like '
        '{ unit = "seats", aggregation = "latest" }, got string "  "',
    ),
    (
        "offers = 1\n",
        "[offers]: must be a table, got integer 1",
    ),
    (
        '[offers]\nmembers_added = ""\n',
        '[offers] members_added: must be a non-empty string, got string ""',
    ),
    (
        "[offers]\nmembers_added = 5\n",
        "[offers] members_added: must be a non-empty string, got integer 5",
    ),
    (
        '[birthday]\nshow_age = "yes"\n',
        '[birthday] show_age: must be true or false, got string "yes"',
    ),
    (
        "[birthday]\nage = true\n",
        "[birthday]: unknown key 'age'; accepted: 'show_age'",
    ),
    (
        '[offers]\nfoo = "x"\n',
        "[offers]: unknown key 'foo'; accepted: 'members_added', 'region_changed', 'birthday'",
    ),
    (
        "milestones = 5\n",
        "milestones: must be an array of tables, written as [[milestones]] sections",
    ),
    (
        "milestones = [1]\n",
        "milestones: must be an array of tables, written as [[milestones]] sections",
    ),
    (
        '[[milestones]]\nmetric = "purchases"\nat = [10]\n',
        "milestones[0]: reward: missing; it is required",
    ),
    (
        '[[milestones]]\nmetric = 5\nat = [10]\nreward="r"\n',
        "milestones[0]: metric: must be a metric name, got integer 5",
    ),
    (
        '[[milestones]]\nmetric = "Purch"\nat = [10]\nreward="r"\n',
        "milestones[0]: metric: metric names must match [a-z0-9_.-]{1,64}",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = []\nreward="r"\n',
        "milestones for 'p': at: must be a non-empty list of numbers, got array",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = 5\nreward="r"\n',
        "milestones for 'p': at: must be a non-empty list of numbers, got integer 5",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [0]\nreward="r"\n',
        "milestones for 'p': at: milestones must be above 0, got 0",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [5, 5]\nreward="r"\n',
        "milestones for 'p': at: must be strictly increasing, without repeats: 5 follows 5",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [true]\nreward="r"\n',
        "milestones for 'p': at: must be a number, got boolean true",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [1e31]\nreward="r"\n',
        "milestones for 'p': at: 1E+31 cannot be carried exactly in events: use 0 or a "
        "number between 1e-30 and 1e+30 with at most 15 significant digits",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [1]\nreward=""\n',
        "milestones for 'p': reward: must be a non-empty string, got string \"\"",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [1]\nreward="r"\nx=1\n',
        "milestones[0]: unknown field 'x'; accepted: 'metric', 'at', 'reward'",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [1]\nreward="r"\n[[milestones]]\nmetric = '
        '"p"\nat = [2]\nreward="r"\n',
        "milestones[1]: metric: 'p' has milestones already; merge them",
    ),
    (
        '[[milestones]]\nmetric = "p"\nat = [1.5, nan]\nreward="r"\n',
        "milestones for 'p': at: must be a finite number, got nan",
    ),
    (
        '[[milestones]]\nat = [1]\nreward="r"\nmetric="p"\ny=2\n',
        "milestones[0]: unknown field 'y'; accepted: 'metric', 'at', 'reward'",
    ),
    (
        "x = 1\ny = 2\n",
        "top level: unknown table 'x', 'y'; accepted: 'defaults', 'metrics', 'plans', "
        "'milestones', 'meters', 'offers', 'birthday', 'moments', 'locale'",
    ),
    (
        "defaults = [1]\n",
        "[defaults]: must be a table, got array",
    ),
    (
        "foo = 1989-01-01\n",
        "top level: unknown table 'foo'; accepted: 'defaults', 'metrics', 'plans', "
        "'milestones', 'meters', 'offers', 'birthday', 'moments', 'locale'",
    ),
    (
        "[defaults]\nperiod = 1989-01-01\n",
        "[defaults] period: must be one of 'month', 'week', 'day', got date/time",
    ),
]

# (fields of plan 'pro' replaced or dropped, the message after "etc/plans.toml: ")
PLAN_CASES: list[tuple[dict[str, Any], str]] = [
    (
        {"overage": "5"},
        "plan 'pro': overage: must be a table of metric = price per unit, like { "
        "api_calls = 0.002 }, got integer 5",
    ),
    (
        {"overage": "{ api_calls = 0 }"},
        "plan 'pro': overage.api_calls: must be a price > 0, got 0",
    ),
    (
        {"overage": "{ api_calls = -1 }"},
        "plan 'pro': overage.api_calls: must be a price > 0, got -1",
    ),
    (
        {"overage": "{ API = 1 }"},
        "plan 'pro': overage.API: metric names must match [a-z0-9_.-]{1,64}",
    ),
    (
        {"overage": "{ api_calls = true }"},
        "plan 'pro': overage.api_calls: must be a number, got boolean true",
    ),
    (
        {"overage": "{ api_calls = 1e31 }"},
        "plan 'pro': overage.api_calls: 1E+31 cannot be carried exactly in events: use "
        "0 or a number between 1e-30 and 1e+30 with at most 15 significant digits",
    ),
    (
        {"over_levels": "[1.0]"},
        "plan 'pro': over_levels: 1.0 is not above 1: over levels are past the limit",
    ),
    (
        {"over_levels": "[2, 1.5]"},
        "plan 'pro': over_levels: must be strictly increasing, without repeats: 1.5 follows 2",
    ),
    (
        {"name": "5"},
        "plan 'pro': name: must be a non-empty string, got integer 5",
    ),
    (
        {"name": '"  "'},
        "plan 'pro': name: must be a non-empty string, got string \"  \"",
    ),
    (
        {"price": "1e-31"},
        "plan 'pro': price: 1E-31 cannot be carried exactly in events: use 0 or a "
        "number between 1e-30 and 1e+30 with at most 15 significant digits",
    ),
    (
        {"name": None, "rank": None},
        "plan 'pro': name: missing; it is required",
    ),
    (
        {"name": "5", "rank": None},
        "plan 'pro': rank: missing; it is required",
    ),
    (
        {"pausible": "1", "zzz": "2"},
        "plan 'pro': unknown field 'pausible', 'zzz'; accepted: 'id', 'name', 'rank', "
        "'price', 'pausable', 'limits', 'near_levels', 'over_levels', 'overage'",
    ),
    (
        {"id": "5", "pausible": "1"},
        "plans[1]: id: must be a string matching [A-Za-z0-9_.-]{1,64}, got integer 5",
    ),
    (
        {"id": None, "name": "5"},
        'plans[1]: id: missing; every plan needs an id like "starter"',
    ),
    (
        {"name": "5", "pausible": "1"},
        "plan 'pro': unknown field 'pausible'; accepted: 'id', 'name', 'rank', "
        "'price', 'pausable', 'limits', 'near_levels', 'over_levels', 'overage'",
    ),
    (
        {"price": "-1", "limits": "5"},
        "plan 'pro': price: must be a finite number >= 0, got -1",
    ),
    (
        {"limits": "{ api_calls = nan }"},
        "plan 'pro': limits.api_calls: must be a finite number, got nan",
    ),
    (
        {"price": "1989-01-01"},
        "plan 'pro': price: must be a number, got date/time",
    ),
    (
        {"id": '"a|b"'},
        'plans[1]: id: must be a string matching [A-Za-z0-9_.-]{1,64}, got string "a|b"',
    ),
    (
        {"id": '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"'},
        "plans[1]: id: must be a string matching [A-Za-z0-9_.-]{1,64}, got string "
        '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"',
    ),
]


def refusal(text: str) -> str:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="etc/plans.toml")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("toml", "message"), SECTION_CASES)
def test_section_messages(toml: str, message: str) -> None:
    assert refusal(toml + catalog_text(header="")) == f"etc/plans.toml: {message}"


@pytest.mark.parametrize(("fields", "message"), PLAN_CASES)
def test_plan_messages(fields: dict[str, Any], message: str) -> None:
    assert refusal(catalog_text(plan=1, fields=fields)) == f"etc/plans.toml: {message}"


def test_optional_sections_are_read() -> None:
    catalog = parse_catalog(
        "[defaults]\nover_levels = [1.5, 3]\nunderuse_level = 0.25\n"
        '[[milestones]]\nmetric = "p"\nat = [1, 2.5]\nreward = "  r "\n'
        '[offers]\nmembers_added = "  hi  "\n' + catalog_text(header="")
    )
    assert catalog.over_levels == (Decimal("1.5"), Decimal(3))
    assert catalog.underuse_level == Decimal("0.25")
    assert catalog.milestones["p"].at == (Decimal(1), Decimal("2.5"))
    assert catalog.milestones["p"].reward == "r"
    assert (catalog.offers.members_added, catalog.offers.region_changed) == ("hi", None)
    pro = catalog.plan("pro")
    assert pro is not None and pro.over_levels == catalog.over_levels


# --- locale ------------------------------------------------------------------------------------


def test_the_locale_defaults_to_en_us() -> None:
    assert DEFAULT_LOCALE == "en_US"
    assert parse_catalog(catalog_text()).locale == "en_US"


@pytest.mark.parametrize("locale", ["en_US", "de", "fr_CH", "ja_JP"])
def test_a_locale_is_language_or_language_and_country(locale: str) -> None:
    assert parse_catalog(f'locale = "{locale}"\n' + catalog_text()).locale == locale


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ('""', 'string ""'),
        ('"english"', 'string "english"'),
        ('"en-US"', 'string "en-US"'),
        ('"EN_us"', 'string "EN_us"'),
        ('"en_US.UTF-8"', 'string "en_US.UTF-8"'),
        ("1", "integer 1"),
    ],
)
def test_a_bad_locale_is_named(value: str, got: str) -> None:
    assert refusal(f"locale = {value}\n" + catalog_text()) == (
        f'etc/plans.toml: locale: must be a locale like "en_US" or "de" (ll or ll_CC), got {got}'
    )
