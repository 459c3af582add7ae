"""Billing anniversaries through the real handlers and background slices on a real RocksDB
store: ticks start passes, slices announce, usage steps keep closed periods until then."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.anniversaries import AnniversaryEvaluation
from agents.ticks import TicksHandlers
from domain.rules.anniversaries import due_cut
from engine.background import Backgrounds
from engine.step import Step
from state.transaction import StepState
from tables.anniversaries import anniversary_of
from tables.anniversary_passes import pass_of
from tables.totals import totals_of
from tests.functional.test_reliability import Harness, plan, usage
from tests.schema import assert_valid

#: A slice time budget no test machine reaches: these tests are about what one slice does.
UNBOUNDED = float("inf")

ANCHOR = "2026-10-15T09:30:00Z"
KIND = "billing-anniversary"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, ms("2026-11-10T12:00:00Z"))
    yield harness
    harness.store.close()


def tick(h: Harness) -> None:
    """The tick the scheduler sends once the partition caught up at ``h.now_ms``."""
    cut = due_cut(h.now_ms, int(h.settings.late_grace_s * 1000))
    value = {"day": h.now_ms // 86_400_000 - 1, "cut": cut}
    h._run(TicksHandlers(), h.settings.topic_ticks, [h._record(b"tick", value)])


def run_pass(
    h: Harness, work: Any = None, kinds: tuple[str, ...] = (KIND,)
) -> list[dict[str, Any]]:
    """Background slices until none is pending, as the engine runs them; their events of
    ``kinds``."""
    work = work or AnniversaryEvaluation(h.runtime)
    events: list[dict[str, Any]] = []
    for _ in range(200):
        if not work.pending(h.store, 0):
            return events
        step = Step(0, StepState(h.store), h.now_ms)
        work.run_slice(step)
        h.store.apply(step.state.updates())
        for callback in step.after_commit:
            callback()
        for kind in kinds:
            events += h.events(step, kind)
    raise AssertionError("the pass never completed")


def test_closed_totals_wait_for_their_anniversary_and_late_records_change_nothing(
    h: Harness,
) -> None:
    h.plan(b"a", plan("a", billing_anchor=ANCHOR))
    h.usage(usage("a", 10_000, at_ms=ms("2026-11-10T08:00:00Z")))  # reaches the limit
    tick(h)
    assert run_pass(h) == []  # the first period is still open

    # Nov 16: the period ended Nov 15 09:30 and is final. Before the pass runs, records come
    # in: one of the new period (its step prunes what no longer accepts records) and a late
    # one of the closed period.
    h.now_ms = ms("2026-11-16T12:00:00Z")
    h.usage(usage("a", 5, at_ms=ms("2026-11-16T11:00:00Z")))
    h.usage(usage("a", 700, at_ms=ms("2026-11-14T11:00:00Z")))
    assert h.counter("moments_records_total", outcome="late") == 1
    closed = (ms(ANCHOR), ms("2026-11-15T09:30:00Z"))
    assert totals_of(h.store, "a").periods["api_calls"][closed] == 10_000  # kept for the recap

    tick(h)
    [event] = run_pass(h)
    assert_valid(event)
    assert event["period"] == {"start": ANCHOR, "end": "2026-11-15T09:30:00Z"}
    api = next(m for m in event["recap"]["metrics"] if m["metric"] == "api_calls")
    assert (api["total"], api["limit"], api["ratio"]) == (10_000, 10_000, 1)
    assert event["suggestion"]["action"] == "upgrade"  # first period: on its own
    assert event["suggestion"]["plan_id"] == "growth"
    assert h.counter("moments_events_total", kind=KIND) == 1
    held = anniversary_of(h.store, "a")
    assert held is not None and held.summary.reached == frozenset({"api_calls"})

    # Announced: the next usage step forgets the closed period; the same tick again, or the
    # next hour's, announces nothing more.
    h.usage(usage("a", 5, at_ms=ms("2026-11-16T11:30:00Z")))
    assert closed not in totals_of(h.store, "a").periods["api_calls"]
    tick(h)
    assert run_pass(h) == []
    h.now_ms += 3_600_000
    tick(h)
    assert run_pass(h) == []

    # A month on, the limit reached again: two periods in a row, so upgrade again; at the
    # limit in one of two only would have been "none".
    h.now_ms = ms("2026-12-01T12:00:00Z")
    h.usage(usage("a", 10_000, at_ms=ms("2026-12-01T00:00:00Z")))
    h.now_ms = ms("2026-12-15T12:00:00Z")
    tick(h)
    [second] = run_pass(h)
    assert second["recap"]["anniversary"] == {"periods_completed": 2, "years": None}
    assert second["suggestion"]["action"] == "upgrade"
    assert "this month and the one before" in second["suggestion"]["rationale"]


def test_a_pass_in_slices_judges_every_account_once_and_resumes_at_its_cursor(
    h: Harness,
) -> None:
    accounts = [f"acct-{i}" for i in range(7)]
    for account in accounts:
        h.plan(account.encode(), plan(account, billing_anchor=ANCHOR))
    h.plan(b"paused", plan("paused", billing_anchor=ANCHOR, status="paused"))
    h.plan(b"unknown-plan", plan("unknown-plan", "no-such-plan", billing_anchor=ANCHOR))
    h.usage(usage("no-plan", 5))  # usage without a plan: no anniversary
    h.now_ms = ms("2026-11-16T12:00:00Z")
    tick(h)
    work = AnniversaryEvaluation(h.runtime, slice_accounts=3, slice_budget_s=UNBOUNDED)

    # A slice whose transaction never commits (a crash) changes nothing: the pass resumes.
    lost = Step(0, StepState(h.store), h.now_ms)
    work.run_slice(lost)
    assert len(h.events(lost, KIND)) == 3
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.cursor == ""

    events = run_pass(h, work)
    assert sorted(e["account_id"] for e in events) == accounts
    assert len({e["event_id"] for e in events}) == len(accounts)
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.complete and progress.done_ms == progress.cut_ms
    assert anniversary_of(h.store, "paused") is not None  # judged, without an event
    assert anniversary_of(h.store, "no-plan") is None
    tick(h)
    assert run_pass(h, work) == []


def test_the_engine_background_serves_drops_and_anniversaries(h: Harness) -> None:
    from agents.drops import DropEvaluation

    h.plan(b"a", plan("a", billing_anchor=ANCHOR))
    h.now_ms = ms("2026-11-16T12:00:00Z")
    tick(h)  # starts both the day's drop evaluation and the cut's anniversary pass
    both = Backgrounds(DropEvaluation(h.runtime), AnniversaryEvaluation(h.runtime))
    assert both.pending(h.store, 0)
    events = run_pass(h, both)
    assert [e["account_id"] for e in events] == ["a"]
    assert not both.pending(h.store, 0)


def test_the_underuse_level_setting_overrides_the_catalogs(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor=ANCHOR))
    h.usage(usage("a", 2000, at_ms=ms("2026-11-10T08:00:00Z")))  # 20% of 10,000
    h.now_ms = ms("2026-11-16T12:00:00Z")
    object.__setattr__(h.runtime.settings, "underuse_level", Decimal("0.1"))
    tick(h)
    [event] = run_pass(h)
    assert event["suggestion"]["action"] == "none"  # 20% is above 10%

    h.plan(b"b", plan("b", billing_anchor=ANCHOR))
    object.__setattr__(h.runtime.settings, "underuse_level", None)  # the catalog's 0.3
    h.now_ms = ms("2026-12-16T12:00:00Z")
    tick(h)
    by_account = {e["account_id"]: e for e in run_pass(h)}
    assert by_account["b"]["suggestion"]["action"] == "downgrade"
    assert orjson.loads(orjson.dumps(by_account["b"])) == by_account["b"]


def test_a_slice_ends_when_its_time_is_up_and_the_pass_still_judges_everyone_once(
    h: Harness,
) -> None:
    # Slices hold up their partition's usage: with no time at all, each judges one
    # account (at least one, so a pass always progresses), and the pass is the same.
    accounts = [f"acct-{i}" for i in range(5)]
    for account in accounts:
        h.plan(account.encode(), plan(account, billing_anchor=ANCHOR))
    h.now_ms = ms("2026-11-16T12:00:00Z")
    tick(h)
    work = AnniversaryEvaluation(h.runtime, slice_budget_s=0.0)
    step = Step(0, StepState(h.store), h.now_ms)
    work.run_slice(step)
    h.store.apply(step.state.updates())
    assert len(h.events(step, KIND)) == 1
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.cursor == accounts[0]
    events = run_pass(h, work)
    assert sorted(e["account_id"] for e in events) == accounts[1:]
