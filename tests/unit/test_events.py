"""Moment events (contract 3): schema-valid JSON, deterministic ids, numbers as numbers."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from domain.common.timeutil import DAY_MS, parse_rfc3339, parse_rfc3339_ms
from domain.plans.catalog import Catalog, Plan, load_catalog
from domain.plans.periods import Period, period_containing
from domain.rules.thresholds import Crossing, detect
from domain.wording.events import (
    Crossed,
    Evaluation,
    Standing,
    Wording,
    drop_event,
    drop_event_id,
    event_id,
    json_number,
    ratio_of,
    threshold_event,
)
from domain.wording.templates import Templates, load_templates
from tests.schema import SCHEMA, assert_valid, errors

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
NOV_START = parse_rfc3339_ms("2026-11-01T00:00:00Z")
PERIOD = Period.from_ms(NOV_START, parse_rfc3339_ms("2026-12-01T00:00:00Z"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "config" / "plans.toml")


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(ROOT / "config" / "messages.toml")


def plan(catalog: Catalog, plan_id: str) -> Plan:
    found = catalog.plan(plan_id)
    assert found is not None
    return found


def standing(
    current: Plan,
    metric: str,
    total: Decimal,
    limit: Decimal | None,
    *,
    period: Period = PERIOD,
    account_id: str = "acct-1",
) -> Standing:
    """Where ``metric`` of an account on ``current`` stands (November 2026 unless told)."""
    return Standing(
        account_id=account_id, plan=current, metric=metric, period=period, total=total, limit=limit
    )


def make_threshold(
    catalog: Catalog,
    templates: Templates,
    plan_id: str = "starter",
    total: Decimal = Decimal(8000),
    at: str = "2026-11-18T10:00:00Z",
    announced: frozenset[Decimal] = frozenset(),
    metric: str = "api_calls",
    limit: Decimal | None = None,
) -> dict[str, Any]:
    current = plan(catalog, plan_id)
    limit = limit if limit is not None else current.limit(metric)
    assert limit is not None
    crossing = detect(total, limit, current.levels, announced)
    assert crossing is not None
    return threshold_event(
        Wording(templates, catalog),
        standing(current, metric, total, limit),
        Crossed(crossing=crossing, record_id="rec-42", at_ms=parse_rfc3339_ms(at)),
        parse_rfc3339_ms(at) + 250,
    )


def make_drop(
    catalog: Catalog,
    templates: Templates,
    plan_id: str = "growth",
    recent: Decimal = Decimal(40),
    metric: str = "api_calls",
    limit: Decimal | None = None,
    last_active: int | None = None,
) -> dict[str, Any]:
    current = plan(catalog, plan_id)
    return drop_event(
        Wording(templates, catalog),
        standing(current, metric, D(30_000), limit),
        Evaluation(
            recent_days=3,
            recent_total=recent,
            expected_total=D(3600),
            ratio=recent / D(3600),
            last_active_at_ms=last_active,
            evaluated_at_ms=parse_rfc3339_ms("2026-11-24T00:15:00Z"),
        ),
        date(2026, 11, 21),
        parse_rfc3339_ms("2026-11-24T00:15:01.5Z"),
    )


def test_schema_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_threshold_near_event(catalog: Catalog, templates: Templates) -> None:
    event = make_threshold(catalog, templates)
    assert_valid(event)
    assert list(event) == [
        "schema_version",
        "event_id",
        "kind",
        "account_id",
        "metric",
        "plan",
        "period",
        "usage",
        "level",
        "crossed_levels",
        "trigger_record_id",
        "projection",
        "message",
        "suggestion",
        "triggered_at",
        "emitted_at",
    ]
    assert event["kind"] == "threshold-near"
    assert event["plan"] == {"id": "starter", "name": "Starter", "price": 19, "currency": "USD"}
    assert event["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    assert event["usage"] == {"total": 8000, "limit": 10000, "ratio": 0.8, "unit": "API calls"}
    assert (event["level"], event["crossed_levels"]) == (0.8, [0.8])
    assert event["trigger_record_id"] == "rec-42"
    assert event["projection"] == {
        "period_total": 13780,
        "limit_reached_at": "2026-11-22T18:30:00Z",
    }
    assert event["suggestion"]["action"] == "upgrade"
    assert event["suggestion"]["price_delta"] == 60
    assert event["triggered_at"] == "2026-11-18T10:00:00Z"
    assert event["emitted_at"] == "2026-11-18T10:00:00.250Z"


def test_threshold_hit_event(catalog: Catalog, templates: Templates) -> None:
    event = make_threshold(catalog, templates, total=D(10_000), at="2026-11-25T10:00:00Z")
    assert_valid(event)
    assert event["kind"] == "threshold-hit"
    assert (event["level"], event["crossed_levels"]) == (1.0, [0.8, 1.0])
    assert b'"level":1.0' in orjson.dumps(event)  # written 1.0, as in the contract
    # The record that reached the limit is when it was reached.
    assert event["projection"]["limit_reached_at"] == "2026-11-25T10:00:00Z"
    assert event["usage"]["ratio"] == 1


def test_event_numbers_are_ints_when_whole_and_floats_otherwise(
    catalog: Catalog, templates: Templates
) -> None:
    # A sum with a limit of 1 (storage, the shipped catalog's fractional metric, is a peak
    # now: no projection, see tests/unit/test_wording_aggregations.py).
    event = make_threshold(
        catalog, templates, plan_id="free", total=D("0.5"), metric="api_calls", limit=D(1)
    )
    assert_valid(event)
    assert event["usage"] == {"total": 0.5, "limit": 1, "ratio": 0.5, "unit": "API calls"}
    assert event["plan"]["price"] == 0 and isinstance(event["plan"]["price"], int)
    assert isinstance(event["projection"]["period_total"], float)
    peak = make_threshold(catalog, templates, plan_id="free", total=D("0.5"), metric="storage_gb")
    assert_valid(peak)
    assert peak["usage"] == {"total": 0.5, "limit": 1, "ratio": 0.5, "unit": "GB of storage"}
    assert peak["projection"] is None
    assert json_number(D("10000.0")) == 10000 and isinstance(json_number(D("10000.0")), int)
    assert json_number(D("0.29")) == 0.29
    assert ratio_of(D(2), D(3)) == D("0.666666")  # rounded down
    assert ratio_of(D(2), None) is None


def test_drop_event(catalog: Catalog, templates: Templates) -> None:
    limit = plan(catalog, "growth").limit("api_calls")
    event = make_drop(
        catalog, templates, limit=limit, last_active=parse_rfc3339_ms("2026-11-23T08:00:00Z")
    )
    assert_valid(event)
    assert event["kind"] == "sudden-drop"
    assert "level" not in event and "crossed_levels" not in event
    assert "trigger_record_id" not in event
    assert event["drop"] == {
        "recent_days": 3,
        "recent_total": 40,
        "expected_total": 3600,
        "ratio": 0.011111,
        "last_active_at": "2026-11-23T08:00:00Z",
    }
    assert event["usage"] == {"total": 30000, "limit": 100000, "ratio": 0.3, "unit": "API calls"}
    assert event["triggered_at"] == "2026-11-24T00:15:00Z"
    assert event["emitted_at"] == "2026-11-24T00:15:01.500Z"
    assert event["suggestion"]["action"] == "none"  # 30,000 used already: no smaller plan fits


@pytest.mark.parametrize(
    ("plan_id", "recent", "action"),
    # No plan limits the metric, so every cheaper plan covers it (contract 3.2).
    [("growth", D(0), "pause"), ("enterprise", D(0), "downgrade"), ("growth", D(40), "downgrade")],
)
def test_drop_event_without_limit(
    catalog: Catalog, templates: Templates, plan_id: str, recent: Decimal, action: str
) -> None:
    event = make_drop(catalog, templates, plan_id=plan_id, recent=recent, metric="seats_x")
    assert_valid(event)
    assert event["usage"]["limit"] is None and event["usage"]["ratio"] is None
    assert event["drop"]["last_active_at"] is None
    assert event["suggestion"]["action"] == action


def test_drop_event_downgrade(catalog: Catalog, templates: Templates) -> None:
    current = plan(catalog, "growth")
    event = drop_event(
        Wording(templates, catalog),
        standing(current, "api_calls", D(2000), current.limit("api_calls")),
        Evaluation(
            recent_days=3,
            recent_total=D(30),
            expected_total=D(300),
            ratio=D("0.1"),
            last_active_at_ms=None,
            evaluated_at_ms=NOV_START + 6 * DAY_MS + 900_000,
        ),
        date(2026, 11, 3),
        NOV_START + 6 * DAY_MS + 901_000,
    )
    assert_valid(event)
    assert event["suggestion"]["action"] == "downgrade"
    assert event["suggestion"]["plan_id"] == "starter"
    assert event["suggestion"]["price_delta"] == -60


# --- Event ids ---------------------------------------------------------------------------------


def test_event_id_matches_a_hand_computed_sha256(catalog: Catalog, templates: Templates) -> None:
    text = b"threshold-near|acct-1|api_calls|2026-11-01T00:00:00Z|starter|0.8"
    expected = "f70fda82c664fa3ff29cb5cff69f68c4d4bdf9472cc6a821d4b1b618e924873d"
    assert hashlib.sha256(text).hexdigest() == expected
    assert event_id("threshold-near", "acct-1", "api_calls", NOV_START, "starter", D("0.80")) == (
        expected
    )
    assert make_threshold(catalog, templates)["event_id"] == expected
    hit = hashlib.sha256(b"threshold-hit|acct-1|api_calls|2026-11-01T00:00:00Z|starter|1.0")
    assert event_id("threshold-hit", "acct-1", "api_calls", NOV_START, "starter", D(1)) == (
        hit.hexdigest()
    )


def test_drop_event_id_matches_a_hand_computed_sha256(
    catalog: Catalog, templates: Templates
) -> None:
    expected = hashlib.sha256(b"sudden-drop|acct-1|api_calls|2026-11-21").hexdigest()
    assert drop_event_id("acct-1", "api_calls", date(2026, 11, 21)) == expected
    assert make_drop(catalog, templates)["event_id"] == expected


def test_event_id_is_deterministic_and_ignores_when(catalog: Catalog, templates: Templates) -> None:
    first = make_threshold(catalog, templates, total=D(8000), at="2026-11-18T10:00:00Z")
    again = make_threshold(catalog, templates, total=D(8500), at="2026-11-20T10:00:00Z")
    assert first["event_id"] == again["event_id"]
    other_plan = make_threshold(catalog, templates, plan_id="growth", total=D(80_000))
    assert other_plan["event_id"] != first["event_id"]


def test_event_id_is_recomputable_from_the_event(catalog: Catalog, templates: Templates) -> None:
    for event in (
        make_threshold(catalog, templates),
        make_threshold(catalog, templates, total=D(10_000)),
        make_threshold(catalog, templates, plan_id="scale", total=D(760_000)),
    ):
        text = "|".join(
            [
                event["kind"],
                event["account_id"],
                event["metric"],
                event["period"]["start"],
                event["plan"]["id"],
                json.dumps(event["level"]),
            ]
        )
        assert hashlib.sha256(text.encode()).hexdigest() == event["event_id"]


def test_period_start_milliseconds_are_part_of_the_id() -> None:
    text = b"threshold-near|a|m|2026-11-01T00:00:00.250Z|p|0.75"
    assert event_id("threshold-near", "a", "m", NOV_START + 250, "p", D("0.750")) == (
        hashlib.sha256(text).hexdigest()
    )


# --- The schema refuses what the contract rules out --------------------------------------------


def mutated(event: dict[str, Any], change: Any) -> dict[str, Any]:
    copied = copy.deepcopy(event)
    change(copied)
    return copied


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.pop("trigger_record_id"),
        lambda e: e.pop("level"),
        lambda e: e.update(
            drop={
                "recent_days": 3,
                "recent_total": 0,
                "expected_total": 1,
                "ratio": 0,
                "last_active_at": None,
            }
        ),
        lambda e: e.update(kind="threshold-hit"),  # level 0.8 is no hit
        lambda e: e.update(level=1.5),
        lambda e: e.update(crossed_levels=[]),
        lambda e: e.update(schema_version=2),
        lambda e: e.update(event_id="F" * 64),
        lambda e: e.update(triggered_at="2026-11-18T11:00:00+01:00"),  # UTC with Z only
        lambda e: e.update(triggered_at="2026-13-18T10:00:00Z"),  # not a real date
        lambda e: e.update(emitted_at=1_700_000_000_000),
        lambda e: e["usage"].update(limit=None, ratio=None),  # thresholds need a limit
        lambda e: e["suggestion"].update(action="pause"),
        lambda e: e["suggestion"].update(plan_id=None),
        lambda e: e["plan"].update(currency="usd"),
        lambda e: e["message"].update(body=""),
        lambda e: e["projection"].pop("limit_reached_at"),
    ],
)
def test_schema_rejects_broken_threshold_events(
    catalog: Catalog, templates: Templates, change: Any
) -> None:
    event = make_threshold(catalog, templates)
    assert errors(mutated(event, change))


def test_schema_accepts_fields_it_does_not_name(catalog: Catalog, templates: Templates) -> None:
    # Changes to events are additive (contract 3): consumers ignore what they do not know.
    event = make_threshold(catalog, templates)
    assert not errors(mutated(event, lambda e: e.update(extra=1)))
    assert not errors(mutated(event, lambda e: e["usage"].update(extra=1)))


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.pop("drop"),
        lambda e: e.update(level=0.8),
        lambda e: e.update(trigger_record_id="r"),
        lambda e: e["drop"].update(recent_days=0),
        lambda e: e["suggestion"].update(action="upgrade"),
        lambda e: e["suggestion"].update(plan_id="growth"),  # "none" names no plan
    ],
)
def test_schema_rejects_broken_drop_events(
    catalog: Catalog, templates: Templates, change: Any
) -> None:
    event = make_drop(catalog, templates)
    assert not errors(event)
    assert errors(mutated(event, change))


# --- Every event the builders can make is valid ------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    plan_id=st.sampled_from(["free", "starter", "growth", "scale", "enterprise"]),
    metric=st.sampled_from(["api_calls", "storage_gb", "seats", "events"]),
    ratio=st.decimals(min_value=D("0.5"), max_value=3, places=3),
    offset_ms=st.integers(0, 30 * DAY_MS - 1),
    announced=st.sets(st.sampled_from([D("0.5"), D("0.75"), D("0.8"), D("0.9")]), max_size=2),
)
def test_every_threshold_event_validates(
    catalog: Catalog,
    templates: Templates,
    plan_id: str,
    metric: str,
    ratio: Decimal,
    offset_ms: int,
    announced: set[Decimal],
) -> None:
    current = plan(catalog, plan_id)
    limit = current.limit(metric)
    if limit is None:
        return
    total = limit * ratio
    at = NOV_START + offset_ms
    crossing: Crossing | None = detect(total, limit, current.levels, frozenset(announced))
    if crossing is None:
        return
    period = period_containing(at, parse_rfc3339("2026-11-01T00:00:00Z"), "month")
    event = threshold_event(
        Wording(templates, catalog),
        standing(current, metric, total, limit, period=period, account_id="acct|with|bars"),
        Crossed(crossing=crossing, record_id="r", at_ms=at),
        at + 1,
    )
    assert_valid(event)


@settings(max_examples=150, deadline=None)
@given(
    plan_id=st.sampled_from(["free", "starter", "growth", "scale", "enterprise"]),
    metric=st.sampled_from(["api_calls", "storage_gb", "seats", "events", "unknown_metric"]),
    total=st.decimals(min_value=0, max_value=10**8, places=2),
    recent=st.decimals(min_value=0, max_value=10**5, places=2),
    expected=st.decimals(min_value=100, max_value=10**6, places=4),
    recent_days=st.integers(1, 7),
    offset_ms=st.integers(0, 30 * DAY_MS - 1),
    last_active=st.none() | st.integers(NOV_START - 40 * DAY_MS, NOV_START),
)
def test_every_drop_event_validates(
    catalog: Catalog,
    templates: Templates,
    plan_id: str,
    metric: str,
    total: Decimal,
    recent: Decimal,
    expected: Decimal,
    recent_days: int,
    offset_ms: int,
    last_active: int | None,
) -> None:
    current = plan(catalog, plan_id)
    at = NOV_START + offset_ms
    event = drop_event(
        Wording(templates, catalog),
        standing(current, metric, total, current.limit(metric)),
        Evaluation(
            recent_days=recent_days,
            recent_total=recent,
            expected_total=expected,
            ratio=recent / expected,
            last_active_at_ms=last_active,
            evaluated_at_ms=at,
        ),
        date(2026, 10, 28),
        at + 5,
    )
    assert_valid(event)
