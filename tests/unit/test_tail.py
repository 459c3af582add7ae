"""``moments tail``'s pure side: kinds, and lines for complete, partial and garbage events of
every kind (the real examples of docs/events.md included)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.topology import EVENT_KINDS
from commands.tail.render import (
    MISSING,
    TITLE_INDENT,
    format_event,
    format_time,
    json_line,
    parse_kinds,
)
from domain.common.timeutil import datetime_to_ms
from domain.wording.rendering import format_level
from tests.strategies import json_values

TODAY = date(2026, 11, 24)
TRIGGERED = "2026-11-24T09:30:05Z"
ARRIVED_MS = datetime_to_ms(datetime(2026, 11, 24, 9, 30, 7, tzinfo=UTC))


def set_zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC unless a test says otherwise, so lines do not depend on the host."""
    set_zone(monkeypatch, "UTC")
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def make_event() -> Callable[..., bytes]:
    """Factory of event values: a complete threshold-hit, with fields replaced or removed."""

    def make(drop: tuple[str, ...] = (), **changes: Any) -> bytes:
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": "0" * 64,
            "kind": "threshold-hit",
            "account_id": "acct-42",
            "metric": "api_calls",
            "plan": {"id": "starter", "name": "Starter", "price": 19, "currency": "USD"},
            "usage": {"total": 10_000, "limit": 10_000, "ratio": 1, "unit": "API calls"},
            "level": 1.0,
            "crossed_levels": [0.8, 1.0],
            "suggestion": {"action": "upgrade", "plan_name": "Growth"},
            "message": {"title": "You've used all 10,000 API calls", "body": "..."},
            "triggered_at": TRIGGERED,
            "emitted_at": "2026-11-24T09:30:06Z",
        }
        event.update(changes)
        for name in drop:
            event.pop(name, None)
        return orjson.dumps(event)

    return make


def fields(text: str) -> list[str]:
    """time, kind, account, metric, the first word of the figures (a threshold's level), then
    the title (the second line) as one field."""
    head, _, title = text.partition("\n")
    when, rest = head.split("  ", 1)  # a time never holds two spaces in a row
    kind, account, metric, facts = rest.split(maxsplit=3)
    if title:
        assert title.startswith(TITLE_INDENT) and not title[len(TITLE_INDENT)].isspace()
    return [when.strip(), kind, account, metric, facts.split()[0], title.strip()]


def facts(text: str) -> str:
    """The figures of an event: the first line after the metric."""
    head = text.split("\n", 1)[0]
    return head.split("  ", 1)[1].split(maxsplit=3)[3]


def fmt(value: bytes, key: bytes | None = b"acct-key", ts: int | None = ARRIVED_MS) -> str:
    return format_event("threshold-near", key, value, ts, today=TODAY)


# --- parse_kinds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_kinds", "expected"),
    [
        ([], EVENT_KINDS),
        (["sudden-drop"], ("sudden-drop",)),
        (["sudden-drop", "threshold-near"], ("threshold-near", "sudden-drop")),
        (["threshold-hit", "threshold-hit"], ("threshold-hit",)),
        (list(reversed(EVENT_KINDS)), EVENT_KINDS),
    ],
)
def test_parse_kinds(given_kinds: list[str], expected: tuple[str, ...]) -> None:
    assert parse_kinds(given_kinds) == expected


@pytest.mark.parametrize("kinds", [["drop"], ["sudden-drop", "Threshold-Hit"], [""]])
def test_parse_kinds_names_what_is_accepted(kinds: list[str]) -> None:
    with pytest.raises(ValueError, match="accepted: threshold-near, threshold-hit, sudden-drop"):
        parse_kinds(kinds)


# --- format_level and format_time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.8, "80%"),
        (1.0, "100%"),
        (1, "100%"),
        (0.5, "50%"),
        ("0.75", "75%"),
        (0.333, "33.3%"),
        (0.9999, "100%"),
        (0, "0%"),
        (None, MISSING),
        (True, MISSING),
        (False, MISSING),
        ([0.8], MISSING),
        ({"level": 0.8}, MISSING),
        ("high", MISSING),
        ("", MISSING),
        ("NaN", MISSING),
        ("sNaN", MISSING),
        ("Infinity", MISSING),
        (float("inf"), MISSING),
        (float("nan"), MISSING),
    ],
)
def test_format_level(value: object, text: str) -> None:
    assert format_level(value) == text


@pytest.mark.parametrize("value", [1e30, "1e26", 10**40])
def test_format_level_of_an_absurd_number_does_not_raise(value: object) -> None:
    text = format_level(value)
    assert text == MISSING or text.endswith("%")


def test_format_time() -> None:
    moment = datetime(2026, 11, 24, 9, 30, 5, tzinfo=UTC)
    assert format_time(moment, TODAY) == "09:30:05"
    assert format_time(moment, date(2026, 11, 25)) == "2026-11-24 09:30:05"
    assert format_time(None, TODAY) == "-       "


def test_format_time_is_in_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    set_zone(monkeypatch, "Asia/Tokyo")
    moment = datetime(2026, 11, 24, 20, 0, 0, tzinfo=UTC)
    assert format_time(moment, date(2026, 11, 25)) == "05:00:00"


# --- format_event: complete and partial events ----------------------------------------------


def test_a_complete_event(make_event: Callable[..., bytes]) -> None:
    line = fmt(make_event())
    assert line == (
        "09:30:05  threshold-hit       acct-42    api_calls  100% 10,000 of 10,000 API calls; "
        "suggests upgrade to Growth\n"
        "          You've used all 10,000 API calls"
    )


def test_a_complete_event_of_another_day(make_event: Callable[..., bytes]) -> None:
    line = format_event("threshold-hit", None, make_event(), None, today=date(2026, 12, 1))
    assert line.startswith("2026-11-24 09:30:05  threshold-hit ")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"drop": ("metric",)}, ["09:30:05", "threshold-hit", "acct-42", MISSING, "100%"]),
        ({"drop": ("level",)}, ["09:30:05", "threshold-hit", "acct-42", "api_calls", "100%"]),
        (
            {"drop": ("level", "crossed_levels")},
            ["09:30:05", "threshold-hit", "acct-42", "api_calls", MISSING],
        ),
        (
            {"level": None, "crossed_levels": []},
            ["09:30:05", "threshold-hit", "acct-42", "api_calls", MISSING],
        ),
        ({"level": "high"}, ["09:30:05", "threshold-hit", "acct-42", "api_calls", MISSING]),
        ({"drop": ("account_id",)}, ["09:30:05", "threshold-hit", "acct-key", "api_calls", "100%"]),
        ({"account_id": ""}, ["09:30:05", "threshold-hit", "acct-key", "api_calls", "100%"]),
        ({"account_id": {"id": 1}}, ["09:30:05", "threshold-hit", "acct-key", "api_calls", "100%"]),
        ({"drop": ("kind",)}, ["09:30:05", "threshold-near", "acct-42", "api_calls", "100%"]),
        ({"kind": "mystery"}, ["09:30:05", "threshold-near", "acct-42", "api_calls", "100%"]),
        (
            {"kind": ["threshold-hit"]},
            ["09:30:05", "threshold-near", "acct-42", "api_calls", "100%"],
        ),
        (
            {"drop": ("triggered_at",)},
            ["09:30:06", "threshold-hit", "acct-42", "api_calls", "100%"],
        ),
        (
            {"drop": ("triggered_at", "emitted_at")},
            ["09:30:07", "threshold-hit", "acct-42", "api_calls", "100%"],
        ),
        (
            {"triggered_at": "yesterday"},
            ["09:30:06", "threshold-hit", "acct-42", "api_calls", "100%"],
        ),
        (
            {"triggered_at": ARRIVED_MS + 1000},
            ["09:30:08", "threshold-hit", "acct-42", "api_calls", "100%"],
        ),
        ({"triggered_at": True}, ["09:30:06", "threshold-hit", "acct-42", "api_calls", "100%"]),
        ({"metric": 42}, ["09:30:05", "threshold-hit", "acct-42", "42", "100%"]),
        ({"metric": None}, ["09:30:05", "threshold-hit", "acct-42", MISSING, "100%"]),
    ],
)
def test_partial_events_print_what_they_have(
    make_event: Callable[..., bytes], changes: dict[str, Any], expected: list[str]
) -> None:
    line = fmt(make_event(**changes))
    assert fields(line)[:5] == expected


@pytest.mark.parametrize(
    ("message", "title"),
    [
        (None, MISSING),
        ({}, MISSING),
        ({"title": None}, MISSING),
        ({"title": ["a"]}, MISSING),
        ({"title": "   "}, MISSING),
        ({"title": 7}, "7"),
        ({"title": "Two\nlines\tand\x00a NUL"}, "Two lines and a NUL"),
        ("just text", "just text"),
        (["no"], MISSING),
    ],
)
def test_the_title(make_event: Callable[..., bytes], message: object, title: str) -> None:
    assert fields(fmt(make_event(message=message)))[5] == title


def test_a_long_title_is_cut(make_event: Callable[..., bytes]) -> None:
    line = fmt(make_event(message={"title": "x" * 500}))
    title = fields(line)[5]
    assert len(title) == 200 and title.endswith("...")
    assert len(line.split("\n")) == 2


def test_nothing_but_braces(make_event: Callable[..., bytes]) -> None:
    line = format_event("sudden-drop", None, b"{}", None, today=TODAY)
    assert fields(line) == [MISSING, "sudden-drop", MISSING, MISSING, "last", MISSING]
    assert facts(line) == "last - days: - vs - expected (-)"


def test_a_key_with_control_characters_stays_on_one_line() -> None:
    line = format_event("sudden-drop", b"acct\n\x1b[31m", b"{}", ARRIVED_MS, today=TODAY)
    assert line.count("\n") == 1 and "\x1b" not in line
    assert fields(line)[2] == "acct"


# --- format_event: every kind -------------------------------------------------------------


def guide_examples() -> dict[str, dict[str, Any]]:
    """The examples of docs/events.md, made by scripts/gen-event-examples.py."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "gen-event-examples.py"
    spec = importlib.util.spec_from_file_location("gen_event_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    examples: dict[str, dict[str, Any]] = module.examples()
    return examples


GUIDE_LINES = {
    "threshold-near": (
        "2026-11-18 10:00:00  threshold-near      acct-0042  api_calls  80% 8,000 of 10,000 API "
        "calls; suggests upgrade to Growth",
        "80% used: 8,000 of 10,000 API calls",
    ),
    "threshold-hit": (
        "2026-11-24 15:20:00  threshold-hit       acct-0042  api_calls  100% 10,000 of 10,000 "
        "API calls; suggests upgrade to Growth",
        "You've reached your limit of 10,000 API calls",
    ),
    "threshold-hit past the limit (overage)": (
        "2026-11-28 11:45:00  threshold-hit       acct-0042  api_calls  150% 15,000 of 10,000 "
        "API calls; overage $10 so far, $12.74 projected; suggests upgrade to Growth",
        "You're 50% past your 10,000 API calls",
    ),
    "threshold-hit of a level (seats)": (
        "2026-11-26 09:30:00  threshold-hit       acct-0042  seats      100% 3 of 3 seats; "
        "suggests upgrade to Growth",
        "You have 3 of 3 seats",
    ),
    "sudden-drop": (
        "2026-11-24 00:00:00  sudden-drop         acct-0117  api_calls  last 3 days: 0 API calls "
        "vs 3,600 expected (0%); suggests pause",
        "No API calls in the last 3 days",
    ),
    "usage-recovered": (
        "2026-11-30 00:00:00  usage-recovered     acct-0117  api_calls  last 3 days: 3,400 API "
        "calls vs 3,600 expected (94%); ends the drop of 2026-11-21, drop_event_id "
        "ce033002adf45086e5ded0071b7170b642dcf99d49ce68784fb341dd9a398af0",
        "Welcome back: 3,400 API calls in the last 3 days",
    ),
    "milestone": (
        "2026-11-18 14:05:09  milestone           acct-0042  purchases  milestone 50 purchases, "
        "lifetime total 52; suggests reward: 15% off your next order",
        "Congratulations on your 50th purchase!",
    ),
    "billing-anniversary": (
        "2026-12-01 00:00:00  billing-anniversary acct-0042  -          2026-11-01..2026-12-01, "
        "12 periods, 1 year: 15,000 of 10,000 API calls (150%), 2 of 3 seats (66%), 3.5 of 10 "
        "GB of storage (35%); suggests upgrade to Growth",
        "Happy 1 year with us!",
    ),
    "account-change (plan_upgraded)": (
        "2026-12-01 09:12:40  account-change      acct-0042  -          plan_upgraded: starter "
        "-> growth",
        "You're on Growth now",
    ),
    "account-change (members_added)": (
        "2026-12-03 16:48:00  account-change      acct-0042  -          members_added: 3 -> 5; "
        "suggests offer: a family discount: 10% off each member you add",
        "Your account now has 5 members",
    ),
    "birthday": (
        "2026-12-07 00:00:00  birthday            acct-0042  -          birthday 2026-12-07;"
        " suggests offer: a free month on us",
        "Happy birthday!",
    ),
    "custom.busy-week": (
        "2026-11-18 14:05:09  custom.busy-week    acct-0042  purchases  12 purchases over 7d "
        "(threshold 10); 17 purchases this period; suggests offer: a free month of priority "
        "shipping labels",
        "12 orders this week",
    ),
}


def test_every_kind_prints_its_key_figures_and_title() -> None:
    """The real example of every kind (docs/events.md), as `moments tail` prints it."""
    examples = guide_examples()
    # Every built-in kind, and a rule of [[moments]] (contract 3.8).
    assert {e["kind"] for e in examples.values()} == {*EVENT_KINDS, "custom.busy-week"}
    assert set(examples) == set(GUIDE_LINES)
    for title, event in examples.items():
        text = format_event(
            event["kind"],
            event["account_id"].encode(),
            orjson.dumps(event),
            None,
            today=date(2027, 1, 1),
        )
        head, message = GUIDE_LINES[title]
        assert text == f"{head}\n{TITLE_INDENT}{message}", title


def test_a_milestone_reaching_several_lists_them() -> None:
    event = {
        "kind": "milestone",
        "metric": "purchases",
        "milestone": {"value": 50, "lifetime_total": 60, "reached": [10, 50]},
        "usage": {"unit": "purchases"},
    }
    assert facts(fmt(orjson.dumps(event))) == (
        "milestone 50 purchases, lifetime total 60 (reached 10, 50)"
    )


def test_a_late_milestone_without_usage_names_the_metric() -> None:
    event = {"kind": "milestone", "metric": "purchases", "milestone": {"value": 10}}
    assert facts(fmt(orjson.dumps(event))) == "milestone 10 purchases, lifetime total -"


def test_an_anniversary_without_usage_and_with_many_metrics() -> None:
    recap: dict[str, Any] = {
        "metrics": [{"metric": "a", "total": 0, "limit": 5, "ratio": 0, "unit": "a"}],
        "anniversary": {"periods_completed": 3, "years": None},
    }
    event = {"kind": "billing-anniversary", "recap": recap}
    assert facts(fmt(orjson.dumps(event))) == "-..-, 3 periods: no usage"
    recap["metrics"] = [
        {"metric": f"m{i}", "total": i + 1, "limit": None, "ratio": None, "unit": f"u{i}"}
        for i in range(6)
    ]
    recap["anniversary"]["years"] = 2
    assert facts(fmt(orjson.dumps(event))) == (
        "-..-, 3 periods, 2 years: 1 u0, 2 u1, 3 u2, 4 u3, 2 more"
    )


def test_an_overage_in_another_currency() -> None:
    event = {
        "kind": "threshold-hit",
        "level": 2.0,
        "plan": {"currency": "CHF"},
        "usage": {"total": 20, "limit": 10, "unit": "GB"},
        "overage": {"cost": 5.5, "projected_cost": 1e40},
    }
    assert facts(fmt(orjson.dumps(event))) == (
        "200% 20 of 10 GB; overage CHF 5.50 so far, - projected"
    )


kinds = st.sampled_from(EVENT_KINDS)
blocks = st.sampled_from(
    ["usage", "overage", "drop", "milestone", "recap", "change", "suggestion", "plan", "period"]
)


@given(
    kinds,
    st.dictionaries(blocks, json_values | st.dictionaries(st.text(max_size=16), json_values)),
)
def test_any_event_of_any_kind_prints_two_lines(kind: str, parts: dict[str, Any]) -> None:
    event = {"kind": kind, "account_id": "acct-1", **parts}
    line = fmt(orjson.dumps(event))
    assert line.count("\n") == 1 and "\r" not in line
    assert fields(line)[1] == kind


@given(
    kinds,
    st.dictionaries(
        st.sampled_from(
            [
                "total",
                "limit",
                "ratio",
                "unit",
                "cost",
                "projected_cost",
                "recent_days",
                "recent_total",
                "expected_total",
                "dropped_on",
                "drop_event_id",
                "value",
                "lifetime_total",
                "reached",
                "metrics",
                "anniversary",
                "type",
                "from",
                "to",
                "action",
                "offer",
                "plan_name",
            ]
        ),
        json_values,
    ),
)
def test_odd_values_inside_any_block_print_two_lines(kind: str, inner: dict[str, Any]) -> None:
    block_names = ["usage", "overage", "drop", "milestone", "recap", "change", "suggestion"]
    event = {"kind": kind, **{name: inner for name in block_names}}
    line = fmt(orjson.dumps(event))
    assert line.count("\n") == 1 and "\r" not in line


# --- format_event: garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"[1, 2]",
        b'"a string"',
        b"12",
        b"1e999",
        b"{",
        b"[" * 5000 + b"]" * 5000,
        b'{"a": "\xff"}',
        b"line one\nline two\r\n\x00",
    ],
)
def test_garbage_still_prints_one_line(value: bytes) -> None:
    line = fmt(value)
    assert "\n" not in line and "\r" not in line
    assert fields(line)[:4] == ["09:30:07", "threshold-near", "acct-key", MISSING]
    assert facts(line).startswith("(not a JSON object:")


def test_garbage_without_key_or_timestamp() -> None:
    line = format_event("sudden-drop", None, b"\x00", None, today=TODAY)
    assert fields(line)[:4] == [MISSING, "sudden-drop", MISSING, MISSING]
    assert facts(line) == "(not a JSON object: -)"


@pytest.mark.parametrize(
    "triggered_at",
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-02-30T00:00:00Z",
        "2026-11-24T09:30:05",
        -62_135_596_800_000,
        253_402_300_799_999,
        9_000_000_000_000_000_000,
        -9_000_000_000_000_000_000,
    ],
)
def test_odd_instants_never_raise(make_event: Callable[..., bytes], triggered_at: object) -> None:
    line = fmt(make_event(triggered_at=triggered_at, drop=("emitted_at",)))
    assert fields(line)[1:5] == ["threshold-hit", "acct-42", "api_calls", "100%"]


@pytest.mark.parametrize(
    ("zone", "triggered_at"),
    [
        ("America/New_York", "0001-01-01T00:00:00Z"),
        ("America/New_York", -62_135_596_800_000),
        ("Asia/Tokyo", "9999-12-31T23:59:59Z"),
        ("Asia/Tokyo", 253_402_300_799_999),
    ],
)
def test_instants_at_the_edge_of_time_in_a_local_zone(
    monkeypatch: pytest.MonkeyPatch,
    make_event: Callable[..., bytes],
    zone: str,
    triggered_at: object,
) -> None:
    set_zone(monkeypatch, zone)
    fmt(make_event(triggered_at=triggered_at))


def test_an_absurd_kafka_timestamp_does_not_raise() -> None:
    line = format_event("sudden-drop", b"acct-1", b"{}", 2**62, today=TODAY)
    assert fields(line)[0] == MISSING


@pytest.mark.parametrize(
    "value",
    [b'{"level": 1e30}', b'{"crossed_levels": [0.8, 1e30]}', b'{"level": "1e26"}'],
)
def test_an_event_with_an_absurd_level_does_not_raise(value: bytes) -> None:
    fmt(value)


event_keys = st.sampled_from(
    [
        "kind",
        "account_id",
        "metric",
        "level",
        "crossed_levels",
        "message",
        "triggered_at",
        "emitted_at",
        "title",
    ]
)


@given(st.dictionaries(event_keys | st.text(max_size=8), json_values, max_size=8))
def test_any_json_object_prints_one_line(event: dict[str, Any]) -> None:
    line = fmt(orjson.dumps(event))
    assert line.count("\n") == 1 and "\r" not in line
    assert fields(line)[1] in EVENT_KINDS


@given(st.binary(max_size=200), st.none() | st.binary(max_size=20))
def test_any_bytes_print_one_or_two_lines(value: bytes, key: bytes | None) -> None:
    line = fmt(value, key)
    assert line.count("\n") <= 1 and "\r" not in line


# --- json_line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (b'{"kind":"sudden-drop","n":1.50}', '{"kind":"sudden-drop","n":1.50}'),  # as it came
        (b'  {"a": 1}\n', '{"a": 1}'),
        (b'{\n  "a": 1,\n  "b": [1, 2]\n}', '{"a":1,"b":[1,2]}'),
        (b'{"a":\r\n1}', '{"a":1}'),
        (b"null", "null"),
        (b"[]", "[]"),
    ],
)
def test_json_line(value: bytes, line: str) -> None:
    assert json_line(value) == line


@pytest.mark.parametrize("value", [b"", b"not json", b"{", b"\xff", b'{"a": "\xff"}', b"1 2"])
def test_json_line_of_garbage_is_none(value: bytes) -> None:
    assert json_line(value) is None


@given(json_values)
def test_json_line_is_one_line_with_the_same_value(value: Any) -> None:
    pretty = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    line = json_line(pretty)
    assert line is not None and "\n" not in line
    assert orjson.loads(line) == value
