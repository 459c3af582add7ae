"""The catalog's meters (contract 1.4): aggregations in ``[metrics]`` and ``[[meters]]``."""

from __future__ import annotations

import pytest

from domain.errors import CatalogError
from domain.plans.catalog import AGGREGATIONS, Catalog, parse_catalog

_PLAN = """
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19.0
limits = { api_calls = 10000, seats = 3 }
"""

_METRICS = """
[metrics]
api_calls = "API calls"
storage_gb = { unit = "GB of storage", aggregation = "max" }
seats = { unit = "seats", aggregation = "latest" }
active_users = { unit = "active users", aggregation = "unique_count", unique = "user_id" }
logins = { unit = "logins", aggregation = "count" }
"""


def _catalog(extra: str = "", metrics: str = _METRICS) -> Catalog:
    return parse_catalog(metrics + _PLAN + extra, "etc/plans.toml")


def _refusal(extra: str = "", metrics: str = _METRICS) -> str:
    with pytest.raises(CatalogError) as caught:
        _catalog(extra, metrics)
    return str(caught.value)


def test_each_metric_has_its_aggregation_and_unit() -> None:
    catalog = _catalog()
    assert [catalog.aggregation(m) for m in catalog.units] == [
        "sum",
        "max",
        "latest",
        "unique_count",
        "count",
    ]
    assert catalog.unit("storage_gb") == "GB of storage"
    assert catalog.unique_fields == {"active_users": ("user_id",)}
    # A metric the catalog does not declare is a sum (contract 1.4: the short form's meaning).
    assert catalog.aggregation("purchases") == "sum"
    assert set(AGGREGATIONS) == {"sum", "count", "max", "latest", "unique_count"}


def test_meters_map_event_types_to_metrics() -> None:
    catalog = _catalog(
        """
[[meters]]
event_type = "api-request"
metric = "api_calls"
[[meters]]
event_type = "llm-completion"
metric = "tokens"
value = "usage.tokens"
where = { model = "gpt-4o", "region.zone" = "eu" }
[[meters]]
event_type = "llm-completion"
metric = "api_calls"
"""
    )
    api, tokens, calls = catalog.meters
    assert (api.event_type, api.metric, api.value, dict(api.where)) == (
        "api-request",
        "api_calls",
        None,
        {},
    )
    assert tokens.value == ("usage", "tokens")
    assert dict(tokens.where) == {("model",): "gpt-4o", ("region", "zone"): "eu"}
    # One event type may feed several metrics, in catalog order.
    assert catalog.meters_for("llm-completion") == (tokens, calls)
    assert catalog.meters_for("unknown") == ()


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (
            '[metrics]\nx = { unit = "u", aggregation = "avg" }\n',
            "[metrics] 'x': aggregation: must be one of 'sum', 'count', 'max', 'latest', "
            "'unique_count', got string \"avg\"",
        ),
        (
            '[metrics]\nx = { unit = "u", aggregation = "unique_count" }\n',
            "[metrics] 'x': unique: missing; a unique_count metric names the field whose "
            'distinct values it counts, like unique = "user_id"',
        ),
        (
            '[metrics]\nx = { unit = "u", aggregation = "unique_count", unique = "a b" }\n',
            "[metrics] 'x': unique: must be a field name like \"user_id\" (dots for nesting), "
            'got string "a b"',
        ),
        (
            '[metrics]\nx = { aggregation = "max" }\n',
            "[metrics] 'x': unit: missing; a metric table needs a display unit like "
            'unit = "seats"',
        ),
        (
            '[metrics]\nx = { unit = "u", unique = "a" }\n',
            "[metrics] 'x': unique: only a unique_count metric names one; this metric is 'sum'",
        ),
        (
            '[metrics]\nx = { unit = "u", per = "day" }\n',
            "[metrics] 'x': unknown key 'per'; accepted: 'unit', 'aggregation', 'unique'",
        ),
    ],
)
def test_metric_tables_are_checked(metrics: str, message: str) -> None:
    assert _refusal(metrics=metrics) == f"etc/plans.toml: {message}"


@pytest.mark.parametrize("aggregation", ["max", "latest", "unique_count"])
def test_milestones_only_on_sum_and_count(aggregation: str) -> None:
    unique = ', unique = "user_id"' if aggregation == "unique_count" else ""
    metrics = f'[metrics]\nx = {{ unit = "u", aggregation = "{aggregation}"{unique} }}\n'
    refusal = _refusal('[[milestones]]\nmetric = "x"\nat = [10]\nreward = "r"\n', metrics)
    assert refusal == (
        f"etc/plans.toml: milestones[0]: metric: 'x' is a {aggregation} metric; milestones "
        "count a lifetime total, so only sum and count metrics have them"
    )


@pytest.mark.parametrize("aggregation", ["sum", "count"])
def test_milestones_on_additive_metrics(aggregation: str) -> None:
    metrics = f'[metrics]\nx = {{ unit = "u", aggregation = "{aggregation}" }}\n'
    catalog = _catalog('[[milestones]]\nmetric = "x"\nat = [10]\nreward = "r"\n', metrics)
    assert list(catalog.milestones) == ["x"]


@pytest.mark.parametrize(
    ("meters", "message"),
    [
        (
            'event_type = ""\nmetric = "x"',
            "meters[0]: event_type: must be a CloudEvents type like 'api-request' "
            '(1..256 chars), got string ""',
        ),
        ('event_type = "a"', "meters[0]: metric: missing; it is required"),
        ('event_type = "a"\nmetric = "X"', "meters[0]: metric: metric names must match"),
        (
            'event_type = "a"\nmetric = "x"\nvalue = "a..b"',
            'meters[0]: value: must be a field of data like "tokens" or "usage.tokens", '
            'got string "a..b"',
        ),
        (
            'event_type = "a"\nmetric = "x"\nwhere = { m = [1] }',
            "meters[0]: where.m: must be a string, number or boolean to compare with, got array",
        ),
        (
            'event_type = "a"\nmetric = "x"\n[[meters]]\nevent_type = "a"\nmetric = "x"',
            "meters[1]: metric: repeats an earlier meter (same event_type, metric and where): "
            "an event would count twice",
        ),
        (
            'event_type = "a"\nmetric = "x"\nper = 1',
            "meters[0]: unknown field 'per'; accepted: 'event_type', 'metric', 'value', 'where'",
        ),
    ],
)
def test_meters_are_checked(meters: str, message: str) -> None:
    assert _refusal(f"[[meters]]\n{meters}\n").startswith(f"etc/plans.toml: {message}")
