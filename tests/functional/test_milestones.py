"""Milestones (contract 3.4) through the real handlers against a real RocksDB store.

The shipped catalog: purchases at 10, 50, 100, 500 and 1,000; API calls at 10,000 and up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.common.timeutil import DAY_MS
from tables.lifetime import lifetime_of
from tables.totals import totals_of
from tests.functional.test_reliability import NOW_MS, Harness, plan, usage
from tests.schema import assert_valid


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, NOW_MS)
    yield harness
    harness.store.close()


def purchases(account: str, quantity: int) -> dict[str, object]:
    return usage(account, quantity, metric="purchases")


def milestones(h: Harness, step: object) -> list[tuple[float, list[float], float]]:
    events = h.events(step, "milestone")  # type: ignore[arg-type]
    for event in events:
        assert_valid(event)
    return [
        (
            e["milestone"]["value"],
            e["milestone"]["reached"],
            e["milestone"]["lifetime_total"],
        )
        for e in events
    ]


def test_milestones_are_announced_once_each_and_kept_in_the_store(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    assert milestones(h, h.usage(purchases("a", 9))) == []
    assert milestones(h, h.usage(purchases("a", 1), purchases("a", 1))) == [(10, [10], 10)]
    assert lifetime_of(h.store, "a").announced == {"purchases": (10,)}
    assert milestones(h, h.usage(purchases("a", 100))) == [(100, [50, 100], 111)]
    assert milestones(h, h.usage(purchases("a", 1))) == []
    assert lifetime_of(h.store, "a").total("purchases") == 112
    assert h.counter("moments_events_total", kind="milestone") == 2


def test_usage_before_the_plan_counts_and_the_next_record_announces(h: Harness) -> None:
    assert milestones(h, h.usage(purchases("a", 60))) == []  # plan unknown
    h.plan(b"a", plan("a", status="paused"))
    assert milestones(h, h.usage(purchases("a", 40))) == []  # not active
    h.plan(b"a", plan("a", updated="2026-11-02T00:00:00Z"))
    step = h.usage(purchases("a", 0))
    assert milestones(h, step) == [(100, [10, 50, 100], 100)]
    [event] = h.events(step, "milestone")
    assert event["event_id"] == hashlib.sha256(b"milestone|a|purchases|100").hexdigest()
    assert event["message"]["title"] == "Congratulations on your 100th purchase!"
    assert event["suggestion"]["offer"] == "15% off your next order"
    # The period total: only this period's usage, under the plan now known.
    assert event["usage"]["total"] == 100
    assert event["usage"]["limit"] is None


def test_an_api_calls_milestone_comes_with_the_threshold_hit(h: Harness) -> None:
    h.plan(b"a", plan("a"))  # Starter: 10,000 API calls a month
    step = h.usage(usage("a", 10_000))
    assert [e["level"] for e in h.events(step, "threshold-hit")] == [1.0]
    assert milestones(h, step) == [(10_000, [10_000], 10_000)]
    [event] = h.events(step, "milestone")
    assert event["usage"] == {"total": 10_000, "limit": 10_000, "ratio": 1, "unit": "API calls"}
    assert event["message"]["title"] == "Congratulations on your 10,000th API call!"


def test_a_tombstone_forgets_the_lifetime_and_a_recreated_account_starts_afresh(
    h: Harness,
) -> None:
    h.plan(b"a", plan("a"))
    assert milestones(h, h.usage(purchases("a", 10))) == [(10, [10], 10)]
    h.plan(b"a", None, timestamp=NOW_MS - 1000)
    assert lifetime_of(h.store, "a").is_empty()
    h.plan(b"a", plan("a", updated="2026-11-25T00:00:00Z"))
    assert milestones(h, h.usage(purchases("a", 9))) == []  # 9, not 19
    assert milestones(h, h.usage(purchases("a", 1))) == [(10, [10], 10)]


def test_a_record_making_the_lifetime_total_inexact_is_dead_lettered(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    # Late (October): in the lifetime total only, so only the lifetime check can refuse.
    h.usage(usage("a", 2**53, at_ms=NOW_MS - 30 * DAY_MS, metric="purchases"))
    step = h.usage(purchases("a", 1))  # a lifetime of 2**53 + 1: no double holds it
    [letter] = h.dead_letters(step, h.settings.topic_usage_dlq)
    assert "lifetime total of purchases" in letter["error"]
    assert lifetime_of(h.store, "a").total("purchases") == 2**53
    assert totals_of(h.store, "a").periods == {}  # the period fold was undone
    assert h.counter("moments_records_total", outcome="invalid") == 1
