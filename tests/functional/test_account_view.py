"""``GET /accounts/{id}``'s view (:func:`web.views.account_view`) of what the real handlers,
the drop evaluation and the anniversary pass stored in a real RocksDB store: lifetime totals and
milestones, open drop episodes with their drop event's id, and the last anniversary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.common.timeutil import to_rfc3339
from domain.plans.periods import utc_day
from state.transaction import StepState
from tables.totals import put_totals, totals_of
from tests.functional.test_anniversaries import ANCHOR, ms, run_pass, tick
from tests.functional.test_overage_recovery import evaluate, history
from tests.functional.test_reliability import NOW_MS, Harness, plan, usage
from tests.schema import assert_valid
from web.views import account_view

TODAY = utc_day(NOW_MS)  # 2026-11-20


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, NOW_MS)
    yield harness
    harness.store.close()


def view(h: Harness, account: str) -> dict[str, object]:
    found = account_view(h.store, 0, h.runtime.catalog, account)
    assert found is not None
    return found


def test_lifetime_milestones_and_open_drops_with_their_event_id(h: Harness) -> None:
    for account in ("a", "quiet"):
        h.plan(account.encode(), plan(account))
        history(h, account, range(TODAY - 31, TODAY - 3), 1000)  # 28,000 API calls, then none
    h.usage(usage("a", 12, metric="purchases", at_ms=NOW_MS - 1000))  # the 10th purchase
    h.plan(b"quiet", plan("quiet", status="paused", updated="2026-11-02T00:00:00Z"))
    [drop] = h.events(evaluate(h, TODAY - 1), "sudden-drop")
    assert_valid(drop)

    a = view(h, "a")
    assert a["lifetime"] == {
        "api_calls": {"total": 28_000, "milestones_reached": [10_000]},
        "purchases": {"total": 12, "milestones_reached": [10]},
    }
    drops = a["drops"]
    assert isinstance(drops, dict)
    assert drops["open_episodes"] == {
        "api_calls": {"since": "2026-11-17", "announced": True, "drop_event_id": drop["event_id"]}
    }
    assert drop["account_id"] == "a"
    assert a["last_anniversary"] is None
    # A drop of a paused account opens its episode without an event: no id to cancel.
    quiet = view(h, "quiet")
    assert quiet["drops"]["open_episodes"] == {  # type: ignore[index]
        "api_calls": {"since": "2026-11-17", "announced": False, "drop_event_id": None}
    }
    assert quiet["lifetime"] == {"api_calls": {"total": 28_000, "milestones_reached": [10_000]}}
    assert account_view(h.store, 0, h.runtime.catalog, "nobody") is None


def test_the_last_anniversary_is_the_one_announced(tmp_path: Path) -> None:
    h = Harness(tmp_path, ms("2026-11-10T12:00:00Z"))
    try:
        h.plan(b"a", plan("a", billing_anchor=ANCHOR))
        h.usage(usage("a", 10_000, at_ms=ms("2026-11-10T08:00:00Z")))
        tick(h)
        assert run_pass(h) == []
        assert view(h, "a")["last_anniversary"] is None
        h.now_ms = ms("2026-11-16T12:00:00Z")
        tick(h)
        [event] = run_pass(h)
        assert view(h, "a")["last_anniversary"] == {
            "period": event["period"],
            "periods_completed": event["recap"]["anniversary"]["periods_completed"],
            "years": event["recap"]["anniversary"]["years"],
            "reached": ["api_calls"],
            "underused": False,
        }
        assert event["period"] == {"start": ANCHOR, "end": "2026-11-15T09:30:00Z"}
        assert event["recap"]["anniversary"]["periods_completed"] == 1

        # A plan without an anchor counts from the origin the pass keeps: two periods later,
        # on calendar months, the third one is announced.
        h.plan(b"b", plan("b"))
        h.usage(usage("b", 5, at_ms=ms("2026-11-16T11:00:00Z")))
        for now in ("2026-12-01T02:00:00Z", "2027-01-01T02:00:00Z"):
            h.now_ms = ms(now)
            tick(h)
            [event] = [e for e in run_pass(h) if e["account_id"] == "b"]
        last = view(h, "b")["last_anniversary"]
        assert last == {
            "period": {"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
            "periods_completed": event["recap"]["anniversary"]["periods_completed"],
            "years": None,
            "reached": [],
            "underused": True,
        }
    finally:
        h.store.close()


def test_gauges_show_their_aggregation_and_the_reading_they_carry(h: Harness) -> None:
    """A `latest` metric with no reading in the periods held still stands at its last reading
    (contract 1.4): the view says how each metric aggregates and what a gauge carries."""
    h.plan(b"a", plan("a"))
    h.usage(usage("a", 4, metric="seats"), usage("a", 40, metric="storage_gb"))
    totals = totals_of(h.store, "a")
    totals.prune(NOW_MS + 40 * 86_400_000)  # as if the period had closed: seats carry 4
    state = StepState(h.store)
    put_totals(state, "a", totals)
    h.store.apply(state.updates())

    a = view(h, "a")
    assert a["aggregations"] == {"seats": "latest", "storage_gb": "max"}
    assert a["carried_readings"] == {"seats": {"value": 4.0, "read_at": to_rfc3339(NOW_MS)}}
    assert a["period_totals"] == {}
