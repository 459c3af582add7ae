"""Usage records of metrics that are not sums (contract 1.4): count and unique_count."""

from __future__ import annotations

import copy
import dataclasses
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidUsageRecord
from domain.intake.records import SUMS, Metering, UsageRecord, parse_usage
from domain.plans.catalog import Aggregation, Catalog

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SKEW_MS = 300_000
TIMESTAMP_MS = NOW_MS - 3_600_000


def catalog(**aggregations: Aggregation) -> Catalog:
    unique = {m: ("user", "id") if m == "nested_users" else ("user_id",) for m in aggregations}
    return Catalog(
        "month",
        "USD",
        (Decimal("0.8"),),
        {},
        (),
        aggregations=aggregations,
        unique_fields={m: unique[m] for m, a in aggregations.items() if a == "unique_count"},
    )


METERING = Metering.of(
    catalog(
        logins="count",
        active_users="unique_count",
        nested_users="unique_count",
        storage_gb="max",
        seats="latest",
        api_calls="sum",
    )
)


def usage(metric: str, **fields: Any) -> bytes:
    record = {
        "record_id": "r-1",
        "account_id": "acct-1",
        "metric": metric,
        "timestamp": "2025-12-31T23:00:00Z",
        **fields,
    }
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


def parse(raw: bytes) -> UsageRecord:
    return parse_usage(raw, NOW_MS, SKEW_MS, METERING)


def test_only_count_and_unique_count_metrics_parse_differently() -> None:
    assert METERING.counted == {
        "logins": (),
        "active_users": ("user_id",),
        "nested_users": ("user", "id"),
    }
    assert SUMS.counted == {}


def test_the_metering_is_made_once_per_catalog() -> None:
    shipped = catalog(logins="count")
    assert Metering.of(shipped) is Metering.of(shipped)
    assert Metering.of(catalog(logins="count")) is not Metering.of(shipped)


@pytest.mark.parametrize("metric", ["api_calls", "storage_gb", "seats", "undeclared"])
def test_sum_max_and_latest_records_parse_as_today(metric: str) -> None:
    raw = usage(metric, quantity=2.5, user_id="u-1")
    assert parse(raw) == parse_usage(raw, NOW_MS, SKEW_MS, SUMS)
    assert parse(raw) == UsageRecord("r-1", "acct-1", metric, Decimal("2.5"), TIMESTAMP_MS)
    assert parse(raw).unique is None
    with pytest.raises(InvalidUsageRecord, match=r"^quantity: missing$"):
        parse(usage(metric))


@pytest.mark.parametrize("quantity", [..., None, -3, "lots", 5, 0.5, [1]])
def test_a_count_record_counts_one_whatever_its_quantity(quantity: Any) -> None:
    record = parse(usage("logins", quantity=quantity))
    assert record == UsageRecord("r-1", "acct-1", "logins", Decimal(1), TIMESTAMP_MS)
    assert record.unique is None


@pytest.mark.parametrize(
    ("fields", "unique"),
    [
        ({"user_id": "u-1"}, '"u-1"'),
        ({"user_id": 42}, "42"),
        ({"user_id": "42"}, '"42"'),
        ({"user_id": 42.0}, "42"),  # numbers are keyed by value
        ({"user_id": -0.0}, "0"),
        ({"user_id": 0.25}, "0.25"),
        ({"user_id": True}, "true"),
        ({"user_id": False}, "false"),
        ({"user_id": "x" * 256}, '"' + "x" * 256 + '"'),
        ({"user_id": 'say "hi"\n'}, '"say \\"hi\\"\\n"'),
        ({"attributes": {"user_id": "u-2"}}, '"u-2"'),
        # The top level wins over attributes.
        ({"user_id": "top", "attributes": {"user_id": "attr"}}, '"top"'),
        ({"user_id": "u-1", "quantity": "ignored"}, '"u-1"'),
    ],
)
def test_a_unique_count_record_carries_its_value_as_json_text(
    fields: dict[str, Any], unique: str
) -> None:
    record = parse(usage("active_users", **fields))
    assert record.unique == unique
    assert record.quantity == Decimal(1)
    assert record.metric == "active_users"


@pytest.mark.parametrize(
    "fields",
    [
        {"user": {"id": "u-9"}},
        {"attributes": {"user": {"id": "u-9"}}},
        {"user": {"name": "no id"}, "attributes": {"user": {"id": "u-9"}}},
        {"user": "flat", "attributes": {"user": {"id": "u-9"}}},
    ],
)
def test_a_nested_unique_field_is_found_by_its_dotted_path(fields: dict[str, Any]) -> None:
    assert parse(usage("nested_users", **fields)).unique == '"u-9"'


SUFFIX = "; the unique_count metric active_users counts its distinct values"
RULE = "must be a string of 1..256 characters, an integer, a finite number or a boolean"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "user_id: missing" + SUFFIX),
        ({"attributes": {"other": 1}}, "user_id: missing" + SUFFIX),
        ({"attributes": "not an object"}, "user_id: missing" + SUFFIX),
        ({"user_id": None}, f"user_id: {RULE}, got null" + SUFFIX),
        ({"user_id": ""}, f'user_id: {RULE}, got ""' + SUFFIX),
        ({"user_id": "x" * 257}, f'user_id: {RULE}, got "{"x" * 56}...' + SUFFIX),
        ({"user_id": {"id": 1}}, f'user_id: {RULE}, got {{"id":1}}' + SUFFIX),
        ({"user_id": [1, 2]}, f"user_id: {RULE}, got [1,2]" + SUFFIX),
        ({"attributes": {"user_id": None}}, f"attributes.user_id: {RULE}, got null" + SUFFIX),
        ({"attributes": {"user_id": []}}, f"attributes.user_id: {RULE}, got []" + SUFFIX),
        (
            {"user_id": 2.0**60},
            "user_id: 1.152921504606847e+18 is too large to tell apart from its neighbours; "
            "send an id this large as a string" + SUFFIX,
        ),
    ],
)
def test_a_unique_count_record_without_a_usable_value_is_refused_naming_the_field(
    fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidUsageRecord) as caught:
        parse(usage("active_users", **fields))
    assert str(caught.value) == reason


def test_a_nested_field_is_named_with_dots() -> None:
    with pytest.raises(InvalidUsageRecord, match=r"^user\.id: missing; the unique_count metric"):
        parse(usage("nested_users", user={"name": "x"}))
    with pytest.raises(InvalidUsageRecord, match=r"^attributes\.user\.id: must be a string"):
        parse(usage("nested_users", attributes={"user": {"id": None}}))


def test_an_integer_past_64_bits_is_refused_not_merged_with_its_neighbours() -> None:
    raw = usage("active_users").replace(b"{", b'{"user_id":123456789012345678901234,', 1)
    with pytest.raises(InvalidUsageRecord, match=r"^user_id: .* too large to tell apart"):
        parse(raw)


def test_the_other_fields_are_still_checked() -> None:
    with pytest.raises(InvalidUsageRecord, match=r"^timestamp: missing$"):
        parse(usage("logins", timestamp=...))
    with pytest.raises(InvalidUsageRecord, match=r"^record_id: missing$"):
        parse(usage("active_users", record_id=..., user_id="u"))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@given(value=json_values)
def test_any_unique_value_gives_a_record_or_a_reason_naming_the_field(value: Any) -> None:
    try:
        record = parse(usage("active_users", user_id=value))
    except InvalidUsageRecord as exc:
        assert str(exc).startswith("user_id: ")
        assert str(exc).endswith(SUFFIX)
    else:
        assert record.unique is not None
        # An independent oracle: the key reads back as the value (numbers by value).
        assert orjson.loads(record.unique) == value
        assert type(orjson.loads(record.unique)) in (str, int, float, bool)


def test_metric_names_are_matched_once_then_remembered_boundedly() -> None:
    metering = Metering({"logins": ()})
    for i in range(1500):
        parse_usage(usage(f"m{i}", quantity=1), NOW_MS, SKEW_MS, metering)
        assert len(metering.sums) <= 1024
    assert "logins" not in metering.sums  # counted metrics are never taken for sums
    parse_usage(usage("logins"), NOW_MS, SKEW_MS, metering)
    assert "logins" not in metering.sums
    with pytest.raises(InvalidUsageRecord, match=r"^metric: must match"):
        parse_usage(usage("Bad Name", quantity=1), NOW_MS, SKEW_MS, metering)


def test_a_parsed_record_is_a_plain_frozen_usage_record() -> None:
    record = parse(usage("active_users", user_id="u-1"))
    built = UsageRecord("r-1", "acct-1", "active_users", Decimal(1), TIMESTAMP_MS, '"u-1"')
    assert type(record) is UsageRecord
    assert record == built and hash(record) == hash(built)
    assert copy.deepcopy(record) == record
    assert dataclasses.replace(record, unique=None).unique is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.unique = "x"  # type: ignore[misc]
