"""Review of the timers (issue 19): cases that lose or repeat a timer, on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agents.anniversaries import AnniversaryEvaluation
from domain.plans.catalog import Birthdays
from engine.step import Step
from state.transaction import StepState
from tables.accounts import plan_of
from tables.anniversary_passes import Pass, pass_of
from tables.due import BIRTHDAY
from tests.functional.test_anniversaries import KIND, ms, run_pass
from tests.functional.test_reliability import Harness, plan, usage
from tests.functional.test_timers import due_now, tick, timers
from tests.schema import assert_valid


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, ms("2026-11-10T12:00:00Z"))
    yield harness
    harness.store.close()


def test_an_account_skipped_by_the_full_pass_keeps_its_timers(h: Harness) -> None:
    # The one-time full pass builds the index. An account whose judgement raises there is
    # skipped (its writes undone): it must still get a timer (as the index pass's retry
    # does), else no anniversary or birthday of it ever comes again.
    h.plan(b"bad", plan("bad", billing_anchor="2026-10-15T09:30:00Z", birth_date="--11-20"))
    h.plan(b"good", plan("good", billing_anchor="2026-10-15T09:30:00Z"))
    work = AnniversaryEvaluation(h.runtime)
    original = work._anniversary
    broken = True

    def flaky(step: Step, held: Pass, account_id: str, plan: Any) -> Any:
        if broken and account_id == "bad":
            raise RuntimeError("boom")
        return original(step, held, account_id, plan)

    work._anniversary = flaky  # type: ignore[method-assign]
    assert due_now(h)
    tick(h)
    run_pass(h, work)
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.complete and progress.indexed
    broken = False  # fixed (a new version deployed, say)
    # The next periods end Nov 15 09:30: both accounts are due, and bad's birthday on Nov 20.
    h.now_ms = ms("2026-11-15T10:31:00Z")
    assert due_now(h)
    tick(h)
    assert sorted(e["account_id"] for e in run_pass(h, work)) == ["bad", "good"]
    h.now_ms = ms("2026-11-20T00:00:30Z")
    assert due_now(h)
    tick(h)
    assert [e["account_id"] for e in run_pass(h, work, kinds=("birthday",))] == ["bad"]
    assert [t for t in timers(h) if t[2] == "bad"]


def test_a_plan_record_that_arrived_on_the_birthday_is_celebrated_when_handled_after_midnight(
    h: Harness,
) -> None:
    # Contract 3.7: the birthday comes within a minute of the plan record's arrival when it
    # comes during the day, and is caught up after downtime. A record that arrived at
    # 23:59:59.900 on the birthday and is handled 200 ms later (after midnight), or one that
    # arrived at noon while the worker was down until 00:30, must still be celebrated.
    h.plan(b"x", plan("x"))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-21T00:00:00.100Z")
    h.plan(b"a", plan("a", birth_date="--11-20"), timestamp=ms("2026-11-20T23:59:59.900Z"))
    h.now_ms = ms("2026-11-21T00:30:00Z")
    h.plan(b"b", plan("b", birth_date="1990-11-20"), timestamp=ms("2026-11-20T12:00:00Z"))
    assert due_now(h)
    tick(h)
    events = run_pass(h, kinds=("birthday",))
    assert sorted((e["account_id"], e["birthday"]["day"]) for e in events) == [
        ("a", "2026-11-20"),
        ("b", "2026-11-20"),
    ]


def test_a_new_account_on_an_idle_partition_gets_no_recap_without_its_totals(h: Harness) -> None:
    # The partition's last pass completed Nov 10; nothing is due there until Dec 1, so its
    # done cut stays at Nov 10. Usage of "new" comes before its plan (calendar months), then
    # its plan on Nov 15 12:00 with an anchor whose period ended Nov 15 09:30 (final at
    # 10:30, before the plan arrived). Regrouping keeps only the periods that still accept
    # records, so that period's totals are gone: it must not be announced with a recap of
    # nothing (before the index, a pass at the next hourly cut passed it over).
    h.plan(b"x", plan("x"))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-12T10:00:00Z")
    h.usage(usage("new", 700, at_ms=ms("2026-11-12T09:00:00Z")))
    h.now_ms = ms("2026-11-15T12:00:00Z")
    h.plan(
        b"new",
        plan("new", billing_anchor="2026-10-15T09:30:00Z", updated="2026-11-15T12:00:00Z"),
    )
    if due_now(h):
        tick(h)
    for event in run_pass(h):
        [recap] = [m for m in event["recap"]["metrics"] if m["metric"] == "api_calls"]
        assert recap["total"] == 700, event["recap"]


def test_an_anchor_change_on_an_idle_partition_keeps_the_totals_it_announces(
    h: Harness,
) -> None:
    # Calendar months (due Dec 1); the last pass completed Nov 10. On Nov 12 the anchor
    # moves to Oct 11: the period Oct 11 - Nov 11 is closed and, the partition's done cut
    # being older, announced; its recap must hold the usage of Nov 5, not nothing.
    h.plan(b"a", plan("a"))
    h.usage(usage("a", 700, at_ms=ms("2026-11-05T09:00:00Z")))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-12T12:00:00Z")
    h.plan(b"a", plan("a", billing_anchor="2026-10-11T00:00:00Z", updated="2026-11-12T12:00:00Z"))
    events = []
    for now in ("2026-11-12T12:00:05Z", "2026-12-01T01:00:05Z", "2026-12-11T01:00:05Z"):
        h.now_ms = ms(now)
        if due_now(h):
            tick(h)
            events += run_pass(h)
    for event in events:
        [recap] = [m for m in event["recap"]["metrics"] if m["metric"] == "api_calls"]
        if event["period"]["end"] == "2026-11-11T00:00:00Z":
            assert recap["total"] == 700, event["period"]


def test_a_birth_date_after_the_birthday_gives_a_valid_event(h: Harness) -> None:
    # A birth_date in the future (a typo: 2062 for 1962) is a real date and accepted; with
    # show_age the event must still match its schema (age >= 0), not say "-36th birthday".
    catalog = h.runtime.catalog
    object.__setattr__(h.runtime, "catalog", replace(catalog, birthday=Birthdays(show_age=True)))
    h.plan(b"x", plan("x"))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-20T00:00:30Z")
    h.plan(b"a", plan("a", birth_date="2062-11-20", updated="2026-11-19T00:00:00Z"))
    tick(h)
    for event in run_pass(h, kinds=("birthday",)):
        assert_valid(event)
        assert "-" not in event["message"]["title"]


def test_a_catalog_whose_period_changed_announces_on_the_new_periods(h: Harness) -> None:
    # Monthly periods: the index holds a's next end, Nov 15 09:30. The operator restarts with
    # `period = "week"` (contract 1.3): a's weeks (from its Thursday anchor) end Nov 12
    # 09:30, Nov 19, ... Before the index every pass judged every account under the catalog
    # of the day; the index must not wait for an end the periods no longer have.
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T09:30:00Z"))
    tick(h)
    run_pass(h)
    catalog = h.runtime.catalog
    object.__setattr__(h.runtime, "catalog", replace(catalog, period="week"))
    h.now_ms = ms("2026-11-12T10:31:00Z")
    if due_now(h):
        tick(h)
    ends = [e["period"]["end"] for e in run_pass(h)]
    assert ends == ["2026-11-12T09:30:00Z"]


def test_an_account_deleted_and_recreated_mid_pass_is_not_announced_twice(h: Harness) -> None:
    # A pass at the 1st (calendar months) visits "a" first and announces its November. Then,
    # while the pass goes on, "a" is deleted and created again: its new timer (the first end
    # after the last complete cut: Dec 1) is behind the cursor, and the pass's extra round
    # announces November again, with the deleted account's totals gone (a recap of nothing).
    for account in ("a", "b", "c", "d"):
        h.plan(account.encode(), plan(account))
    h.usage(usage("a", 700, at_ms=ms("2026-11-10T09:00:00Z")))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-12-01T01:00:05Z")
    tick(h)
    work = AnniversaryEvaluation(h.runtime, slice_accounts=2, slice_budget_s=float("inf"))
    step = Step(0, StepState(h.store), h.now_ms)
    work.run_slice(step)
    h.store.apply(step.state.updates())
    first = h.events(step, KIND)
    assert [e["account_id"] for e in first] == ["a", "b"]
    h.plan(b"a", None, timestamp=ms("2026-12-01T01:00:00Z"))
    h.plan(b"a", plan("a", updated="2026-12-01T01:00:01Z"))
    assert plan_of(h.store, "a") is not None
    rest = run_pass(h, work)
    assert sorted(e["account_id"] for e in first + rest) == ["a", "b", "c", "d"]


def test_a_late_handled_birthday_is_due_even_after_a_pass_of_the_next_day(h: Harness) -> None:
    # As above, but a pass ran at 00:00:05 (another account's birthday) before the record
    # that arrived at 23:59:59.900 on a's birthday is handled: its timer (Nov 20) is before
    # the day that pass ran on, and must still make the partition due.
    h.plan(b"x", plan("x", birth_date="--11-21"))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-21T00:00:05Z")
    tick(h)
    assert [e["account_id"] for e in run_pass(h, kinds=("birthday",))] == ["x"]
    h.now_ms = ms("2026-11-21T00:00:06Z")
    h.plan(b"a", plan("a", birth_date="--11-20"), timestamp=ms("2026-11-20T23:59:59.900Z"))
    h.now_ms = ms("2026-11-21T00:00:30Z")
    assert due_now(h)
    tick(h)
    assert [e["birthday"]["day"] for e in run_pass(h, kinds=("birthday",))] == ["2026-11-20"]


# Checked and sound (kept as regression tests) ----------------------------------------------


def birthday_days(h: Harness) -> list[str]:
    return [e["birthday"]["day"] for e in run_pass(h, kinds=("birthday",))]


def test_a_paused_account_resumed_on_its_birthday_is_celebrated_once(h: Harness) -> None:
    h.plan(b"a", plan("a", birth_date="--11-20", status="paused"))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-20T00:00:30Z")
    tick(h)
    assert birthday_days(h) == []  # paused: no greeting
    h.now_ms = ms("2026-11-20T15:00:00Z")
    h.plan(b"a", plan("a", birth_date="--11-20", updated="2026-11-20T15:00:00Z"))
    assert due_now(h)
    tick(h)
    assert birthday_days(h) == ["2026-11-20"]
    h.now_ms = ms("2026-11-20T16:00:00Z")
    h.plan(b"a", plan("a", birth_date="--11-20", status="paused", updated="2026-11-20T16:00:00Z"))
    h.plan(b"a", plan("a", birth_date="--11-20", updated="2026-11-20T16:00:01Z"))
    tick(h)
    assert birthday_days(h) == []  # once a year


def test_feb_29_in_a_leap_year_and_birthdays_across_the_year_end(tmp_path: Path) -> None:
    h = Harness(tmp_path, ms("2027-12-30T12:00:00Z"))
    try:
        h.plan(b"leap", plan("leap", birth_date="--02-29", updated="2027-12-01T00:00:00Z"))
        h.plan(b"eve", plan("eve", birth_date="--12-31", updated="2027-12-01T00:00:00Z"))
        h.plan(b"new", plan("new", birth_date="--01-01", updated="2027-12-01T00:00:00Z"))
        tick(h)
        run_pass(h)
        assert (BIRTHDAY, ms("2028-02-29T00:00:00Z"), "leap") in timers(h)
        for now, days in (
            ("2027-12-31T00:00:10Z", ["2027-12-31"]),
            ("2028-01-01T00:00:10Z", ["2028-01-01"]),
            ("2028-02-28T23:59:00Z", []),
            ("2028-02-29T00:00:10Z", ["2028-02-29"]),
        ):
            h.now_ms = ms(now)
            tick(h)
            assert birthday_days(h) == days, now
        assert (BIRTHDAY, ms("2029-02-28T00:00:00Z"), "leap") in timers(h)
    finally:
        h.store.close()


def test_a_paused_accounts_anniversary_timer_carries_on(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T09:30:00Z", status="paused"))
    tick(h)
    run_pass(h)
    h.now_ms = ms("2026-11-15T10:31:00Z")
    tick(h)
    assert run_pass(h) == []  # judged, not announced
    h.now_ms = ms("2026-11-20T10:31:00Z")
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T09:30:00Z", updated="2026-11-20T00:00:00Z"))
    h.now_ms = ms("2026-12-15T10:31:00Z")
    assert due_now(h)
    tick(h)
    assert [e["period"]["end"] for e in run_pass(h)] == ["2026-12-15T09:30:00Z"]
