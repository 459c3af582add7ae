"""Timers through the due index (issue 19): the real handlers, background slices and scheduler
decision on a real RocksDB store. A pass visits only the accounts due, a period ending at an
odd second is due at its end plus the grace (not at the next whole hour), stores without the
index run one full pass first, birthdays come once a year."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from agents.anniversaries import RETRY_MS, AnniversaryEvaluation
from agents.ticks import TickScheduler, TicksHandlers, pass_due
from domain.plans.catalog import Birthdays, Offers
from domain.rules.anniversaries import due_cut
from engine.step import Step
from state.transaction import StepState
from tables.anniversary_passes import Pass, pass_of, put_pass
from tables.birthdays import celebrated_of
from tables.due import ANNIVERSARY, BIRTHDAY, DUE, parse_key
from tests.functional.test_account_view import view
from tests.functional.test_anniversaries import KIND, UNBOUNDED, ms, run_pass
from tests.functional.test_reliability import Harness, plan
from tests.schema import assert_valid

GRACE_MS = 3_600_000


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, ms("2026-11-10T12:00:00Z"))
    yield harness
    harness.store.close()


def due_now(h: Harness) -> bool:
    """The scheduler's decision at ``h.now_ms``: does the partition need a timer pass?"""
    cut = due_cut(h.now_ms, GRACE_MS)
    return pass_due(h.store, pass_of(h.store, 0), cut, h.now_ms, h.runtime.catalog.period)


def tick(h: Harness) -> None:
    """The tick the scheduler sends once the partition caught up at ``h.now_ms``."""
    cut = due_cut(h.now_ms, GRACE_MS)
    value = {"day": h.now_ms // 86_400_000 - 1, "cut": cut, "at": h.now_ms}
    h._run(TicksHandlers(), h.settings.topic_ticks, [h._record(b"tick", value)])


def timers(h: Harness) -> list[tuple[str, int, str]]:
    return [parse_key(key) for key, _ in h.store.items(DUE.name)]


def settle(h: Harness) -> None:
    """The first (full) pass, which builds the index."""
    assert due_now(h)
    tick(h)
    run_pass(h)
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.complete and progress.indexed


def test_a_period_ending_at_an_odd_second_is_due_at_its_end_plus_the_grace(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T23:40:37Z"))
    h.plan(b"b", plan("b", billing_anchor="2026-10-20T08:00:00Z"))
    settle(h)
    end = ms("2026-11-15T23:40:37Z")
    assert (ANNIVERSARY, end, "a") in timers(h)
    assert (ANNIVERSARY, ms("2026-11-20T08:00:00Z"), "b") in timers(h)

    h.now_ms = end + GRACE_MS  # a record of the period is still on time: not due
    assert not due_now(h)
    h.now_ms = end + GRACE_MS + 3_000  # three seconds later: due, not at the next hour
    assert due_now(h)
    tick(h)
    [event] = run_pass(h)
    assert_valid(event)
    assert event["account_id"] == "a"
    assert event["period"]["end"] == "2026-11-15T23:40:37Z"
    # Visited and rescheduled at its next end; b untouched.
    assert (ANNIVERSARY, end, "a") not in timers(h)
    assert (ANNIVERSARY, ms("2026-12-15T23:40:37Z"), "a") in timers(h)
    assert (ANNIVERSARY, ms("2026-11-20T08:00:00Z"), "b") in timers(h)
    assert not due_now(h)  # nothing more due: no tick
    h.now_ms += 60_000
    assert not due_now(h)


def test_an_index_pass_visits_only_the_accounts_due(h: Harness) -> None:
    for i in range(30):
        h.plan(
            f"acct-{i:02d}".encode(), plan(f"acct-{i:02d}", billing_anchor="2026-10-20T08:00:00Z")
        )
    h.plan(b"due", plan("due", billing_anchor="2026-10-15T09:30:00Z"))
    settle(h)
    h.now_ms = ms("2026-11-15T10:31:00Z")
    tick(h)
    visited: list[str] = []
    work = AnniversaryEvaluation(h.runtime)
    original = work._visit

    def spy(step: Step, held: Pass, kind: str, account_id: str, value: bytes) -> Any:
        visited.append(account_id)
        return original(step, held, kind, account_id, value)

    work._visit = spy  # type: ignore[method-assign]
    [event] = run_pass(h, work)
    assert event["account_id"] == "due"
    assert visited == ["due"]


def test_a_store_without_the_index_runs_one_full_pass_first(h: Harness) -> None:
    # A store of a version before the index: accounts, a complete pass, no timers.
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T09:30:00Z"))
    h.store.delete_many(DUE.name, [k for k, _ in h.store.items(DUE.name)])
    step = Step(0, StepState(h.store), h.now_ms)
    cut = due_cut(h.now_ms, GRACE_MS)
    put_pass(step.state, 0, Pass(cut - 3_600_000, None, cut - 3_600_000))
    h.store.apply(step.state.updates())
    assert timers(h) == []
    h.now_ms += 60_000
    assert due_now(h)  # never built its index
    tick(h)
    progress = pass_of(h.store, 0)
    assert progress is not None and not progress.indexed
    assert run_pass(h) == []
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.complete and progress.indexed
    assert timers(h) == [(ANNIVERSARY, ms("2026-11-15T09:30:00Z"), "a")]
    h.now_ms = ms("2026-11-15T10:30:01Z")
    assert due_now(h)
    tick(h)
    assert [e["account_id"] for e in run_pass(h)] == ["a"]


def test_a_million_due_on_the_1st_are_sliced_and_timers_behind_the_cursor_are_not_lost(
    h: Harness,
) -> None:
    accounts = [f"acct-{i}" for i in range(12)]
    for account in accounts:
        h.plan(account.encode(), plan(account))  # calendar months: all end on Dec 1
    settle(h)
    h.now_ms = ms("2026-12-01T01:00:05Z")
    tick(h)
    work = AnniversaryEvaluation(h.runtime, slice_accounts=5, slice_budget_s=UNBOUNDED)
    step = Step(0, StepState(h.store), h.now_ms)
    work.run_slice(step)
    h.store.apply(step.state.updates())
    first = h.events(step, KIND)
    assert len(first) == 5
    progress = pass_of(h.store, 0)
    assert progress is not None and not progress.complete
    # A new account arrives mid-pass; its timer (due at once) sorts before the cursor. Its
    # plan record was produced before its period ended (handled late), so the period counts.
    h.plan(
        b"aaa-new",
        plan("aaa-new", billing_anchor="2026-10-01T00:00:00Z"),
        timestamp=ms("2026-11-30T23:00:00Z"),
    )
    rest = run_pass(h, work)
    names = sorted(e["account_id"] for e in first + rest)
    assert names == sorted([*accounts, "aaa-new"])
    assert len({e["event_id"] for e in first + rest}) == len(names)
    progress = pass_of(h.store, 0)
    assert progress is not None and progress.complete and progress.done_ms == progress.cut_ms
    assert not due_now(h)


def test_an_account_whose_judgement_raises_is_retried_later_without_looping(
    h: Harness,
) -> None:
    h.plan(b"bad", plan("bad", billing_anchor="2026-10-15T09:30:00Z"))
    h.plan(b"good", plan("good", billing_anchor="2026-10-15T09:30:00Z"))
    settle(h)
    h.now_ms = ms("2026-11-15T10:31:00Z")
    tick(h)
    work = AnniversaryEvaluation(h.runtime)
    original = work._anniversary

    def broken(step: Step, held: Pass, account_id: str, plan: Any) -> Any:
        if account_id == "bad":
            raise RuntimeError("boom")
        return original(step, held, account_id, plan)

    work._anniversary = broken  # type: ignore[method-assign]
    assert [e["account_id"] for e in run_pass(h, work)] == ["good"]
    assert h.counter("moments_background_accounts_skipped_total", work="anniversaries") == 1
    retry = [t for t in timers(h) if t[2] == "bad"]
    assert retry == [(ANNIVERSARY, due_cut(h.now_ms, GRACE_MS) + RETRY_MS, "bad")]
    assert not due_now(h)
    h.now_ms += RETRY_MS + 1
    assert due_now(h)
    tick(h)
    # Fixed meanwhile: visited again. As before the index, the period the failed pass
    # completed past is not judged any more (its totals may be gone), so nothing now; the
    # timer is back at its next end, and the next period is announced.
    assert run_pass(h) == []
    assert [t for t in timers(h) if t[2] == "bad"] == [
        (ANNIVERSARY, ms("2026-12-15T09:30:00Z"), "bad")
    ]
    h.now_ms = ms("2026-12-15T10:31:00Z")
    tick(h)
    assert sorted(e["account_id"] for e in run_pass(h)) == ["bad", "good"]


def test_a_deleted_accounts_timers_go_when_visited(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T09:30:00Z", birth_date="--11-20"))
    settle(h)
    h.plan(b"a", None)
    h.now_ms = ms("2026-11-20T00:00:30Z")
    tick(h)
    assert run_pass(h, kinds=(KIND, "birthday")) == []
    assert timers(h) == []


# Birthdays ---------------------------------------------------------------------------------


def birthdays(h: Harness) -> list[dict[str, Any]]:
    return run_pass(h, kinds=("birthday",))


def test_a_birthday_comes_once_at_the_days_start_and_next_year_is_scheduled(h: Harness) -> None:
    catalog = h.runtime.catalog  # without the shipped birthday offer: suggestion none
    object.__setattr__(
        h.runtime, "catalog", replace(catalog, offers=replace(catalog.offers, birthday=None))
    )
    h.plan(b"a", plan("a", birth_date="1990-11-20"))
    settle(h)
    assert (BIRTHDAY, ms("2026-11-20T00:00:00Z"), "a") in timers(h)
    h.now_ms = ms("2026-11-19T23:59:59Z")
    assert not due_now(h)
    h.now_ms = ms("2026-11-20T00:00:20Z")
    assert due_now(h)
    tick(h)
    [event] = birthdays(h)
    assert_valid(event)
    assert event["birthday"] == {"day": "2026-11-20"}  # no age unless show_age
    assert event["suggestion"]["action"] == "none"
    assert event["triggered_at"] == "2026-11-20T00:00:00Z"
    assert celebrated_of(h.store, "a") is not None
    shown = view(h, "a")  # the guarded account view shows it like the plan record's fields
    assert shown["last_birthday"] == "2026-11-20"
    assert shown["plan"]["birth_date"] == "1990-11-20"  # type: ignore[index]
    assert (BIRTHDAY, ms("2027-11-20T00:00:00Z"), "a") in timers(h)
    # The same plan again during the day: due now, but once a year.
    h.now_ms += 3_600_000
    h.plan(b"a", plan("a", birth_date="1990-11-20", updated="2026-11-20T00:00:00Z"))
    assert due_now(h)
    tick(h)
    assert birthdays(h) == []
    assert not due_now(h)


def test_a_plan_arriving_on_the_birthday_makes_it_due_now_with_age_and_offer(
    h: Harness,
) -> None:
    catalog = h.runtime.catalog
    object.__setattr__(
        h.runtime,
        "catalog",
        replace(catalog, birthday=Birthdays(show_age=True), offers=Offers(birthday="a free month")),
    )
    settle(h)
    h.now_ms = ms("2026-11-10T15:00:00Z")
    h.plan(b"a", plan("a", birth_date="1996-11-10"))
    h.plan(b"b", plan("b", birth_date="--11-10"))
    h.plan(b"paused", plan("paused", birth_date="--11-10", status="paused"))
    assert due_now(h)
    tick(h)
    by_account = {e["account_id"]: e for e in birthdays(h)}
    assert set(by_account) == {"a", "b"}  # inactive: no event
    assert by_account["a"]["birthday"] == {"day": "2026-11-10", "age": 30}
    assert "30th" in by_account["a"]["message"]["title"]
    assert by_account["b"]["birthday"] == {"day": "2026-11-10"}  # year unknown: no age
    assert by_account["a"]["suggestion"]["action"] == "offer"
    assert by_account["a"]["suggestion"]["offer"] == "a free month"
    for event in by_account.values():
        assert_valid(event)
    assert (BIRTHDAY, ms("2027-11-10T00:00:00Z"), "paused") in timers(h)


def test_a_birthday_is_caught_up_after_downtime_but_never_long_past(h: Harness) -> None:
    h.plan(b"soon", plan("soon", birth_date="--11-12"))
    h.plan(b"old", plan("old", birth_date="--11-11"))
    settle(h)
    # Down until Nov 13 00:30: Nov 12 ended 30 min ago (within a day plus the grace), Nov 11
    # ended a day and 30 min ago (within too); at 01:00:01 Nov 11 would be long past.
    h.now_ms = ms("2026-11-13T00:30:00Z")
    tick(h)
    assert sorted(e["account_id"] for e in birthdays(h)) == ["old", "soon"]

    h.plan(b"late", plan("late", birth_date="--11-14"))
    h.now_ms = ms("2026-11-16T01:00:01Z")  # Nov 14's end + 1 h + 1 day + 1 s: long past
    tick(h)
    assert birthdays(h) == []
    assert (BIRTHDAY, ms("2027-11-14T00:00:00Z"), "late") in timers(h)


def test_feb_29_is_celebrated_on_feb_28_in_common_years(tmp_path: Path) -> None:
    h = Harness(tmp_path, ms("2027-02-27T12:00:00Z"))
    try:
        h.plan(b"leap", plan("leap", birth_date="2000-02-29", updated="2027-01-01T00:00:00Z"))
        settle(h)
        assert (BIRTHDAY, ms("2027-02-28T00:00:00Z"), "leap") in timers(h)
        h.now_ms = ms("2027-02-28T00:00:10Z")
        tick(h)
        [event] = birthdays(h)
        assert event["birthday"]["day"] == "2027-02-28"
        assert (BIRTHDAY, ms("2028-02-29T00:00:00Z"), "leap") in timers(h)
    finally:
        h.store.close()


def test_a_changed_birth_date_leaves_a_stale_timer_that_celebrates_nothing(h: Harness) -> None:
    h.plan(b"a", plan("a", birth_date="--11-11"))
    h.plan(b"a", plan("a", birth_date="--12-01", updated="2026-11-02T00:00:00Z"))
    settle(h)
    h.now_ms = ms("2026-11-11T00:01:00Z")
    tick(h)
    assert birthdays(h) == []
    assert [t for t in timers(h) if t[0] == BIRTHDAY] == [
        (BIRTHDAY, ms("2026-12-01T00:00:00Z"), "a")
    ]


def test_an_invalid_birth_date_is_left_out_and_counted(h: Harness) -> None:
    for bad in ("2026-02-29", "--02-30", "1990-13-01", "yesterday", 19900101):
        h.plan(b"a", plan("a", birth_date=bad))
    assert h.counter("moments_plan_entries_left_out_total", field="birth_date") == 5
    assert [t for t in timers(h) if t[0] == BIRTHDAY] == []
    h.plan(b"a", plan("a", birth_date="--02-29"))
    assert [t for t in timers(h) if t[0] == BIRTHDAY] == [
        (BIRTHDAY, ms("2027-02-28T00:00:00Z"), "a")
    ]


# The scheduler's decision ------------------------------------------------------------------


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> None:
        self.sent.append(orjson.loads(value))


def _scheduler(h: Harness) -> tuple[TickScheduler, _Producer]:
    producer = _Producer()

    class Engine:
        owned = {0: SimpleNamespace(store=h.store, ready=True, plans_caught_up=True)}
        reader = None

        async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
            return {tp: 0 for tp in tps}

        async def caught_up(self, tp: Any, target: int) -> bool:
            return True

    engine = Engine()
    engine.reader = engine  # type: ignore[assignment]
    runtime = SimpleNamespace(
        settings=h.settings,
        catalog=h.runtime.catalog,
        clock=SimpleNamespace(now_ms=lambda: h.now_ms),
        app=SimpleNamespace(producer=producer),
    )
    return TickScheduler(runtime, engine), producer  # type: ignore[arg-type]


async def test_the_scheduler_ticks_once_for_what_is_due_and_not_at_all_for_nothing(
    h: Harness,
) -> None:
    h.plan(b"a", plan("a", billing_anchor="2026-10-15T23:40:37Z"))
    scheduler, producer = _scheduler(h)
    await scheduler.check()
    [first] = producer.sent  # the full pass that builds the index, and the closed day
    assert first["cut"] == due_cut(h.now_ms, GRACE_MS) and first["at"] == h.now_ms
    h._run(TicksHandlers(), h.settings.topic_ticks, [h._record(b"tick", first)])
    run_pass(h)
    for _ in range(3):  # nothing due: no tick, however often it checks
        h.now_ms += 5_000
        await scheduler.check()
    assert len(producer.sent) == 1

    h.now_ms = ms("2026-11-16T00:40:38Z")  # a second after the period became final
    await scheduler.check()
    h.now_ms += 5_000
    await scheduler.check()  # not started yet: no second tick (the resend waits a minute)
    [_, due] = producer.sent
    assert due["cut"] == due_cut(ms("2026-11-16T00:40:38Z"), GRACE_MS)
    h._run(TicksHandlers(), h.settings.topic_ticks, [h._record(b"tick", due)])
    [event] = run_pass(h)
    assert event["period"]["end"] == "2026-11-15T23:40:37Z"
    h.now_ms += 5_000
    await scheduler.check()
    assert len(producer.sent) == 2  # done: nothing more to tick for
