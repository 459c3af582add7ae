"""Account changes (contract 3.6) through the real PlansHandler on a real RocksDB store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tables.accounts import plan_of
from tests.functional.test_reliability import NOW_MS, Harness, plan, usage
from tests.schema import assert_valid

KIND = "account-change"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, NOW_MS)
    yield harness
    harness.store.close()


def changes(h: Harness, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """The account-change events of one plan record, schema-checked."""
    events = h.events(h.plan(*args, **kwargs), KIND)
    for event in events:
        assert_valid(event)
    return events


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return [(e["change"]["type"], e["change"]["from"], e["change"]["to"]) for e in events]


def test_a_plans_life_of_changes(h: Harness) -> None:
    # The first record of an account: nothing.
    assert changes(h, b"a", plan("a", "starter", "2026-11-01T00:00:00Z", members=1)) == []
    h.usage(usage("a", 85_000))  # 85% of Growth's 100,000 API calls

    # An upgrade that leaves usage past 80% of the new limits.
    [up] = changes(h, b"a", plan("a", "growth", "2026-11-02T00:00:00Z", members=1))
    assert kinds([up]) == [("plan_upgraded", "starter", "growth")]
    assert up["triggered_at"] == "2026-11-02T00:00:00Z"
    assert "85,000 of 100,000 API calls (85%)" in up["message"]["body"]
    assert "85% of Growth's 100,000 API calls" in up["suggestion"]["rationale"]

    # The same record again, and a newer one with the same content: nothing.
    assert changes(h, b"a", plan("a", "growth", "2026-11-02T00:00:00Z", members=1)) == []
    assert changes(h, b"a", plan("a", "growth", "2026-11-02T06:00:00Z", members=1)) == []
    # An older record (ignored by 1.2): nothing, and the plan stays.
    assert changes(h, b"a", plan("a", "free", "2026-11-01T12:00:00Z")) == []
    held = plan_of(h.store, "a")
    assert held is not None and held.plan_id == "growth"

    # A downgrade past the new limit: the message warns.
    [down] = changes(h, b"a", plan("a", "starter", "2026-11-03T00:00:00Z", members=1))
    assert kinds([down]) == [("plan_downgraded", "growth", "starter")]
    assert "already past its limits" in down["message"]["title"]
    assert "by 75,000 API calls" in down["message"]["body"]

    # Pause, resume, cancel: changes of accounts that are not active too.
    day = "2026-11-0{}T00:00:00Z"
    [paused] = changes(h, b"a", plan("a", "starter", day.format(4), status="paused", members=1))
    [resumed] = changes(h, b"a", plan("a", "starter", day.format(5), members=1))
    [cancelled] = changes(
        h, b"a", plan("a", "starter", day.format(6), status="cancelled", members=1)
    )
    assert kinds([paused, resumed, cancelled]) == [
        ("paused", "active", "paused"),
        ("resumed", "paused", "active"),
        ("cancelled", "active", "cancelled"),
    ]
    # Members +2 on a cancelled account: an offer.
    [members] = changes(h, b"a", plan("a", "starter", day.format(7), status="cancelled", members=3))
    assert kinds([members]) == [("members_added", 1, 3)]
    assert members["suggestion"]["action"] == "offer"
    assert "family discount" in members["suggestion"]["offer"]
    # A region appears (unknown before): nothing; then it changes: an offer.
    region = {"status": "cancelled", "members": 3}
    assert changes(h, b"a", plan("a", "starter", day.format(8), region="CA", **region)) == []
    [moved] = changes(h, b"a", plan("a", "starter", day.format(9), region="NY", **region))
    assert kinds([moved]) == [("region_changed", "CA", "NY")]
    assert moved["suggestion"]["offer"] == "new services in your new area"

    # A tombstone, then the account's first record again: nothing.
    step = h.plan(b"a", None, timestamp=NOW_MS - 1000)
    assert h.events(step, KIND) == []
    assert changes(h, b"a", plan("a", "scale", "2026-11-20T12:00:00Z", members=9)) == []

    assert h.counter("moments_events_total", kind=KIND) == 7


def test_a_record_changing_everything_yields_each_change_in_order(h: Harness) -> None:
    h.plan(b"b", plan("b", "growth", members=2, region="CA"))
    events = changes(
        h,
        b"b",
        plan("b", "free", "2026-11-05T00:00:00Z", status="paused", members=4, region="NY"),
    )
    assert kinds(events) == [
        ("plan_downgraded", "growth", "free"),
        ("paused", "active", "paused"),
        ("members_added", 2, 4),
        ("region_changed", "CA", "NY"),
    ]
    assert len({e["event_id"] for e in events}) == 4
    assert {e["triggered_at"] for e in events} == {"2026-11-05T00:00:00Z"}
    # Several records in one step: each is judged against the one before it.
    step = h._run(
        h.plans_handler,
        h.settings.topic_accounts,
        [
            h._record(b"b", plan("b", "free", "2026-11-06T00:00:00Z", members=4, region="NY")),
            h._record(b"b", plan("b", "free", "2026-11-06T00:00:00Z", members=4, region="NY")),
            h._record(b"b", plan("b", "starter", "2026-11-07T00:00:00Z", members=4, region="NY")),
        ],
    )
    assert kinds(h.events(step, KIND)) == [
        ("resumed", "paused", "active"),
        ("plan_upgraded", "free", "starter"),
    ]
    assert h.counter("moments_events_total", kind=KIND) == 6
