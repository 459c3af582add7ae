"""The plan catalog (contract 1.3): parsing, lookups, and an error naming plan and field."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import pytest

from domain.errors import CatalogError
from domain.plans.catalog import Catalog, load_catalog, parse_catalog

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "plans.toml"

HEADER = """
[defaults]
period = "month"
currency = "USD"
near_levels = [0.8]

[metrics]
api_calls = "API calls"
storage_gb = "GB of storage"
"""

# Field values as TOML text, so a case can put any TOML in a field, or drop it with None.
BASE_PLANS: list[dict[str, str]] = [
    {
        "id": '"free"',
        "name": '"Free"',
        "rank": "0",
        "price": "0",
        "limits": "{ api_calls = 1000, storage_gb = 1 }",
    },
    {
        "id": '"pro"',
        "name": '"Pro"',
        "rank": "1",
        "price": "19.0",
        "pausable": "true",
        "limits": "{ api_calls = 10000, storage_gb = 10 }",
    },
    {
        "id": '"max"',
        "name": '"Max"',
        "rank": "2",
        "price": "99.0",
        "limits": "{ api_calls = 100000 }",
        "near_levels": "[0.5, 0.9]",
    },
]


def catalog_text(
    header: str = HEADER, plan: int | None = None, fields: Mapping[str, str | None] | None = None
) -> str:
    """The test catalog as TOML, with ``fields`` of plan number ``plan`` replaced or dropped."""
    lines = [header]
    for index, base in enumerate(BASE_PLANS):
        entry: dict[str, str | None] = dict(base)
        if index == plan and fields:
            entry.update(fields)
        lines.append("[[plans]]")
        lines.extend(f"{key} = {value}" for key, value in entry.items() if value is not None)
        lines.append("")
    return "\n".join(lines)


def test_the_shipped_catalog_loads() -> None:
    catalog = load_catalog(SHIPPED)

    assert len(catalog.plans) >= 3
    ranks = [plan.rank for plan in catalog.plans]
    assert ranks == sorted(ranks)
    assert catalog.unit("api_calls") == "API calls"
    assert catalog.unit("storage_gb") == "GB of storage"
    assert any(plan.near_levels != catalog.near_levels for plan in catalog.plans)
    assert any(plan.pausable for plan in catalog.plans)
    assert catalog.plans[-1].limit("seats") is None  # the top plan has unlimited seats
    for plan in catalog.plans:
        assert plan.limit("api_calls") is not None


def test_parse_reads_numbers_exactly() -> None:
    catalog = parse_catalog(catalog_text())

    assert catalog.period == "month"
    assert catalog.currency == "USD"
    assert catalog.near_levels == (Decimal("0.8"),)
    assert str(catalog.near_levels[0]) == "0.8"
    pro = catalog.plan("pro")
    assert pro is not None
    assert pro.price == Decimal("19")
    assert pro.limits == {"api_calls": Decimal(10000), "storage_gb": Decimal(10)}
    assert pro.pausable is True
    assert pro.near_levels == (Decimal("0.8"),)
    assert pro.levels == (Decimal("0.8"), Decimal(1))


def test_plan_lookups_follow_rank_not_file_order() -> None:
    reordered = catalog_text().split("[[plans]]")
    text = "[[plans]]".join([reordered[0], reordered[3], reordered[1], reordered[2]])
    catalog = parse_catalog(text)
    free, pro, top = (catalog.plan(i) for i in ("free", "pro", "max"))
    assert free is not None and pro is not None and top is not None

    assert catalog.plans == (free, pro, top)
    assert catalog.plan_ids == ("free", "pro", "max")
    assert catalog.higher(free) == (pro, top)
    assert catalog.higher(top) == ()
    assert catalog.lower(top) == (free, pro)
    assert catalog.lower(free) == ()
    assert catalog.plan("gold") is None


def test_per_plan_near_levels_override_the_default() -> None:
    catalog = parse_catalog(catalog_text())
    top = catalog.plan("max")
    free = catalog.plan("free")
    assert top is not None and free is not None

    assert top.near_levels == (Decimal("0.5"), Decimal("0.9"))
    assert free.near_levels == catalog.near_levels


def test_defaults_and_optional_fields() -> None:
    catalog = parse_catalog(catalog_text(header=""))
    free = catalog.plan("free")
    top = catalog.plan("max")
    assert free is not None and top is not None

    assert (catalog.period, catalog.currency) == ("month", "USD")
    assert catalog.near_levels == (Decimal("0.8"),)
    assert free.pausable is False
    assert top.limit("storage_gb") is None
    assert catalog.unit("storage_gb") == "storage gb"


def test_a_limit_for_an_unlisted_metric_is_allowed() -> None:
    catalog = parse_catalog(
        catalog_text(plan=0, fields={"limits": "{ api_calls = 10, seats = 2 }"})
    )

    free = catalog.plan("free")
    assert free is not None
    assert free.limit("seats") == Decimal(2)
    assert catalog.unit("seats") == "seats"


def test_an_empty_near_levels_list_means_no_threshold_near() -> None:
    catalog = parse_catalog(catalog_text(plan=1, fields={"near_levels": "[]"}))

    pro = catalog.plan("pro")
    assert pro is not None
    assert pro.near_levels == ()
    assert pro.levels == (Decimal(1),)


@pytest.mark.parametrize("period", ["month", "week", "day"])
def test_every_period_length_is_accepted(period: str) -> None:
    catalog = parse_catalog(catalog_text(header=HEADER.replace('"month"', f'"{period}"')))

    assert catalog.period == period


PLAN_ERRORS: list[tuple[int, dict[str, str | None], str, str, str]] = [
    # (plan index, field overrides, text naming the plan, field, words of the accepted values)
    (1, {"id": None}, "plans[1]", "id", "needs an id"),
    (1, {"id": "5"}, "plans[1]", "id", "must be a string"),
    (1, {"id": '""'}, "plans[1]", "id", "must be a string"),
    (1, {"id": '"has space"'}, "plans[1]", "id", "[A-Za-z0-9_.-]"),
    (1, {"name": None}, "plan 'pro'", "name", "required"),
    (1, {"name": '""'}, "plan 'pro'", "name", "non-empty string"),
    (1, {"rank": None}, "plan 'pro'", "rank", "required"),
    (1, {"rank": '"1"'}, "plan 'pro'", "rank", "integer"),
    (1, {"rank": "true"}, "plan 'pro'", "rank", "integer"),
    (1, {"rank": "1.5"}, "plan 'pro'", "rank", "integer"),
    (1, {"price": None}, "plan 'pro'", "price", "required"),
    (1, {"price": "true"}, "plan 'pro'", "price", "number"),
    (1, {"price": '"19"'}, "plan 'pro'", "price", "number"),
    (1, {"price": "-1"}, "plan 'pro'", "price", ">= 0"),
    (1, {"price": "inf"}, "plan 'pro'", "price", "finite"),
    (1, {"price": "nan"}, "plan 'pro'", "price", "finite"),
    (1, {"pausable": '"yes"'}, "plan 'pro'", "pausable", "true or false"),
    (1, {"pausable": "1"}, "plan 'pro'", "pausable", "true or false"),
    (1, {"limits": None}, "plan 'pro'", "limits", "required"),
    (1, {"limits": "5"}, "plan 'pro'", "limits", "table of metric = number"),
    (1, {"limits": "{ api_calls = 0 }"}, "plan 'pro'", "limits.api_calls", "> 0"),
    (1, {"limits": "{ api_calls = -5 }"}, "plan 'pro'", "limits.api_calls", "> 0"),
    (1, {"limits": "{ api_calls = true }"}, "plan 'pro'", "limits.api_calls", "number"),
    (1, {"limits": '{ api_calls = "100" }'}, "plan 'pro'", "limits.api_calls", "number"),
    (1, {"limits": "{ api_calls = inf }"}, "plan 'pro'", "limits.api_calls", "finite"),
    (1, {"limits": '{ "API calls" = 5 }'}, "plan 'pro'", "limits.API calls", "[a-z0-9_.-]"),
    (1, {"near_levels": "[1.0]"}, "plan 'pro'", "near_levels", "(0, 1)"),
    (1, {"near_levels": "[0]"}, "plan 'pro'", "near_levels", "(0, 1)"),
    (1, {"near_levels": "[1.5]"}, "plan 'pro'", "near_levels", "(0, 1)"),
    (1, {"near_levels": "[-0.5]"}, "plan 'pro'", "near_levels", "(0, 1)"),
    (1, {"near_levels": "[0.8, 0.5]"}, "plan 'pro'", "near_levels", "strictly increasing"),
    (1, {"near_levels": "[0.8, 0.8]"}, "plan 'pro'", "near_levels", "strictly increasing"),
    (1, {"near_levels": '["0.8"]'}, "plan 'pro'", "near_levels", "fractions"),
    (1, {"near_levels": "[true]"}, "plan 'pro'", "near_levels", "fractions"),
    (1, {"near_levels": "0.8"}, "plan 'pro'", "near_levels", "fractions"),
    (1, {"pausible": "true"}, "plan 'pro'", "pausible", "accepted: 'id'"),
    (1, {"id": '"free"'}, "plan 'free'", "id", "unique"),
    (2, {"rank": "1"}, "plan 'max'", "rank", "also the rank of plan 'pro'"),
    (1, {"limits": "{ api_calls = 1e31 }"}, "plan 'pro'", "limits.api_calls", "exactly"),
    (1, {"limits": "{ api_calls = 1e-31 }"}, "plan 'pro'", "limits.api_calls", "exactly"),
    (1, {"price": "9007199254740993"}, "plan 'pro'", "price", "exactly"),
]


@pytest.mark.parametrize(
    ("plan", "fields", "names_plan", "names_field", "accepted"),
    PLAN_ERRORS,
    ids=[f"{c[2]}-{c[3]}-{next(iter(c[1].values()))}" for c in PLAN_ERRORS],
)
def test_plan_errors_name_file_plan_and_field(
    plan: int, fields: dict[str, str | None], names_plan: str, names_field: str, accepted: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(catalog_text(plan=plan, fields=fields), source="etc/plans.toml")

    message = str(caught.value)
    assert message.startswith("etc/plans.toml: ")
    assert names_plan in message
    assert names_field in message
    assert accepted in message


CATALOG_ERRORS = [
    # (TOML text, text naming the place at fault, words of the accepted values)
    ('[defaults]\nperiod = "year"\n', "[defaults] period", "'month', 'week', 'day'"),
    ("[defaults]\nperiod = 1\n", "[defaults] period", "'month', 'week', 'day'"),
    ('[defaults]\ncurrency = "dollars"\n', "[defaults] currency", "ISO 4217"),
    ("[defaults]\nnear_levels = [1.2]\n", "[defaults] near_levels", "(0, 1)"),
    ("[defaults]\nnear_levels = [0.9, 0.5]\n", "[defaults] near_levels", "strictly increasing"),
    ('[defaults]\nperoid = "week"\n', "[defaults]", "unknown key 'peroid'"),
    ("defaults = 5\n", "[defaults]", "must be a table"),
    ("[metrics]\napi_calls = 5\n", "[metrics] api_calls", "display unit"),
    ('[metrics]\n"API" = "calls"\n', "[metrics] 'API'", "[a-z0-9_.-]"),
    ("[plan]\nid = 1\n", "top level", "unknown table 'plan'"),
    ("plans = []\n", "plans", "at least one"),
    ("plans = 5\n", "plans", "[[plans]]"),
    ("plans = [1, 2]\n", "plans", "[[plans]]"),
    ("[[plans]\n", "not valid TOML", "line 1"),
    ('[defaults]\nperiod = "month\n', "not valid TOML", "line 2"),
]


@pytest.mark.parametrize(("text", "names", "accepted"), CATALOG_ERRORS)
def test_catalog_errors_name_file_and_field(text: str, names: str, accepted: str) -> None:
    if "plans" not in text:
        text += catalog_text(header="")
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="etc/plans.toml")

    message = str(caught.value)
    assert message.startswith("etc/plans.toml: ")
    assert names in message
    assert accepted in message


def test_a_catalog_without_plans_is_refused() -> None:
    with pytest.raises(CatalogError, match=r"^etc/plans\.toml: plans: missing"):
        parse_catalog(HEADER, source="etc/plans.toml")


def test_parse_catalog_names_the_default_source() -> None:
    with pytest.raises(CatalogError, match=r"^config/plans\.toml: "):
        parse_catalog("plans = []")


def test_load_catalog_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(CatalogError, match="MOMENTS_PLANS_FILE") as caught:
        load_catalog(missing)
    assert str(missing) in str(caught.value)


def test_load_catalog_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_bytes(b"\xff\xfe" + catalog_text().encode("utf-16-le"))

    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(path)


def test_load_catalog_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_text(catalog_text(), encoding="utf-8")

    assert load_catalog(path) == parse_catalog(catalog_text())
    assert isinstance(load_catalog(str(path)), Catalog)


def test_catalog_and_plans_are_read_only() -> None:
    catalog = parse_catalog(catalog_text())
    pro = catalog.plan("pro")
    assert pro is not None

    with pytest.raises(TypeError):
        pro.limits["api_calls"] = Decimal(1)  # type: ignore[index]
    with pytest.raises(AttributeError):
        pro.price = Decimal(1)  # type: ignore[misc]
    assert hash(pro) == hash(catalog.plan("pro"))
