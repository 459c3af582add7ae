"""CloudEvents on the usage topic (contract 1.4): both Kafka modes, meters, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.kafka import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import example, given
from hypothesis import strategies as st

from domain.common.timeutil import parse_rfc3339_ms
from domain.errors import InvalidUsageRecord, StructuredCloudEvent
from domain.intake.batch import dedup_key
from domain.intake.cloudevents import (
    MeteredEvent,
    cloudevent_key,
    is_cloudevent,
    parse_cloudevent,
    read_usage,
)
from domain.intake.records import Metering, UsageRecord, parse_usage
from domain.plans.catalog import Catalog, parse_catalog

NOW_MS = parse_rfc3339_ms("2026-12-07T08:00:00Z")
SKEW_MS = 300_000
TIME = "2026-12-07T07:59:00.250Z"
TIME_MS = parse_rfc3339_ms(TIME)

CATALOG = parse_catalog(
    """
[metrics]
api_calls = "API calls"
tokens = "tokens"
logins = { unit = "logins", aggregation = "count" }
active_users = { unit = "active users", aggregation = "unique_count", unique = "user.id" }
peak_gb = { unit = "GB", aggregation = "max" }

[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19.0
limits = { api_calls = 10000 }

[[meters]]
event_type = "api-request"
metric = "api_calls"

[[meters]]
event_type = "llm-completion"
metric = "tokens"
value = "tokens"
where = { model = "gpt-4o" }

[[meters]]
event_type = "llm-completion"
metric = "api_calls"

[[meters]]
event_type = "login"
metric = "logins"
value = "ignored"

[[meters]]
event_type = "login"
metric = "active_users"

[[meters]]
event_type = "storage"
metric = "peak_gb"
value = "usage.gb"
where = { "usage.tier" = "hot", billable = true, shard = 1 }
""",
    "tests/plans.toml",
)


def _event(**fields: Any) -> dict[str, Any]:
    """A structured-mode event: an API request of acct-1, changed by ``fields`` (None drops)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "/gateway",
        "type": "api-request",
        "subject": "acct-1",
        "time": TIME,
        "data": {"path": "/v1/things"},
    }
    event.update(fields)
    return {name: value for name, value in event.items() if value is not None}


def _structured(event: dict[str, Any], catalog: Catalog = CATALOG) -> MeteredEvent:
    return parse_cloudevent(orjson.dumps(event), (), catalog, NOW_MS, SKEW_MS)


def _binary_message(event: dict[str, Any]) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """``event`` in binary mode: attributes as ``ce_*`` headers, data as the value."""
    headers = [
        (f"ce_{name}", value if isinstance(value, bytes) else str(value).encode())
        for name, value in event.items()
        if name != "data"
    ]
    headers.append(("content-type", b"application/json"))
    value = orjson.dumps(event["data"]) if "data" in event else None
    return value, headers


def _binary(event: dict[str, Any], catalog: Catalog = CATALOG) -> MeteredEvent:
    value, headers = _binary_message(event)
    return parse_cloudevent(value, headers, catalog, NOW_MS, SKEW_MS)


MODES = pytest.mark.parametrize("parse", [_structured, _binary], ids=["structured", "binary"])


def _reading(metric: str, quantity: str | int, record_id: str = "ev-1") -> UsageRecord:
    return UsageRecord(record_id, "acct-1", metric, Decimal(quantity), TIME_MS)


def _refusal(parse: Any, event: dict[str, Any]) -> str:
    with pytest.raises(InvalidUsageRecord) as caught:
        parse(event)
    return str(caught.value)


@MODES
def test_an_api_request_is_one_call_of_its_subject(parse: Any) -> None:
    assert parse(_event()) == MeteredEvent(
        record_id="ev-1",
        dedup_id=cloudevent_key("acct-1", "/gateway", "ev-1"),
        account_id="acct-1",
        timestamp_ms=TIME_MS,
        readings=(_reading("api_calls", 1),),
    )


@MODES
def test_one_event_feeds_every_meter_that_takes_it(parse: Any) -> None:
    completion = _event(type="llm-completion", data={"model": "gpt-4o", "tokens": 812})
    assert parse(completion).readings == (_reading("tokens", 812), _reading("api_calls", 1))
    # A float quantity keeps its shortest decimal text, as a plain record's does.
    completion["data"]["tokens"] = 0.25
    assert parse(completion).readings[0].quantity == Decimal("0.25")


@MODES
def test_where_leaves_out_the_meters_an_event_does_not_match(parse: Any) -> None:
    other_model = _event(type="llm-completion", data={"model": "gpt-4o-mini", "tokens": "x"})
    # The tokens meter does not take it, so its (bad) tokens are not read.
    assert parse(other_model).readings == (_reading("api_calls", 1),)


@MODES
@pytest.mark.parametrize(
    "data",
    [
        {"name": "unknown type"},
        None,  # no data at all
    ],
)
def test_an_event_no_meter_takes_is_unmetered(parse: Any, data: Any) -> None:
    event = parse(_event(type="page-view", data=data))
    assert event.readings == ()
    assert (event.account_id, event.record_id, event.timestamp_ms) == ("acct-1", "ev-1", TIME_MS)


@pytest.mark.parametrize(
    ("data", "taken"),
    [
        ({"usage": {"tier": "hot", "gb": 3}, "billable": True, "shard": 1}, True),
        ({"usage": {"tier": "hot", "gb": 3}, "billable": True, "shard": 1.0}, True),
        ({"usage": {"tier": "hot", "gb": 3}, "billable": 1, "shard": 1}, False),
        ({"usage": {"tier": "hot", "gb": 3}, "billable": True, "shard": True}, False),
        ({"usage": {"tier": "hot", "gb": 3}, "billable": True, "shard": "1"}, False),
        ({"usage": {"tier": "cold", "gb": 3}, "billable": True, "shard": 1}, False),
        ({"usage": "hot", "billable": True, "shard": 1}, False),
        ({"billable": True, "shard": 1}, False),
        ([1, 2], False),
    ],
)
def test_where_compares_like_json_values(data: Any, taken: bool) -> None:
    """Strings to strings, numbers to numbers (1 is 1.0), booleans only to booleans."""
    readings = _structured(_event(type="storage", data=data)).readings
    assert readings == ((_reading("peak_gb", 3),) if taken else ())


@MODES
def test_count_and_unique_count_count_events(parse: Any) -> None:
    login = _event(type="login", data={"ignored": "not a number", "user": {"id": 42}})
    logins, users = parse(login).readings
    # count: the meter's value is ignored, not checked (as a count record's quantity is).
    assert (logins.metric, logins.quantity) == ("logins", 1)
    assert (users.metric, users.quantity) == ("active_users", 1)


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        (None, "data.user.id: missing; the unique_count metric active_users counts its"),
        ({}, "data.user.id: missing; the unique_count metric active_users counts its"),
        ({"id": None}, "data.user.id: must be a string of 1..256 characters, an integer, a"),
        ({"id": ""}, "data.user.id: must be a string of 1..256 characters, an integer, a"),
        ({"id": "x" * 257}, "data.user.id: must be a string of 1..256 characters"),
        ({"id": [1]}, "data.user.id: must be a string of 1..256 characters"),
        ({"id": {"a": 1}}, "data.user.id: must be a string of 1..256 characters"),
    ],
)
def test_a_unique_count_meter_without_its_value_refuses_the_event(user: Any, reason: str) -> None:
    data = {"ignored": 1} if user is None else {"user": user}
    assert _refusal(_structured, _event(type="login", data=data)).startswith(reason)


@pytest.mark.parametrize("value", ["u-1", 42, 4.5, True])
def test_unique_values_are_strings_numbers_or_booleans(value: Any) -> None:
    _structured(_event(type="login", data={"user": {"id": value}}))


def _tokens(tokens: Any) -> dict[str, Any]:
    return _event(type="llm-completion", data={"model": "gpt-4o", "tokens": tokens})


@MODES
@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event(specversion=None), "specversion: missing"),
        (_event(specversion="0.3"), 'specversion: must be "1.0", got "0.3"'),
        (_event(id=None), "id: missing"),
        (_event(id=""), "id: must be a string of 1..128 characters"),
        (_event(id="x" * 129), "id: must be a string of 1..128 characters"),
        (_event(source=None), "source: missing"),
        (_event(source=""), "source: must be a string of 1..256 characters"),
        (_event(type=None), "type: missing"),
        (_event(subject=None), "subject: missing"),
        (_event(subject=""), "subject: must be a string of 1..128 characters (the account id)"),
        (_event(time=None), "time: missing"),
        (_event(time="yesterday"), "time: "),
        (_event(time="2026-12-07T08:00:00"), "time: "),
        (_event(time="2026-12-07T09:00:00Z"), "time: 2026-12-07T09:00:00Z is more than 300 s"),
        (_tokens(None), "data.tokens: must be a finite number >= 0, got null"),
        (
            _event(type="llm-completion", data={"model": "gpt-4o"}),
            "data.tokens: missing; the meter of llm-completion events for tokens reads its "
            "quantity there",
        ),
        (_tokens("812"), 'data.tokens: must be a finite number >= 0, got "812"'),
        (_tokens(-1), "data.tokens: must be a finite number >= 0, got -1"),
        (_tokens(True), "data.tokens: must be a finite number >= 0, got true"),
        (_tokens(2**63 + 1), "data.tokens: 9223372036854775809 cannot be carried exactly"),
        (_tokens(1e-31), "data.tokens: 1e-31 cannot be carried exactly"),
        (_tokens(1e31), "data.tokens: 1e+31 cannot be carried exactly"),
    ],
)
def test_a_malformed_event_is_refused_with_its_field(
    parse: Any, event: dict[str, Any], reason: str
) -> None:
    refusal = _refusal(parse, event)
    if parse is _binary and "specversion" not in event:
        reason = "specversion: missing"  # no ce_specversion: not binary mode, and no object
    elif parse is _binary and not reason.startswith("data."):
        reason = "ce_" + reason  # binary mode names the header
    assert refusal.startswith(reason), refusal


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event(time=1796630340250), "time: must be an RFC 3339 string with an offset"),
        (_event(subject=42), "subject: must be a string of 1..128 characters (the account id), "),
        (_event(id=7), "id: must be a string of 1..128 characters, got 7"),
        (_event(specversion=1.0), 'specversion: must be "1.0", got 1.0'),
    ],
)
def test_structured_attributes_must_be_strings(event: dict[str, Any], reason: str) -> None:
    assert _refusal(_structured, event).startswith(reason)


def test_a_quantity_past_64_bits_is_refused_not_rounded() -> None:
    # orjson reads 2**64 + 1 as a float; the literal in the text shows it was not 2**64.
    value = orjson.dumps(_tokens(0)).replace(b'"tokens":0', b'"tokens":18446744073709551617')
    with pytest.raises(InvalidUsageRecord, match="^data.tokens: 18446744073709551617 cannot"):
        parse_cloudevent(value, (), CATALOG, NOW_MS, SKEW_MS)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty value"),
        (b"{", "invalid JSON: "),
        (b"[1]", "value: must be a JSON object, got [1]"),
    ],
)
def test_a_structured_value_must_be_a_json_object(value: bytes, reason: str) -> None:
    headers = [("content-type", b"application/cloudevents+json")]
    with pytest.raises(InvalidUsageRecord) as caught:
        parse_cloudevent(value, headers, CATALOG, NOW_MS, SKEW_MS)
    assert str(caught.value).startswith(reason)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda v, h: (b"{", h), "data: invalid JSON (the record's value): "),
        (
            lambda v, h: (v, [*h[:-1], ("content-type", b"text/plain")]),
            "content-type: must be application/json (or another JSON type) for data that meters "
            'read, got "text/plain"',
        ),
        (lambda v, h: (v, [*h, ("ce_id", b"ev-2")]), "ce_id: the header appears twice"),
        (
            lambda v, h: (v, [(n, b"\xff" if n == "ce_id" else r) for n, r in h]),
            "ce_id: must be UTF-8 text",
        ),
    ],
)
def test_a_malformed_binary_event_is_refused_with_its_header(change: Any, reason: str) -> None:
    value, headers = change(*_binary_message(_event()))
    with pytest.raises(InvalidUsageRecord) as caught:
        parse_cloudevent(value, headers, CATALOG, NOW_MS, SKEW_MS)
    assert str(caught.value).startswith(reason)


def test_binary_mode_takes_json_content_types_and_header_case() -> None:
    value, headers = _binary_message(_event())
    headers = [(name.upper(), raw) for name, raw in headers[:-1]]
    headers.append(("Content-Type", b"application/vnd.acme+json; charset=utf-8"))
    assert parse_cloudevent(value, headers, CATALOG, NOW_MS, SKEW_MS) == _structured(_event())


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        ((), False),
        ((("traceparent", b"00-1"),), False),
        ((("ce_specversion", b"1.0"),), True),
        ((("traceparent", b"00-1"), ("CE_SPECVERSION", b"1.0")), True),
        ((("content-type", b"application/cloudevents+json; charset=utf-8"),), True),
        ((("Content-Type", b"Application/CloudEvents+JSON"),), True),
        ((("content-type", b"application/json"),), False),
        ((("content-type", b"application/json"), ("ce_specversion", b"1.0")), True),
        ((("content-type", None),), False),
    ],
)
def test_headers_tell_a_cloudevent(
    headers: tuple[tuple[str, bytes | None], ...], found: bool
) -> None:
    assert is_cloudevent(headers) is found


def test_parse_usage_hands_a_structured_event_over_parsed() -> None:
    """No record_id but a specversion: the object goes to parse_cloudevent as parsed."""
    raw = orjson.dumps(_event())
    with pytest.raises(StructuredCloudEvent) as caught:
        parse_usage(raw, NOW_MS, SKEW_MS, Metering.of(CATALOG))
    assert caught.value.event == _event()
    assert isinstance(caught.value, InvalidUsageRecord)  # callers without CloudEvents DLQ it
    given_parsed = parse_cloudevent(raw, (), CATALOG, NOW_MS, SKEW_MS, caught.value.event)
    assert given_parsed == _structured(_event())
    # A plain record without record_id is refused as before.
    with pytest.raises(InvalidUsageRecord, match="^record_id: missing$"):
        parse_usage(b'{"account_id": "a"}', NOW_MS, SKEW_MS, Metering.of(CATALOG))


def test_events_written_by_the_sdk_kafka_binding_read_the_same_in_both_modes() -> None:
    """The CloudEvents SDK's Kafka binding is the reference writer of both modes."""
    event = CloudEvent(
        attributes={
            "id": "ev-9",
            "source": "/gateway",
            "type": "llm-completion",
            "subject": "acct-1",
            "time": datetime(2026, 12, 7, 7, 59, tzinfo=UTC),
            "datacontenttype": "application/json",
        },
        data={"model": "gpt-4o", "tokens": 812},
    )
    expected = (_reading("tokens", 812, "ev-9"), _reading("api_calls", 1, "ev-9"))
    expected = tuple(
        UsageRecord(r.record_id, r.account_id, r.metric, r.quantity, TIME_MS - 250)
        for r in expected
    )
    for write in (to_binary, to_structured):
        message = write(event, JSONFormat())
        headers = list(message.headers.items())
        assert is_cloudevent(headers)
        parsed = parse_cloudevent(message.value, headers, CATALOG, NOW_MS, SKEW_MS)
        assert parsed.readings == expected, write.__name__
        assert parsed.dedup_id == cloudevent_key("acct-1", "/gateway", "ev-9")


_ids = st.text(max_size=12)


@given(_ids, _ids, _ids, _ids, _ids, _ids)
@example("a", "b\x1fc", "d", "a", "b", "c\x1fd")
@example("1:a", "b", "c", "1", "a\x1e1:b", "c")
def test_cloudevent_keys_are_one_per_event_and_never_a_records(
    account: str, source: str, event_id: str, other_account: str, other_source: str, other_id: str
) -> None:
    """Oracle: two keys are equal exactly when their (account, source, id) are; no CloudEvent
    key equals a plain record's ``dedup_key`` whatever the ids hold."""
    key = cloudevent_key(account, source, event_id)
    other = cloudevent_key(other_account, other_source, other_id)
    assert (key == other) == (
        (account, source, event_id) == (other_account, other_source, other_id)
    )
    assert key != dedup_key(other_account, other_source)
    assert key != dedup_key(account, f"{len(source)}:{source}\x1f{event_id}")


_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what orjson writes
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=3),
)


@given(_numbers)
@example(2**63 + 1)
@example(-0.0)
@example(1e-30)
def test_a_meter_checks_its_quantity_exactly_as_a_plain_record(number: Any) -> None:
    """Oracle: parse_usage. The same number gives the same quantity, or a refusal of it."""
    record = {
        "record_id": "r",
        "account_id": "acct-1",
        "metric": "tokens",
        "quantity": number,
        "timestamp": TIME,
    }
    try:
        expected: Decimal | None = parse_usage(
            orjson.dumps(record), NOW_MS, SKEW_MS, Metering.of(CATALOG)
        ).quantity
    except InvalidUsageRecord:
        expected = None
    try:
        [tokens, _] = _structured(_tokens(number)).readings
        got: Decimal | None = tokens.quantity
    except InvalidUsageRecord as exc:
        assert str(exc).startswith("data.tokens: ")
        got = None
    assert str(got) == str(expected)


def test_read_usage_tells_records_from_events_in_every_mode() -> None:
    plain = {
        "record_id": "r-1",
        "account_id": "acct-1",
        "metric": "api_calls",
        "quantity": 2,
        "timestamp": TIME,
    }
    raw = orjson.dumps(plain)
    record = parse_usage(raw, NOW_MS, SKEW_MS, Metering.of(CATALOG))
    trace = [("traceparent", b"00-1")]
    assert read_usage(raw, (), CATALOG, NOW_MS, SKEW_MS) == record
    assert read_usage(raw, trace, CATALOG, NOW_MS, SKEW_MS) == record
    event = _structured(_event())
    structured = orjson.dumps(_event())
    assert read_usage(structured, (), CATALOG, NOW_MS, SKEW_MS) == event  # no header
    marked = [("content-type", b"application/cloudevents+json")]
    assert read_usage(structured, marked, CATALOG, NOW_MS, SKEW_MS) == event
    assert read_usage(*_binary_message(_event()), CATALOG, NOW_MS, SKEW_MS) == event
    with pytest.raises(InvalidUsageRecord, match="^subject: missing$"):
        read_usage(orjson.dumps(_event(subject=None)), (), CATALOG, NOW_MS, SKEW_MS)
    with pytest.raises(InvalidUsageRecord, match="^quantity: missing$"):
        del plain["quantity"]
        read_usage(orjson.dumps(plain), (), CATALOG, NOW_MS, SKEW_MS)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=8))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "record_id": st.one_of(_scalars, st.just("r-1")),
            "account_id": st.one_of(_scalars, st.just("acct-1")),
            "metric": st.one_of(_scalars, st.just("api_calls")),
            "quantity": st.one_of(_scalars, st.floats(allow_nan=False, allow_infinity=False)),
            "timestamp": st.one_of(_scalars, st.just(TIME), st.just(TIME_MS)),
            "attributes": _scalars,
        },
    )
)
def test_read_usage_reads_a_plain_record_exactly_as_parse_usage(record: dict[str, Any]) -> None:
    """Oracle: parse_usage. Without headers or specversion, the same record or refusal."""
    raw = orjson.dumps(record)
    try:
        expected: object = parse_usage(raw, NOW_MS, SKEW_MS, Metering.of(CATALOG))
    except InvalidUsageRecord as exc:
        expected = str(exc)
    try:
        got: object = read_usage(raw, (), CATALOG, NOW_MS, SKEW_MS)
    except InvalidUsageRecord as exc:
        got = str(exc)
    assert got == expected
