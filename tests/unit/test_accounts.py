"""Held account plans (contract 1.2, 2): which record wins, which period a record is in."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import datetime_to_ms
from domain.intake.accounts import AccountPlan, Status, period_of, supersedes
from domain.intake.records import PlanRecord
from domain.plans.catalog import Catalog, parse_catalog

D = Decimal


def catalog(period: str = "month") -> Catalog:
    return parse_catalog(
        f"""
[defaults]
period = "{period}"
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = {{ api_calls = 10000, storage_gb = 10 }}
""",
        "test-plans.toml",
    )


MONTHLY, WEEKLY, DAILY = catalog("month"), catalog("week"), catalog("day")
STARTER = MONTHLY.plans[0]


def ms(text: str) -> int:
    return datetime_to_ms(datetime.fromisoformat(text))


@pytest.fixture
def make_plan() -> Callable[..., AccountPlan]:
    def make(
        *,
        anchor: str | None = None,
        updated_at: str = "2026-01-01T00:00:00+00:00",
        limits: dict[str, str] | None = None,
        status: str = "active",
    ) -> AccountPlan:
        return AccountPlan(
            account_id="acct-1",
            plan_id="starter",
            anchor_ms=None if anchor is None else ms(anchor),
            status=status,  # type: ignore[arg-type]
            limits={m: D(v) for m, v in (limits or {}).items()},
            updated_at_ms=ms(updated_at),
        )

    return make


def record(updated_at: str, plan_id: str = "growth") -> PlanRecord:
    return PlanRecord(
        account_id="acct-1",
        plan_id=plan_id,
        billing_anchor=None,
        status="active",
        limits=MappingProxyType({}),
        updated_at_ms=ms(updated_at),
    )


# --- supersedes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "wins"),
    [
        ("2025-12-31T23:59:59.999+00:00", False),  # older: ignored
        ("2026-01-01T00:00:00+00:00", True),  # equal: replaces
        ("2026-01-01T01:00:00+01:00", True),  # the same instant in another offset
        ("2026-01-01T00:00:00.001+00:00", True),
        ("2027-01-01T00:00:00+00:00", True),
    ],
)
def test_a_plan_record_supersedes_unless_older(
    make_plan: Callable[..., AccountPlan], new: str, wins: bool
) -> None:
    assert supersedes(record(new), make_plan()) is wins


def test_any_record_supersedes_nothing() -> None:
    assert supersedes(record("1970-01-01T00:00:00+00:00"), None)


@given(held=st.integers(0, 10**13), new=st.integers(0, 10**13))
def test_supersedes_orders_by_updated_at(held: int, new: int) -> None:
    held_plan = AccountPlan("a", "starter", None, "active", {}, held)
    new_record = PlanRecord("a", "starter", None, "active", MappingProxyType({}), new)
    assert supersedes(new_record, held_plan) == (new >= held)


def test_from_record_keeps_every_field() -> None:
    anchor = datetime(2025, 6, 15, 9, 30, tzinfo=UTC)
    rec = PlanRecord(
        "acct-1", "starter", anchor, "paused", MappingProxyType({"api_calls": D(5)}), 1234
    )
    held = AccountPlan.from_record(rec)
    assert held == AccountPlan(
        "acct-1", "starter", datetime_to_ms(anchor), "paused", {"api_calls": D(5)}, 1234
    )
    assert held.anchor("month") == anchor


# --- period_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "start", "end"),
    [
        ("2026-03-15T12:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),
        ("2026-03-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),
        ("2026-02-28T23:59:59.999+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
        ("2026-03-01T00:30:00+01:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
    ],
)
@pytest.mark.parametrize("cat", [MONTHLY, WEEKLY, DAILY], ids=["month", "week", "day"])
def test_without_a_plan_periods_are_calendar_months(
    cat: Catalog, ts: str, start: str, end: str
) -> None:
    period = period_of(None, ms(ts), cat)
    assert (period.start_ms, period.end_ms) == (ms(start), ms(end))


@pytest.mark.parametrize(
    ("anchor", "ts", "start", "end"),
    [
        (
            None,
            "2026-03-15T12:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
            "2026-04-01T00:00:00+00:00",
        ),
        (
            "2025-01-20T08:00:00+00:00",
            "2026-03-15T12:00:00+00:00",
            "2026-02-20T08:00:00+00:00",
            "2026-03-20T08:00:00+00:00",
        ),
        (
            "2025-01-31T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
            "2026-02-28T00:00:00+00:00",
            "2026-03-31T00:00:00+00:00",
        ),
    ],
)
def test_with_a_plan_periods_follow_its_anchor(
    make_plan: Callable[..., AccountPlan], anchor: str | None, ts: str, start: str, end: str
) -> None:
    period = period_of(make_plan(anchor=anchor), ms(ts), MONTHLY)
    assert (period.start_ms, period.end_ms) == (ms(start), ms(end))


@given(
    ts=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
    )
)
def test_default_weeks_start_on_monday(ts: datetime) -> None:
    plan = AccountPlan("a", "starter", None, "active", {}, 0)
    period = period_of(plan, datetime_to_ms(ts), WEEKLY)
    assert period.start.weekday() == 0
    assert period.start.time() == datetime.min.time()
    assert period.end - period.start == timedelta(weeks=1)
    assert period.contains(datetime_to_ms(ts))


@given(
    ts=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
    )
)
def test_default_days_are_utc_days(ts: datetime) -> None:
    plan = AccountPlan("a", "starter", None, "active", {}, 0)
    period = period_of(plan, datetime_to_ms(ts), DAILY)
    assert period.start == ts.replace(hour=0, minute=0, second=0, microsecond=0)
    assert period.end - period.start == timedelta(days=1)


def test_weekly_periods_follow_an_explicit_anchor(make_plan: Callable[..., AccountPlan]) -> None:
    plan = make_plan(anchor="2026-01-07T06:00:00+00:00")  # a Wednesday
    period = period_of(plan, ms("2026-03-15T12:00:00+00:00"), WEEKLY)
    assert period.start == datetime(2026, 3, 11, 6, tzinfo=UTC)
    assert period.start.weekday() == 2


def test_default_anchor(make_plan: Callable[..., AccountPlan]) -> None:
    plan = make_plan()
    assert plan.anchor("month") == datetime(2000, 1, 1, tzinfo=UTC)
    assert plan.anchor("week").weekday() == 0


# --- limits and JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "metric", "expected"),
    [
        ({}, "api_calls", D(10000)),
        ({"api_calls": "50000"}, "api_calls", D(50000)),
        ({"api_calls": "0.5"}, "api_calls", D("0.5")),
        ({"api_calls": "50000"}, "storage_gb", D(10)),
        ({}, "seats", None),
        ({"seats": "3"}, "seats", D(3)),
    ],
)
def test_limit_override_beats_the_plan(
    make_plan: Callable[..., AccountPlan],
    overrides: dict[str, str],
    metric: str,
    expected: Decimal | None,
) -> None:
    assert make_plan(limits=overrides).limit(STARTER, metric) == expected


limits_st = st.dictionaries(
    st.from_regex(r"[a-z0-9_.-]{1,16}", fullmatch=True),
    st.decimals(min_value=D("0.001"), max_value=10**15, allow_nan=False, places=3),
    max_size=5,
)


@given(
    account=st.text(min_size=1, max_size=128),
    anchor=st.none() | st.integers(min_value=0, max_value=253_402_300_799_999),
    status=st.sampled_from(["active", "paused", "cancelled"]),
    limits=limits_st,
    updated=st.integers(min_value=0, max_value=253_402_300_799_999),
)
def test_account_plan_json_round_trip(
    account: str, anchor: int | None, status: str, limits: dict[str, Decimal], updated: int
) -> None:
    plan = AccountPlan(account, "starter", anchor, status, limits, updated)  # type: ignore[arg-type]
    data = json.loads(json.dumps(plan.to_json()))
    back = AccountPlan.from_json(data)
    assert back == plan
    assert all(str(back.limits[m]) == str(v) for m, v in limits.items())


def test_with_active_since_carries_every_other_field() -> None:
    """``with_active_since`` is built field by field (issue 20: dataclasses.replace cost a
    worker's start-up 4 us per plan): it must equal replace() whatever fields the plan has."""
    from dataclasses import fields, replace

    plan = AccountPlan(
        account_id="a-1",
        plan_id="growth",
        anchor_ms=1_700_000_000_000,
        status="active",
        limits={"api_calls": Decimal(5)},
        updated_at_ms=1_700_000_000_001,
        members=4,
        region="eu",
        birth_date="--02-29",
        active_since_ms=None,
        known_since_ms=1_699_000_000_000,
    )
    assert all(
        getattr(plan, f.name) is not None for f in fields(plan) if f.name != "active_since_ms"
    )
    for since in (None, 1_700_000_000_002):
        assert plan.with_active_since(since) == replace(plan, active_since_ms=since)


def _to_json_before_issue_20(plan: AccountPlan) -> dict[str, object]:
    """AccountPlan.to_json as it was written before issue 20 (the oracle of its bytes)."""
    return {
        "account_id": plan.account_id,
        "plan_id": plan.plan_id,
        "anchor_ms": plan.anchor_ms,
        "status": plan.status,
        "limits": {m: str(v) for m, v in plan.limits.items()},
        "updated_at_ms": plan.updated_at_ms,
        **({} if plan.members is None else {"members": plan.members}),
        **({} if plan.region is None else {"region": plan.region}),
        **({} if plan.birth_date is None else {"birth_date": plan.birth_date}),
        **({} if plan.active_since_ms is None else {"active_since_ms": plan.active_since_ms}),
        **({} if plan.known_since_ms is None else {"known_since_ms": plan.known_since_ms}),
    }


_maybe_ms = st.none() | st.integers(-(2**50), 2**50)


@given(
    anchor=_maybe_ms,
    status=st.sampled_from(["active", "paused", "cancelled"]),
    limits=st.dictionaries(
        st.sampled_from(["api_calls", "seats"]), st.decimals(1, 10**6, places=2)
    ),
    members=st.none() | st.integers(0, 10**9),
    region=st.none() | st.text(min_size=1, max_size=8),
    birth_date=st.none() | st.sampled_from(["1990-11-21", "--02-29"]),
    active=_maybe_ms,
    known=_maybe_ms,
)
def test_a_plans_stored_bytes_are_as_before(
    anchor: int | None,
    status: Status,
    limits: dict[str, Decimal],
    members: int | None,
    region: str | None,
    birth_date: str | None,
    active: int | None,
    known: int | None,
) -> None:
    plan = AccountPlan(
        "a", "starter", anchor, status, limits, 7, members, region, birth_date, active, known
    )
    assert orjson.dumps(plan.to_json()) == orjson.dumps(_to_json_before_issue_20(plan))
    assert AccountPlan.from_json(orjson.loads(orjson.dumps(plan.to_json()))) == plan
