"""Overage levels (contract 3.1) and usage recovery (3.3) through the real handlers and the
drop evaluation, against a real RocksDB store (the harness of test_reliability)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from agents.drops import DropEvaluation
from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.plans.periods import day_start_ms, utc_day
from domain.wording.events import drop_event_id, recovered_event_id
from engine.step import Step
from state.transaction import StepState
from tables.daily import daily_of
from tables.evaluations import Evaluation, put_evaluation
from tests.functional.test_reliability import NOW_MS, Harness, plan, usage
from tests.schema import assert_valid

#: A slice time budget no test machine reaches: these tests are about what one slice does.
UNBOUNDED = float("inf")

TODAY = utc_day(NOW_MS)  # 2026-11-20


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, NOW_MS)
    yield harness
    harness.store.close()


def evaluate(h: Harness, day: int) -> Step:
    """Close ``day`` and run its drop evaluation (one slice holds every account here)."""
    now_ms = day_start_ms(day + 1) + DAY_MS // 24
    start = Step(0, StepState(h.store), now_ms)
    put_evaluation(start.state, 0, Evaluation(day, ""))
    h.store.apply(start.state.updates())
    step = Step(0, StepState(h.store), now_ms)
    DropEvaluation(h.runtime, slice_budget_s=UNBOUNDED).run_slice(step)
    h.store.apply(step.state.updates())
    for callback in step.after_commit:
        callback()
    return step


def history(h: Harness, account: str, days: range, per_day: int) -> None:
    h.usage(*(usage(account, per_day, at_ms=day_start_ms(d) + DAY_MS // 2) for d in days))


def valid(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for event in events:
        assert_valid(event)
    return events


def test_overage_levels_are_hits_with_the_overage_block_and_the_limit_time(h: Harness) -> None:
    h.plan(b"a", plan("a"))  # starter: 10,000 API calls, over levels 1.5 and 2.0, $0.002
    [near] = valid(h.events(h.usage(usage("a", 9000, at_ms=NOW_MS - 3000)), "threshold-near"))
    assert near["level"] == 0.8
    reached_ms = NOW_MS - 2000
    step = h.usage(usage("a", 7000, at_ms=reached_ms))
    [hit] = valid(h.events(step, "threshold-hit"))
    assert (hit["level"], hit["crossed_levels"]) == (1.5, [1.0, 1.5])
    assert hit["overage"] == {
        "units": 6000,
        "unit_price": 0.002,
        "cost": 12,
        "projected_cost": hit["overage"]["projected_cost"],
    }
    projected = hit["projection"]["period_total"]
    assert hit["overage"]["projected_cost"] == pytest.approx((projected - 10_000) * 0.002)
    assert hit["projection"]["limit_reached_at"] == to_rfc3339(reached_ms)
    assert h.usage(usage("a", 500, at_ms=NOW_MS - 1000)).messages == {}  # 165%: nothing
    [again] = valid(h.events(h.usage(usage("a", 3500)), "threshold-hit"))
    assert (again["level"], again["crossed_levels"]) == (2.0, [2.0])
    assert again["projection"]["limit_reached_at"] == to_rfc3339(reached_ms)
    assert h.counter("moments_events_total", kind="threshold-hit") == 2


def test_a_plan_without_an_overage_price_announces_overage_without_money(h: Harness) -> None:
    h.plan(b"f", plan("f", "free"))  # free: 1,000 API calls, no overage price
    [hit] = valid(h.events(h.usage(usage("f", 2500)), "threshold-hit"))
    assert (hit["level"], hit["crossed_levels"]) == (2.0, [0.5, 0.8, 1.0, 1.5, 2.0])
    assert "overage" not in hit
    assert hit["message"]["title"] == "You're 150% past your 1,000 API calls"
    assert "of overage" not in hit["message"]["body"]
    assert "Your allotment starts afresh on December 1, 2026." in hit["message"]["body"]


def test_a_drop_then_a_recovery_each_once_and_resume_when_paused(h: Harness) -> None:
    baseline = range(TODAY - 31, TODAY - 3)  # then silent from TODAY - 3
    for account in ("a", "p", "quiet"):
        h.plan(account.encode(), plan(account))
        history(h, account, baseline, 1000)
    # "quiet" was paused before its drop: the drop is not sent, so neither is a recovery.
    h.plan(b"quiet", plan("quiet", status="paused", updated="2026-11-02T00:00:00Z"))
    drops = valid(h.events(evaluate(h, TODAY - 1), "sudden-drop"))
    assert sorted(e["account_id"] for e in drops) == ["a", "p"]
    assert daily_of(h.store, "quiet").episode("api_calls").announced is False
    h.plan(b"p", plan("p", status="paused", updated="2026-11-20T00:00:00Z"))
    assert evaluate(h, TODAY).messages == {}  # still silent
    # Usage is back: a day's usual three times over, on the day after today.
    h.now_ms = day_start_ms(TODAY + 1) + 2000
    for account in ("a", "p", "quiet"):
        h.usage(usage(account, 3000, at_ms=day_start_ms(TODAY + 1) + 1000))
    step = evaluate(h, TODAY + 1)
    recovered = valid(h.events(step, "usage-recovered"))
    assert h.events(step, "sudden-drop") == []
    by_account = {e["account_id"]: e for e in recovered}
    assert sorted(by_account) == ["a", "p"]
    dropped_on = date.fromisoformat("2026-11-17")
    for account, event in by_account.items():
        assert event["event_id"] == recovered_event_id(account, "api_calls", dropped_on)
        assert event["drop"]["drop_event_id"] == drop_event_id(account, "api_calls", dropped_on)
        assert event["drop"]["dropped_on"] == "2026-11-17"
        assert event["drop"]["ratio"] == 1
    assert by_account["a"]["suggestion"]["action"] == "none"
    assert by_account["p"]["suggestion"]["action"] == "resume"
    assert h.counter("moments_events_total", kind="usage-recovered") == 2
    assert h.counter("moments_events_total", kind="sudden-drop") == 2
    # Later days repeat nothing: every episode is closed.
    assert evaluate(h, TODAY + 2).messages == {}
    assert daily_of(h.store, "quiet").episodes == {}
