"""Usage and plan records (contract 1.1, 1.2) and their dead letters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain.common.numbers import json_number
from domain.common.timeutil import datetime_to_ms, parse_rfc3339
from domain.errors import InvalidPlanRecord, InvalidUsageRecord
from domain.intake.deadletter import b64_or_text, dead_letter
from domain.intake.records import SUMS, PlanRecord, UsageRecord, parse_plan, parse_usage
from domain.plans.catalog import Catalog, Plan
from tests.unit.test_timeutil import date_times

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SKEW_MS = 300_000

VALID_USAGE: dict[str, Any] = {
    "record_id": "r-1",
    "account_id": "acct-1",
    "metric": "api_calls",
    "quantity": 12.5,
    "timestamp": "2025-12-31T23:00:00Z",
}


def usage(**changes: Any) -> bytes:
    """A valid usage record as JSON, with ``changes`` applied (``...`` drops a field)."""
    record = {**VALID_USAGE, **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


def parse(raw: bytes | None) -> UsageRecord:
    return parse_usage(raw, NOW_MS, SKEW_MS, SUMS)


def make_catalog() -> Catalog:
    plans = tuple(
        Plan(plan_id, plan_id.title(), rank, Decimal(price), False, {}, (Decimal("0.8"),))
        for rank, (plan_id, price) in enumerate([("free", 0), ("starter", 19), ("growth", 79)])
    )
    return Catalog("month", "USD", (Decimal("0.8"),), {}, plans)


CATALOG = make_catalog()

VALID_PLAN: dict[str, Any] = {
    "account_id": "acct-1",
    "plan_id": "starter",
    "updated_at": "2026-01-01T00:00:00Z",
}


def plan_record(**changes: Any) -> bytes:
    record = {**VALID_PLAN, **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


# ---- usage: valid variants ----


def test_a_valid_record_parses() -> None:
    record = parse(usage(attributes={"region": "eu", "nested": [1, {"x": None}]}))

    assert record == UsageRecord(
        record_id="r-1",
        account_id="acct-1",
        metric="api_calls",
        quantity=Decimal("12.5"),
        timestamp_ms=NOW_MS - 3_600_000,
    )


@pytest.mark.parametrize(
    ("timestamp", "expected_ms"),
    [
        (NOW_MS - 1, NOW_MS - 1),
        ("2025-12-31T23:00:00Z", NOW_MS - 3_600_000),
        ("2025-12-31T23:00:00z", NOW_MS - 3_600_000),
        ("2026-01-01T01:00:00+02:00", NOW_MS - 3_600_000),
        ("2025-12-31T18:00:00-05:00", NOW_MS - 3_600_000),
        ("2025-12-31 23:00:00Z", NOW_MS - 3_600_000),
        ("2025-12-31T23:00:00.123Z", NOW_MS - 3_600_000 + 123),
        ("2025-12-31T23:00:00.1239999Z", NOW_MS - 3_600_000 + 123),
        (0, 0),
        ("1970-01-01T00:00:00Z", 0),
        # Within the allowed clock skew of the future.
        (NOW_MS + SKEW_MS, NOW_MS + SKEW_MS),
        ("2026-01-01T00:05:00Z", NOW_MS + SKEW_MS),
    ],
)
def test_timestamp_forms(timestamp: Any, expected_ms: int) -> None:
    assert parse(usage(timestamp=timestamp)).timestamp_ms == expected_ms


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (3, Decimal(3)),
        (0, Decimal(0)),
        (0.0, Decimal(0)),
        (-0.0, Decimal(0)),
        (0.1, Decimal("0.1")),
        (0.29, Decimal("0.29")),
        (1e-7, Decimal("1E-7")),
        (2.5e16, Decimal("2.5E+16")),
        (2**60, Decimal(2**60)),  # a double holds it exactly
        (1e20, Decimal("1E+20")),  # "unlimited"-sized, still exact
    ],
)
def test_quantity_is_the_exact_decimal_of_what_was_written(
    quantity: float, expected: Decimal
) -> None:
    parsed = parse(usage(quantity=quantity)).quantity

    assert parsed == expected
    assert parsed.is_signed() is False


@pytest.mark.parametrize(
    "quantity",
    [2**64 - 1, 2**53 + 1, 1e31, 1e-31, 5e-324, 1e308],
)
def test_quantities_events_could_not_carry_exactly_are_refused(quantity: float) -> None:
    with pytest.raises(InvalidUsageRecord, match="^quantity: .* cannot be carried exactly"):
        parse(usage(quantity=quantity))


def test_an_integer_past_64_bits_is_refused_not_rounded_to_a_double() -> None:
    # orjson reads it as the double 1e20; counting that would silently drop the 1.
    raw = usage(quantity=7).replace(b'"quantity":7', b'"quantity":100000000000000000001')

    with pytest.raises(InvalidUsageRecord, match="100000000000000000001 cannot be carried"):
        parse(raw)
    exact = usage(quantity=7).replace(b'"quantity":7', b'"quantity":100000000000000000000')
    assert parse(exact).quantity == Decimal("1e20")


def test_unknown_fields_and_any_attributes_are_ignored() -> None:
    for attributes in ({"a": 1}, [1, 2], "text", None, 5):
        assert parse(usage(attributes=attributes, extra={"x": 1})).record_id == "r-1"


def test_ids_of_128_characters_and_metric_of_64_are_accepted() -> None:
    record = parse(usage(record_id="r" * 128, account_id="a" * 128, metric="m.-_9" * 12 + "abcd"))

    assert len(record.record_id) == len(record.account_id) == 128
    assert len(record.metric) == 64


# ---- usage: invalid records ----

INVALID_USAGE = [
    # (raw value, text the reason must contain; the field comes first)
    (None, "empty value"),
    (b"", "empty value"),
    (b"{", "invalid JSON: "),
    (b"\xff\xfe", "invalid JSON: "),
    (b'{"quantity": NaN}', "invalid JSON: "),
    (b'{"quantity": 1e400}', "invalid JSON: "),
    (b"null", "value: must be a JSON object, got null"),
    (b"[1, 2]", "value: must be a JSON object, got [1,2]"),
    (b'"text"', "value: must be a JSON object"),
    (usage(record_id=...), "record_id: missing"),
    (usage(record_id=None), "record_id: must be a string of 1..128 characters, got null"),
    (usage(record_id=""), 'record_id: must be a string of 1..128 characters, got ""'),
    (usage(record_id="r" * 129), "record_id: must be a string of 1..128 characters"),
    (usage(record_id=42), "record_id: must be a string of 1..128 characters, got 42"),
    (usage(account_id=...), "account_id: missing"),
    (usage(account_id=["a"]), 'account_id: must be a string of 1..128 characters, got ["a"]'),
    (usage(account_id="a" * 129), "account_id: must be a string"),
    (usage(metric=...), "metric: missing"),
    (usage(metric="API_calls"), 'metric: must match [a-z0-9_.-]{1,64}, got "API_calls"'),
    (usage(metric=""), "metric: must match [a-z0-9_.-]{1,64}"),
    (usage(metric="api calls"), "metric: must match [a-z0-9_.-]{1,64}"),
    (usage(metric="a" * 65), "metric: must match [a-z0-9_.-]{1,64}"),
    (usage(metric="api_calls\n"), "metric: must match [a-z0-9_.-]{1,64}"),
    (usage(metric=5), "metric: must match [a-z0-9_.-]{1,64}, got 5"),
    (usage(quantity=...), "quantity: missing"),
    (usage(quantity=-3), "quantity: must be a finite number >= 0, got -3"),
    (usage(quantity=-0.5), "quantity: must be a finite number >= 0, got -0.5"),
    (usage(quantity="3"), 'quantity: must be a finite number >= 0, got "3"'),
    (usage(quantity=True), "quantity: must be a finite number >= 0, got true"),
    (usage(quantity=None), "quantity: must be a finite number >= 0, got null"),
    (usage(quantity={"v": 1}), 'quantity: must be a finite number >= 0, got {"v":1}'),
    (usage(timestamp=...), "timestamp: missing"),
    (usage(timestamp=None), "timestamp: must be an RFC 3339 string with an offset"),
    (usage(timestamp=True), "timestamp: must be an RFC 3339 string with an offset"),
    (
        usage(timestamp=1.7e12),
        "timestamp: must be an RFC 3339 string with an offset, like 2026-01-31T09:30:00Z,"
        " or integer epoch milliseconds, got 1700000000000.0",
    ),
    (usage(timestamp="2025-12-31T23:00:00"), "timestamp: must be an RFC 3339 date-time with"),
    (usage(timestamp="2025-12-31"), "timestamp: must be an RFC 3339 date-time with an offset"),
    (usage(timestamp="2025-12-31T23:00Z"), "timestamp: must be an RFC 3339 date-time"),
    (usage(timestamp="2025-12-31T23:00:00+0100"), "timestamp: must be an RFC 3339 date-time"),
    (usage(timestamp="yesterday"), "timestamp: must be an RFC 3339 date-time with an offset"),
    (usage(timestamp="2025-02-30T00:00:00Z"), "timestamp: not a real date and time"),
    (usage(timestamp="2025-12-31T23:00:00+25:00"), "timestamp: must be an RFC 3339 date-time"),
    (usage(timestamp="2025-12-31T23:00:00+01:60"), "timestamp: must be an RFC 3339 date-time"),
    (usage(timestamp="2025-12-31T24:00:00Z"), "timestamp: not a real date and time"),
    (usage(timestamp=-1), "timestamp: -1 is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z"),
    (usage(timestamp="1969-12-31T23:59:59Z"), "timestamp: "),
    (usage(timestamp=10**17), "timestamp: 100000000000000000 is outside"),
    (
        usage(timestamp="2026-01-01T00:10:00+00:00"),
        "timestamp: 2026-01-01T00:10:00+00:00 is more than 300 s in the future"
        " (worker clock 2026-01-01T00:00:00Z)",
    ),
    (
        usage(timestamp=NOW_MS + SKEW_MS + 1),
        "timestamp: 1767225900001 (2026-01-01T00:05:00.001Z) is more than 300 s in the future",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), INVALID_USAGE)
def test_invalid_usage_records_say_which_field_and_why(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidUsageRecord) as caught:
        parse(raw)

    assert reason in str(caught.value)
    assert str(caught.value).startswith(reason.split(":")[0])


def test_the_first_bad_field_is_reported() -> None:
    with pytest.raises(InvalidUsageRecord, match="^record_id: missing$"):
        parse(b'{"quantity": -1}')


def test_long_values_are_cut_short_in_reasons() -> None:
    with pytest.raises(InvalidUsageRecord) as caught:
        parse(usage(metric="X" * 10_000))

    assert len(str(caught.value)) < 120
    assert str(caught.value).endswith('..."') is False
    assert str(caught.value).endswith("...")


# ---- usage: never anything but InvalidUsageRecord ----

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

field_values = json_values | st.sampled_from(
    [
        "2025-12-31T23:00:00Z",
        "2025-12-31T23:00:00+99:99",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "api_calls",
        NOW_MS,
        NOW_MS * 10**6,
        -(2**63),
        2**64 - 1,
    ]
)

usage_like_objects = st.dictionaries(
    st.sampled_from(
        ["record_id", "account_id", "metric", "quantity", "timestamp", "attributes", "other"]
    ),
    field_values,
)


@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_give_a_record_or_invalid_usage_record(raw: bytes) -> None:
    try:
        parse(raw)
    except InvalidUsageRecord as exc:
        assert str(exc)


@given(value=usage_like_objects | json_values)
def test_arbitrary_json_gives_a_record_or_invalid_usage_record(value: Any) -> None:
    try:
        record = parse(orjson.dumps(value))
    except InvalidUsageRecord as exc:
        assert str(exc)
    else:
        assert record.quantity >= 0
        assert 0 <= record.timestamp_ms <= NOW_MS + SKEW_MS


@given(
    quantity=st.floats(min_value=1e-30, max_value=1e30) | st.just(0.0) | st.integers(0, 2**53),
    timestamp=st.integers(0, NOW_MS + SKEW_MS),
)
def test_valid_quantities_and_timestamps_round_trip(quantity: float, timestamp: int) -> None:
    record = parse(usage(quantity=quantity, timestamp=timestamp))

    assert record.quantity == Decimal(repr(quantity)) if quantity else record.quantity == 0
    assert record.timestamp_ms == timestamp


@given(quantity=st.floats(min_value=0, allow_infinity=False) | st.integers(0, 2**64 - 1))
def test_every_accepted_quantity_is_exact_in_json(quantity: float) -> None:
    try:
        parsed = parse(usage(quantity=quantity)).quantity
    except InvalidUsageRecord:
        return
    # An independent check of "exact": the JSON text an event would hold reads back, as a
    # Python number, to the very value counted.
    text = orjson.dumps(json_number(parsed))
    assert Decimal(text.decode()) == parsed


# ---- plans ----


def test_a_minimal_plan_record_gets_its_defaults() -> None:
    record = parse_plan(plan_record(), CATALOG)

    assert record == PlanRecord(
        account_id="acct-1",
        plan_id="starter",
        billing_anchor=None,
        status="active",
        limits={},
        updated_at_ms=NOW_MS,
    )
    assert record.active
    assert record.anchor("month") == datetime(2000, 1, 1, tzinfo=UTC)
    assert record.anchor("week").weekday() == 0


def test_a_full_plan_record_parses() -> None:
    record = parse_plan(
        plan_record(
            billing_anchor="2025-01-31T10:00:00+02:00",
            status="paused",
            limits={"api_calls": 50_000, "storage_gb": 2.5},
            updated_at="2026-01-01T01:00:00+01:00",
            extra="ignored",
        ),
        CATALOG,
    )

    assert record.billing_anchor == datetime(2025, 1, 31, 8, 0, tzinfo=UTC)
    assert record.billing_anchor is not None and record.billing_anchor.tzinfo is UTC
    assert record.anchor("month") == record.billing_anchor
    assert record.status == "paused"
    assert not record.active
    assert record.limits == {"api_calls": Decimal(50_000), "storage_gb": Decimal("2.5")}
    assert record.updated_at_ms == NOW_MS


def test_nulls_in_optional_plan_fields_mean_absent() -> None:
    record = parse_plan(plan_record(billing_anchor=None, status=None, limits=None), CATALOG)

    assert (record.billing_anchor, record.status, dict(record.limits)) == (None, "active", {})


def test_account_limits_override_the_plan() -> None:
    plan = Plan("p", "P", 1, Decimal(1), False, {"api_calls": Decimal(10)}, ())
    record = parse_plan(plan_record(limits={"storage_gb": 3}), CATALOG)

    assert record.limit(plan, "storage_gb") == Decimal(3)
    assert record.limit(plan, "api_calls") == Decimal(10)
    assert record.limit(plan, "seats") is None


INVALID_PLANS = [
    (b"", "empty value"),
    (b"not json", "invalid JSON: "),
    (b"null", "value: must be a JSON object, got null"),
    (plan_record(account_id=...), "account_id: missing"),
    (plan_record(account_id=""), "account_id: must be a string of 1..128 characters"),
    (plan_record(plan_id=...), "plan_id: missing"),
    (plan_record(plan_id=3), "plan_id: must be the id of a catalog plan (free, starter, growth)"),
    (plan_record(plan_id=""), "plan_id: '' is not in the plan catalog"),
    (
        plan_record(plan_id="gold"),
        "plan_id: 'gold' is not in the plan catalog (known: free, starter, growth)",
    ),
    (plan_record(billing_anchor=5), "billing_anchor: must be an RFC 3339 string with an offset"),
    (plan_record(billing_anchor="2026-01-01"), "billing_anchor: must be an RFC 3339 date-time"),
    (plan_record(billing_anchor="2026-01-01T00:00:00"), "billing_anchor: must be an RFC 3339"),
    (
        plan_record(status="frozen"),
        'status: must be one of active, paused, cancelled, got "frozen"',
    ),
    (plan_record(status=["active"]), "status: must be one of active, paused, cancelled"),
    (plan_record(updated_at=...), "updated_at: missing"),
    (plan_record(updated_at=None), "updated_at: missing"),
    (plan_record(updated_at=NOW_MS), "updated_at: must be an RFC 3339 string with an offset"),
    (plan_record(updated_at="2026-13-01T00:00:00Z"), "updated_at: not a real date and time"),
]


@pytest.mark.parametrize(("raw", "reason"), INVALID_PLANS)
def test_invalid_plan_records_say_which_field_and_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidPlanRecord) as caught:
        parse_plan(raw, CATALOG)

    assert reason in str(caught.value)
    assert str(caught.value).startswith(reason.split(":")[0])


BAD_LIMIT_ENTRIES = [
    ([1], "limits: must be an object of metric -> number, got [1]"),
    ({"API": 5}, 'limits: metric "API" must match [a-z0-9_.-]{1,64}'),
    ({"api_calls": 0}, "limits.api_calls: must be a finite number > 0, got 0"),
    ({"api_calls": -1}, "limits.api_calls: must be a finite number > 0"),
    ({"api_calls": True}, "limits.api_calls: must be a finite number > 0"),
    ({"api_calls": "5"}, "limits.api_calls: must be a finite number > 0"),
    ({"api_calls": 1e31}, "limits.api_calls: 1e+31 cannot be carried exactly"),
]


@pytest.mark.parametrize(("limits", "reason"), BAD_LIMIT_ENTRIES)
def test_an_invalid_limit_is_left_out_and_the_rest_of_the_record_applies(
    limits: Any, reason: str
) -> None:
    # Contract 1.2: the plan or status change the record carries must not be lost with it.
    extra = {"storage_gb": 3} if isinstance(limits, dict) else {}
    value = limits if not isinstance(limits, dict) else {**limits, **extra}
    record = parse_plan(plan_record(plan_id="growth", status="paused", limits=value), CATALOG)

    assert (record.plan_id, record.status) == ("growth", "paused")
    assert dict(record.limits) == {m: Decimal(v) for m, v in extra.items()}
    assert len(record.left_out) == 1
    assert reason in record.left_out[0]


def test_an_unlimited_sized_override_is_kept_exactly() -> None:
    record = parse_plan(plan_record(limits={"api_calls": 1e20}), CATALOG)

    assert record.limits == {"api_calls": Decimal("1e20")}
    assert record.left_out == ()


plan_like_objects = st.dictionaries(
    st.sampled_from(
        ["account_id", "plan_id", "billing_anchor", "status", "limits", "updated_at", "x"]
    ),
    field_values | st.sampled_from(["starter", "paused"]),
)


@given(value=plan_like_objects | json_values)
def test_arbitrary_json_gives_a_plan_or_invalid_plan_record(value: Any) -> None:
    try:
        parse_plan(orjson.dumps(value), CATALOG)
    except InvalidPlanRecord as exc:
        assert str(exc)


# ---- dead letters ----


def test_text_stays_text_and_binary_becomes_base64() -> None:
    assert b64_or_text(b'{"a": "\xc3\xa9"}') == '{"a": "é"}'
    assert b64_or_text(b"\xff\x00") == base64.b64encode(b"\xff\x00").decode()
    assert b64_or_text(b"") == ""


def test_dead_letter_shape() -> None:
    error = InvalidUsageRecord("quantity: must be a finite number >= 0, got -3")

    letter = dead_letter(error, "usage-records", 3, 42, b'{"quantity": -3}', NOW_MS + 5)

    assert letter == {
        "error": "quantity: must be a finite number >= 0, got -3",
        "topic": "usage-records",
        "partition": 3,
        "offset": 42,
        "raw": '{"quantity": -3}',
        "at": "2026-01-01T00:00:00.005Z",
    }
    assert orjson.loads(orjson.dumps(letter)) == letter


def test_dead_letter_of_a_record_without_value() -> None:
    letter = dead_letter("empty value", "usage-records", 0, 1, None, NOW_MS)

    assert letter["raw"] is None
    assert letter["at"] == "2026-01-01T00:00:00Z"


def test_a_dead_letter_keeps_64_kib_of_a_long_value_and_says_how_long_it_was() -> None:
    # A dead letter of a 1 MB value must itself stay far below the broker's message size.
    text = ("é" * 600_000).encode()  # 1.2 MB of two-byte characters
    letter = dead_letter("too long", "usage-records", 0, 7, text, 0)

    assert letter["raw_bytes"] == len(text)
    assert letter["raw"] == "é" * (64 * 1024 // 2)  # still text, cut between characters
    binary = dead_letter("x", "usage-records", 0, 7, b"\xff" * 100_000, 0)
    assert base64.b64decode(binary["raw"] or "") == b"\xff" * 64 * 1024
    assert "raw_bytes" not in dead_letter("x", "usage-records", 0, 7, b"{}", 0)


def test_members_and_region_are_read_and_invalid_ones_left_out() -> None:
    record = parse_plan(plan_record(members=4, region="CA-ON"), CATALOG)
    assert (record.members, record.region, record.left_out) == (4, "CA-ON", ())

    bad = parse_plan(plan_record(members=-1, region="r" * 65, plan_id="growth"), CATALOG)
    assert (bad.plan_id, bad.members, bad.region) == ("growth", None, None)
    assert [reason.split(":")[0] for reason in bad.left_out] == ["members", "region"]
    for members in (True, 2.5, "3", 10**10):
        assert parse_plan(plan_record(members=members), CATALOG).members is None


def _updated_at_before_issue_20(text: str) -> int | str:
    """What parse_plan made of ``updated_at`` before its fast path: the ``datetime`` way
    (``parse_rfc3339`` then ``datetime_to_ms``), or the refusal's words."""
    try:
        return datetime_to_ms(parse_rfc3339(text))
    except ValueError as exc:
        # The value as JSON, cut to 60 characters as refusals show values (a text of control
        # characters grows six-fold escaped).
        shown = orjson.dumps(text).decode()
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"updated_at: {exc}, got {shown}"


@given(text=date_times | st.text(max_size=40))
@example(text="0001-01-01T00:00:00+00:01")  # before the first instant of datetime, in UTC
@example(text="0001-01-01T00:00:00-00:01")
@example(text="9999-12-31T23:59:59.9999999-00:00")
@example(text="9999-12-31T23:30:00-00:31")  # past the last one
@example(text="2016-12-31T23:59:60Z")  # a leap second
@example(text="2023-02-30T23:59:60Z")
@example(text="0" * 23 + "\x1f" * 4 + "\x07" * 2)  # refused, shown cut (found by hypothesis)
def test_updated_at_is_read_as_the_datetime_definition(text: str) -> None:
    # The oracle: the datetime path parse_plan took before issue 20, refusals word for word.
    try:
        got: int | str = parse_plan(plan_record(updated_at=text), CATALOG).updated_at_ms
    except InvalidPlanRecord as exc:
        got = str(exc)
    assert got == _updated_at_before_issue_20(text)
