"""Account changes (contract 3.6): the diff of two plan records, and the events it makes."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intake.accounts import AccountPlan
from domain.moments.changes import (
    CHANGE_TYPES,
    AccountChange,
    change_events,
    diff_accounts,
)
from domain.plans.catalog import Catalog, Offers, load_catalog
from domain.plans.periods import Period
from domain.wording.events import change_event_id
from domain.wording.templates import Templates, load_templates
from tests.schema import assert_valid

ROOT = Path(__file__).resolve().parents[2]
CATALOG: Catalog = load_catalog(ROOT / "config" / "plans.toml")
NO_OFFERS: Catalog = dataclasses.replace(CATALOG, offers=Offers())
TEMPLATES: Templates = load_templates(ROOT / "config" / "messages.toml")

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
PERIOD = Period.from_ms(T0, 1_796_083_200_000)  # to 2026-12-01T00:00:00Z
HOUR = 3_600_000

PLAN_IDS = (*CATALOG.plan_ids, "retired")  # "retired": a plan the catalog no longer lists
STATUSES = ("active", "paused", "cancelled")
REGIONS = ("CA", "ca", " CA ", "NY", "US-TX", "212")


def account(
    plan_id: str = "starter",
    status: str = "active",
    members: int | None = None,
    region: str | None = None,
    updated_at_ms: int = T0,
    limits: dict[str, Decimal] | None = None,
) -> AccountPlan:
    return AccountPlan(
        account_id="acct|1",
        plan_id=plan_id,
        anchor_ms=None,
        status=status,  # type: ignore[arg-type]
        limits=limits or {},
        updated_at_ms=updated_at_ms,
        members=members,
        region=region,
    )


accounts = st.builds(
    account,
    plan_id=st.sampled_from(PLAN_IDS),
    status=st.sampled_from(STATUSES),
    members=st.none() | st.integers(0, 12),
    region=st.none() | st.sampled_from(REGIONS),
    updated_at_ms=st.integers(T0, T0 + 40 * 24 * HOUR),
)


def oracle(held: AccountPlan, new: AccountPlan) -> list[tuple[str, Any, Any]]:
    """The contract's list, field by field, written out independently of domain.moments.changes."""
    ranks = {plan.id: plan.rank for plan in CATALOG.plans}
    expected: list[tuple[str, Any, Any]] = []
    old_rank, new_rank = ranks.get(held.plan_id), ranks.get(new.plan_id)
    if old_rank is not None and new_rank is not None and old_rank < new_rank:
        expected.append(("plan_upgraded", held.plan_id, new.plan_id))
    if old_rank is not None and new_rank is not None and old_rank > new_rank:
        expected.append(("plan_downgraded", held.plan_id, new.plan_id))
    for status, change in (("paused", "paused"), ("active", "resumed"), ("cancelled", "cancelled")):
        if new.status == status and held.status != status:
            expected.append((change, held.status, new.status))
    if None not in (held.members, new.members) and new.members > held.members:  # type: ignore[operator]
        expected.append(("members_added", held.members, new.members))
    if None not in (held.region, new.region):
        if held.region.strip().lower() != new.region.strip().lower():  # type: ignore[union-attr]
            expected.append(("region_changed", held.region, new.region))
    return expected


def events_of(
    held: AccountPlan,
    new: AccountPlan,
    catalog: Catalog = CATALOG,
    totals: dict[str, Decimal] | None = None,
    emitted_at_ms: int = T0 + 50 * 24 * HOUR,
) -> list[dict[str, Any]]:
    return change_events(
        templates=TEMPLATES,
        catalog=catalog,
        account=new,
        changes=diff_accounts(held, new, catalog),
        period=PERIOD,
        totals=totals or {},
        emitted_at_ms=emitted_at_ms,
    )


@settings(max_examples=600)
@given(held=accounts, new=accounts)
def test_changes_are_the_oracles_in_the_contracts_order(
    held: AccountPlan, new: AccountPlan
) -> None:
    changes = diff_accounts(held, new, CATALOG)
    assert [(c.type, c.old, c.new) for c in changes] == oracle(held, new)
    order = [CHANGE_TYPES.index(c.type) for c in changes]
    assert order == sorted(order)


@given(held=accounts)
def test_a_record_equal_to_the_held_one_changes_nothing(held: AccountPlan) -> None:
    assert diff_accounts(held, held, CATALOG) == []
    newer = dataclasses.replace(held, updated_at_ms=held.updated_at_ms + 1)
    assert diff_accounts(held, newer, CATALOG) == []
    assert events_of(held, newer) == []


@settings(max_examples=300)
@given(
    held=accounts,
    new=accounts,
    totals=st.dictionaries(
        st.sampled_from(["api_calls", "seats", "storage_gb", "unknown.metric"]),
        st.decimals(0, 10**8, places=2),
    ),
    offers=st.booleans(),
)
def test_one_valid_event_per_change_with_stable_ids(
    held: AccountPlan, new: AccountPlan, totals: dict[str, Decimal], offers: bool
) -> None:
    catalog = CATALOG if offers else NO_OFFERS
    if catalog.plan(new.plan_id) is None:  # the handler dead-letters such records
        new = dataclasses.replace(new, plan_id="growth")
    changes = diff_accounts(held, new, catalog)
    events = events_of(held, new, catalog, totals)
    again = events_of(held, new, catalog, totals, emitted_at_ms=T0)
    assert [e["change"] for e in events] == [
        {"type": c.type, "from": c.old, "to": c.new} for c in changes
    ]
    assert [e["event_id"] for e in events] == [e["event_id"] for e in again]
    for event, change in zip(events, changes, strict=True):
        assert_valid(event)
        text = f"account-change|acct|1|{change.type}|" + event["triggered_at"]
        assert event["event_id"] == hashlib.sha256(text.encode()).hexdigest()
        assert event["kind"] == "account-change"
        assert event["plan"]["id"] == new.plan_id
        assert ("period" in event) == change.type.startswith("plan_")
        for part in (event["message"]["title"], event["message"]["body"]):
            assert part and "None" not in part and "{" not in part and "}" not in part
        suggestion = event["suggestion"]
        offered = offers and change.type in ("members_added", "region_changed")
        assert suggestion["action"] == ("offer" if offered else "none")
        assert ("offer" in suggestion) == offered


def test_event_id_is_the_sha256_of_the_contracts_text() -> None:
    text = "account-change|acct-42|plan_upgraded|2026-11-02T09:30:00Z"
    assert change_event_id("acct-42", "plan_upgraded", 1_793_611_800_000) == (
        hashlib.sha256(text.encode()).hexdigest()
    )
    # Milliseconds only when not zero, as everywhere in events.
    text = "account-change|acct-42|paused|2026-11-02T09:30:00.250Z"
    assert change_event_id("acct-42", "paused", 1_793_611_800_250) == (
        hashlib.sha256(text.encode()).hexdigest()
    )


def test_unknown_values_before_are_no_change_and_decreases_are_none() -> None:
    held = account(members=None, region=None)
    assert diff_accounts(held, account(members=3, region="CA"), CATALOG) == []
    assert diff_accounts(account(members=5, region="CA"), account(members=4), CATALOG) == []
    assert diff_accounts(account(region="CA"), account(region=" ca"), CATALOG) == []
    assert diff_accounts(account("retired"), account("scale"), CATALOG) == []


def test_a_record_changing_everything_yields_four_events_in_order() -> None:
    held = account("growth", "active", 2, "CA")
    new = account("starter", "paused", 4, "NY", updated_at_ms=T0 + HOUR)
    assert diff_accounts(held, new, CATALOG) == [
        AccountChange("plan_downgraded", "growth", "starter"),
        AccountChange("paused", "active", "paused"),
        AccountChange("members_added", 2, 4),
        AccountChange("region_changed", "CA", "NY"),
    ]
    events = events_of(held, new)
    assert [e["triggered_at"] for e in events] == ["2026-11-01T01:00:00Z"] * 4
    assert len({e["event_id"] for e in events}) == 4


def test_plan_change_messages_say_where_usage_stands() -> None:
    up = events_of(account("starter"), account("growth"), totals={"api_calls": Decimal(85_000)})
    [event] = up
    assert event["change"] == {"type": "plan_upgraded", "from": "starter", "to": "growth"}
    assert "85,000 of 100,000 API calls (85%)" in event["message"]["body"]
    assert "85%" in event["suggestion"]["rationale"]
    assert event["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}

    [down] = events_of(
        account("growth"),
        account("free"),
        totals={"api_calls": Decimal(1500), "storage_gb": Decimal("0.5")},
    )
    assert down["change"]["type"] == "plan_downgraded"
    assert "past its limits" in down["message"]["title"]
    body = down["message"]["body"]
    # Storage is a max metric in the shipped catalog: its period value is a peak.
    assert "1,500 of 1,000 API calls (150%), a peak of 0.5 of 1 GB of storage (50%)" in body
    assert "by 500 API calls" in body
    assert "December 1, 2026" in body

    [calm] = events_of(account("growth"), account("starter"), totals={"api_calls": Decimal(10)})
    assert "past" not in calm["message"]["body"]
    assert "fits within Starter's limits" in calm["suggestion"]["rationale"]
    [nothing] = events_of(account("growth"), account("starter"))
    assert "nothing used yet" in nothing["message"]["body"]


def test_an_account_override_is_the_limit_messages_use() -> None:
    new = account("starter", limits={"api_calls": Decimal(50_000)})
    [event] = events_of(account("free"), new, totals={"api_calls": Decimal(20_000)})
    assert "20,000 of 50,000 API calls (40%)" in event["message"]["body"]


def test_offers_come_from_the_catalog_else_none_with_a_rationale() -> None:
    held = account(members=3, region="CA")
    new = account(members=5, region="NY")
    members, region = events_of(held, new)
    assert members["suggestion"]["action"] == "offer"
    assert members["suggestion"]["offer"] == CATALOG.offers.members_added
    assert "2 members" in members["suggestion"]["rationale"]
    assert "family discount" in members["message"]["body"]
    assert region["suggestion"]["offer"] == "new services in your new area"
    assert "NY" in region["message"]["title"]
    for event in events_of(held, new, NO_OFFERS):
        assert event["suggestion"]["action"] == "none"
        assert "offer" not in event["suggestion"]
        assert event["suggestion"]["rationale"]


# Every template with every kind of plan: unlimited metrics (enterprise seats), no higher plan
# (enterprise), no lower plan and a zero price (free), no overage price (none in the catalog).
PAIRS = list(itertools.permutations(["free", "starter", "enterprise"], 2))
USAGES: list[dict[str, Decimal]] = [
    {},
    {"api_calls": Decimal(1)},
    {"api_calls": Decimal(900), "seats": Decimal(40)},
    {"api_calls": Decimal("123456.78"), "events": Decimal(10**7), "storage_gb": Decimal(0)},
]


@pytest.mark.parametrize(("old", "new"), PAIRS)
@pytest.mark.parametrize("totals", USAGES)
@pytest.mark.parametrize("catalog", [CATALOG, NO_OFFERS], ids=["offers", "no-offers"])
def test_every_template_renders_fully(
    old: str, new: str, totals: dict[str, Decimal], catalog: Catalog
) -> None:
    for status_from, status_to in itertools.permutations(STATUSES, 2):
        held = account(old, status_from, 1, "CA")
        now = account(new, status_to, 2, "NY", updated_at_ms=T0 + 1)
        events = events_of(held, now, catalog, totals)
        assert len(events) == 4
        for event in events:
            assert_valid(event)
            for part in (event["message"]["title"], event["message"]["body"]):
                assert part == part.strip() and part
                assert "None" not in part and "{" not in part and "}" not in part
                assert "  " not in part


def test_every_account_change_template_is_reached() -> None:
    reached = set()
    for totals in ({}, {"api_calls": Decimal(5000)}):
        for held, new in [
            (account("free", "active", 1, "CA"), account("growth", "paused", 2, "NY")),
            (account("growth", "paused"), account("free", "active")),
            (account("growth", "active"), account("free", "cancelled")),
        ]:
            for event in events_of(held, new, totals=totals):
                reached.add(event["change"]["type"])
                if "past its limits" in event["message"]["title"]:
                    reached.add("plan_past_limit")
    assert {k for t, k in TEMPLATES.messages if t == "account-change"} == reached
