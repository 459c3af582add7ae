"""One account whose rules raise is skipped by a drop evaluation or an anniversary pass
(issue 16, item 6): logged, counted, its writes undone, and the pass goes on past it to
its end, instead of failing every slice (the partition's background then suspended, its
drops and anniversaries stopped and its closed-period totals kept for ever).

Real handlers and slices on a real RocksDB store (the harness of test_reliability).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agents.anniversaries
import agents.drops
from agents.anniversaries import AnniversaryEvaluation
from agents.drops import DropEvaluation
from domain.common.timeutil import DAY_MS
from domain.moments.detection import Moment
from engine.step import Step
from state.transaction import StepState
from tables.anniversaries import anniversary_of
from tables.anniversary_passes import pass_of
from tables.daily import DAILY
from tables.evaluations import Evaluation, evaluation_of, put_evaluation
from tests.functional.test_anniversaries import ANCHOR, ms, run_pass, tick
from tests.functional.test_reliability import NOW_MS, Harness, plan, usage

UNBOUNDED = float("inf")
SKIPPED = "moments_background_accounts_skipped_total"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, ms("2026-11-10T12:00:00Z"))
    yield harness
    harness.store.close()


def test_an_anniversary_pass_skips_an_account_whose_rules_raise_and_completes(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    accounts = [f"acct-{i}" for i in range(5)]
    for account in accounts:
        h.plan(account.encode(), plan(account, billing_anchor=ANCHOR))
    h.now_ms = ms("2026-11-16T12:00:00Z")
    tick(h)
    real = agents.anniversaries.put_anniversary

    def put_anniversary(state: StepState, account_id: str, keep: Any) -> None:
        real(state, account_id, keep)  # a write, then the failure: it must be undone
        if account_id == "acct-2":
            raise ValueError("a bug in the rules")

    monkeypatch.setattr(agents.anniversaries, "put_anniversary", put_anniversary)
    work = AnniversaryEvaluation(h.runtime, slice_accounts=2, slice_budget_s=UNBOUNDED)
    events = run_pass(h, work)

    assert sorted(e["account_id"] for e in events) == [a for a in accounts if a != "acct-2"]
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.complete
    assert anniversary_of(h.store, "acct-2") is None
    assert anniversary_of(h.store, "acct-3") is not None
    assert h.counter(SKIPPED, work="anniversaries") == 1
    assert "account 'acct-2' skipped by the anniversary pass" in caplog.text


def test_a_drop_evaluation_skips_an_account_whose_rules_raise_and_ends(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h.now_ms = NOW_MS
    for account in ("a", "b", "c"):
        h.plan(account.encode(), plan(account))
        h.usage(usage(account, 5))
    real = agents.drops.put_daily

    def put_daily(state: StepState, account_id: str, days: Any, *, keep: bool = False) -> None:
        real(state, account_id, days, keep=keep)  # the sweep deletes it; then the failure
        if account_id == "b":
            raise ValueError("a bug in the rules")

    monkeypatch.setattr(agents.drops, "put_daily", put_daily)
    before = dict(h.store.items(DAILY.name, None))
    # 60 days on: the sweep prunes every account's daily history, past its retention.
    later = NOW_MS + 60 * DAY_MS
    start = Step(0, StepState(h.store), later)
    put_evaluation(start.state, 0, Evaluation(later // DAY_MS - 1, ""))
    h.store.apply(start.state.updates())
    work = DropEvaluation(h.runtime, slice_accounts=1, slice_budget_s=UNBOUNDED)
    for _ in range(10):
        if not work.pending(h.store, 0):
            break
        step = Step(0, StepState(h.store), later)
        work.run_slice(step)
        h.store.apply(step.state.updates())
        for callback in step.after_commit:
            callback()
    held = evaluation_of(h.store, 0)
    assert held is not None and held.done
    after = dict(h.store.items(DAILY.name, None))
    assert after[b"b"] == before[b"b"]  # its write undone
    assert after[b"a"] != before[b"a"] and after[b"c"] != before[b"c"]  # theirs made
    assert h.counter(SKIPPED, work="drops") == 1
    assert "account 'b' skipped by the drop evaluation" in caplog.text


def test_a_drop_event_that_cannot_be_encoded_fails_the_slice_as_before_the_walker(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of the shared walker (engine.background.slice_keys): before it, a slice
    encoded an account's events after its judgement, outside the per-account ``try``, so
    an event orjson refuses failed the slice (the engine then suspends the partition's
    background), it did not skip the account as a rule raising does."""
    h.now_ms = NOW_MS
    for account in ("a", "b"):
        h.plan(account.encode(), plan(account))
        h.usage(usage(account, 5))
    later = NOW_MS + DAY_MS
    start = Step(0, StepState(h.store), later)
    put_evaluation(start.state, 0, Evaluation(later // DAY_MS - 1, ""))
    h.store.apply(start.state.updates())

    def judged(self: Any, step: Step, day: int, account_id: str, *args: Any) -> list[Moment]:
        return [Moment("usage-drop", account_id, {"too_big": 2**70}, step.now_ms)]

    monkeypatch.setattr(DropEvaluation, "_account", judged)
    work = DropEvaluation(h.runtime, slice_accounts=10, slice_budget_s=UNBOUNDED)
    with pytest.raises(TypeError):
        work.run_slice(Step(0, StepState(h.store), later))
    assert h.counter(SKIPPED, work="drops") == 0
