"""Timers: billing anniversaries and birthdays, visited when due (contract 3.5, 3.7).

A tick carrying ``"cut"`` (sent by :mod:`agents.ticks` once partition p has consumed the
backlog it had when something became due) starts a pass in the anniversary-passes table, in the
tick's own step. The engine then runs :meth:`AnniversaryEvaluation.run_slice` as background
steps, each one transaction with its events and the pass's cursor; a crash resumes at the
cursor, a repeated tick finds its cut started or done and does nothing.

The due index (:mod:`tables.due`). Each account has an anniversary timer at the end ``E`` of
its first billing period ending after the last complete cut (or at 0, due at once, when no
pass completed yet), and a birthday timer at the start of its next birthday's day. A pass at
cut ``c`` visits the anniversary timers due at or before ``c`` and the birthday timers due at or
before the tick's time, in key order (due order): each visit removes the timer, judges the
account (:func:`~domain.moments.anniversary_pass.evaluate_anniversary` at ``c``, which
judges nothing it judged before; :func:`~domain.moments.birthdays.evaluate_birthday`) and
schedules the next timer (the first end after ``c``; next year's birthday), in the slice's
step. So a tick costs what is due, not the partition's size, and a million accounts renewing on
the 1st are still sliced. Why a complete pass at ``c`` judged every period ending at or before
``c`` (what :func:`tables.anniversary_passes.keep_closed_after` relies on): every account with a
plan holds a timer at or before its first end after the last complete cut. The plans handler
schedules one when an account is new or its periods change (:func:`schedule_timers`), a visit
schedules the next one after its cut, and the one-time full pass below schedules every account.
Stale timers (periods or birth date changed since) judge nothing when visited and reschedule.
A timer the plans handler schedules behind the cursor of the pass running, due in it, marks the
pass for one more round from the start (``rerun``), instead of the pass scanning for such timers
over the tombstones of the entries it removed.

Stores without the index (new ones, and those of versions before it) first run one full pass:
every account of the accounts table, judged as before and given its timers; only when it
completes is the pass record marked ``indexed`` and later passes driven by the index. A store
restored from the changelogs gets its index back with the rest (the due table is changelogged).

An account whose judgement raises is skipped (its writes undone, logged, counted) and its timer
moved :data:`RETRY_MS` later, so it is retried without holding up the pass or looping.
A slice stops at whichever limit comes first (timers, events, time), so it stays a short
transaction; it also stops before an account it already visited (its two timers, say), so
undoing a failed visit undoes that visit only.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date
from itertools import chain
from typing import Any, Final

import orjson

from app.main import Runtime
from config.settings import to_ms
from domain.intake.accounts import AccountPlan
from domain.intake.birthdates import BirthDate, parse_birth_date
from domain.intake.regroup import periods_change
from domain.moments.anniversary_pass import PassRules, evaluate_anniversary
from domain.moments.birthdays import BirthdayRules, evaluate_birthday
from domain.plans.catalog import Catalog
from domain.rules.anniversaries import next_end
from domain.rules.birthdays import birthday_start_ms, next_birthday
from domain.wording.kinds import Kind
from engine.background import Sent, SliceOutcome, slice_keys
from engine.step import Step
from state import jsonbytes
from state.store import PartitionStore
from state.transaction import StepState
from tables.accounts import ACCOUNTS, decode_plan
from tables.anniversaries import anniversary_of, put_anniversary
from tables.anniversary_passes import Pass, pass_of, put_pass
from tables.birthdays import celebrated_of, put_celebrated
from tables.due import (
    ANNIVERSARY,
    BIRTHDAY,
    drop_due,
    due_entries,
    due_key,
    parse_key,
    put_due,
)
from tables.forget import forgotten_at
from tables.totals import totals_of

logger = logging.getLogger(__name__)

#: Accounts looked at per slice of a full pass (a plan decode and a period each, ~10 us).
SLICE_ACCOUNTS = 5000
#: Anniversaries announced per slice (a totals read, a recap, an event and a write each).
SLICE_EVENTS = 500
#: Most seconds of rules per slice: a slice holds up its partition's usage (the engine runs
#: one step per partition at a time) and the worker's one core, so it ends early when its
#: time is up. Measured: slices of 5,000 accounts with no budget put the latency bench's
#: p99 at 610 ms; the cursor is kept in the same transaction, so where a slice ends changes
#: nothing but how many slices a pass takes.
SLICE_BUDGET_S = 0.02
#: A timer whose visit raised is tried again this much later (one account must neither stop
#: a pass nor make it loop).
RETRY_MS: Final = 3_600_000

KIND: Final[Kind] = "billing-anniversary"
BIRTHDAY_KIND: Final[Kind] = "birthday"


def pass_rules(runtime: Runtime) -> PassRules:
    """The pass's rules: the settings' underuse level, else the catalog's."""
    level = runtime.settings.underuse_level
    return PassRules(runtime.catalog.underuse_level if level is None else level)


def tick_cuts(records: Sequence[Any]) -> list[tuple[int, int]]:
    """The ``(cut, at)`` of the ticks among ``records`` that start a pass (ticks of drops only
    carry a day); ``at`` is the cut in ticks of older versions."""
    cuts = []
    for record in records:
        try:
            data = orjson.loads(record.value or b"")
            cut, at = data.get("cut"), data.get("at", data.get("cut"))
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(cut, int) and isinstance(at, int):
            cuts.append((cut, at))
    return cuts


def start_pass(step: Step, records: Sequence[Any]) -> None:
    """Start a pass at the newest cut of ``records``, unless one at that cut already started.

    A pass still running at an older cut restarts from the first timer (or account) at the new
    cut: what it judged already is not judged twice.
    """
    cuts = tick_cuts(records)
    if not cuts:
        return
    cut, at = max(cuts)
    held = pass_of(step.state, step.partition)
    if held is not None and held.cut_ms >= cut:
        return
    done = None if held is None else held.done_ms
    indexed = held is not None and held.indexed
    period = None if held is None else held.period
    put_pass(step.state, step.partition, Pass(cut, "", done, indexed, max(at, cut), False, period))
    logger.info(
        "partition %d: %s pass at cut %d started",
        step.partition,
        "timer" if indexed else "anniversary (full)",
        cut,
    )


def schedule_timers(
    state: StepState,
    partition: int,
    held: AccountPlan | None,
    plan: AccountPlan,
    catalog: Catalog,
    now_ms: int,
) -> None:
    """The plans handler's hook: schedule ``plan``'s anniversary when the account is new or
    its periods changed, and its birthday when it has a birth date (``now_ms``: the record's
    arrival, at the latest now and at the earliest a day and the late grace ago; one arriving
    on the birthday makes it due now, even when handled after the day; a repeat of a timer
    held changes nothing)."""
    progress = pass_of(state, partition)
    indexed = progress is not None and progress.indexed_for(catalog.period)
    full_to_come = progress is None or (not indexed and progress.complete)
    if periods_change(held, plan) and progress is not None and not full_to_come:
        # The first end after the last complete cut of the index (every period up to it was
        # judged); while the full pass runs, after its cut (it judges the periods up to it of
        # the accounts it visits, as before the index). With no pass yet, or the full pass
        # still to come, nothing: that pass visits every account and schedules it.
        after = progress.cut_ms
        if indexed and progress.done_ms is not None:
            after = progress.done_ms
            if held is None and forgotten_at(state, plan.account_id) is not None:
                # Deleted and created again: what ended by the running pass's cut was the
                # deleted account's, maybe announced already in this pass (its last
                # anniversary went with it), so not judged again for the new one.
                after = progress.cut_ms
        key = due_key(ANNIVERSARY, next_end(plan, after, catalog), plan.account_id)
        put_due(state, key)
        _behind_cursor(state, partition, key)
    if plan.birth_date is not None:
        day = next_birthday(_birth(plan), now_ms)
        _behind_cursor(state, partition, _schedule_birthday(state, plan.account_id, day))


def _behind_cursor(state: StepState, partition: int, key: bytes) -> None:
    """A timer scheduled behind the cursor of the index pass running, and due in it: the pass
    does one more round when it reaches its end (rather than scanning for such timers over the
    removals it left behind, or the timer waiting for the next pass)."""
    progress = pass_of(state, partition)
    if progress is None or not progress.indexed or progress.cursor is None or progress.rerun:
        return
    kind, due, _ = parse_key(key)
    until = progress.cut_ms if kind == ANNIVERSARY else progress.birthdays_until_ms
    if due <= until and key <= progress.cursor.encode():
        put_pass(state, partition, replace(progress, rerun=True))


def _birth(plan: AccountPlan) -> BirthDate:
    return parse_birth_date(plan.birth_date)


def _schedule_birthday(state: StepState, account_id: str, day: date) -> bytes:
    """Schedule ``account_id``'s birthday of ``day``; returns the timer's key."""
    key = due_key(BIRTHDAY, birthday_start_ms(day), account_id)
    put_due(state, key, jsonbytes.dumps({"day": day.isoformat()}))
    return key


class AnniversaryEvaluation:
    """The engine's background work for timers: slices of started passes."""

    def __init__(
        self,
        runtime: Runtime,
        slice_accounts: int = SLICE_ACCOUNTS,
        slice_events: int = SLICE_EVENTS,
        slice_budget_s: float = SLICE_BUDGET_S,
    ) -> None:
        self.runtime = runtime
        self.rules = pass_rules(runtime)
        self.birthdays = BirthdayRules(to_ms(runtime.settings.late_grace_s))
        self.slice_accounts = slice_accounts
        self.slice_events = slice_events
        self.slice_budget_s = slice_budget_s

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether the partition has a started, unfinished pass."""
        held = pass_of(store, partition)
        return held is not None and not held.complete

    def run_slice(self, step: Step) -> None:
        """Visit the next timers (or accounts) after the cursor; complete the pass when none
        are left."""
        held = pass_of(step.state, step.partition)
        if held is None or held.cursor is None:
            return
        started = time.perf_counter()
        period = self.runtime.catalog.period
        if held.indexed and not held.indexed_for(period):
            # An index of another catalog period (or of unknown period): a full pass instead,
            # from the first account, which rebuilds it.
            held = replace(held, cursor="", indexed=False, rerun=False)
        if held.indexed:
            done, progress = self._index_slice(step, held)
        else:
            done = self._full_slice(step, held)
            progress = (
                Pass(held.cut_ms, None, held.cut_ms, True, held.at_ms, period=period)
                if done.exhausted
                else Pass(held.cut_ms, done.last, held.done_ms, False, held.at_ms)
            )
        put_pass(step.state, step.partition, progress)
        logger.debug(
            "partition %d: timer slice of %d (%d events) in %.3fs",
            step.partition,
            done.keys,
            sum(done.events.values()),
            time.perf_counter() - started,
        )
        if progress.complete:
            logger.info(
                "partition %d: anniversary pass at cut %d complete", step.partition, held.cut_ms
            )
        step.on_commit(
            functools.partial(
                self.runtime.metrics.count_background, done.events, done.skipped, "anniversaries"
            )
        )

    def _anniversary(
        self, step: Step, held: Pass, account_id: str, plan: AccountPlan
    ) -> list[Sent]:
        """Judge ``account_id``'s anniversary at the pass's cut and schedule the next one."""
        rt, state = self.runtime, step.state
        keep, event = evaluate_anniversary(
            account_id,
            plan,
            functools.partial(totals_of, state, account_id),
            functools.partial(anniversary_of, state, account_id),
            held.cut_ms,
            done_cut_ms=held.done_ms,
            rules=self.rules,
            catalog=rt.catalog,
            templates=rt.templates,
            now_ms=step.now_ms,
        )
        if keep is not None:
            put_anniversary(state, account_id, keep)
        put_due(state, due_key(ANNIVERSARY, next_end(plan, held.cut_ms, rt.catalog), account_id))
        return [] if event is None else [(KIND, account_id.encode(), event)]

    def _full_slice(self, step: Step, held: Pass) -> SliceOutcome:
        """A slice of the one-time full pass: the next accounts of the accounts table, each
        judged and given its timers."""
        cursor = held.cursor or ""

        def judge(account_id: str, value: bytes) -> list[Sent]:
            try:
                # Straight from the scan: the step's cache would keep every plan of the
                # partition.
                plan = decode_plan(value)
                if plan is None:
                    return []
                if plan.birth_date is not None:
                    day = next_birthday(_birth(plan), held.birthdays_until_ms)
                    _schedule_birthday(step.state, account_id, day)
                return self._anniversary(step, held, account_id, plan)
            except Exception:
                # Skipped by slice_keys (the account's writes undone): its anniversary timer
                # must still be written, as the index pass's retry is, or none of its
                # anniversaries would ever come again (this pass is the index's only source).
                retry_ms = held.cut_ms + RETRY_MS
                put_due(step.state, due_key(ANNIVERSARY, retry_ms, account_id))
                raise

        return slice_keys(
            step,
            ACCOUNTS.name,
            cursor,
            judge,
            self.runtime.send_event,
            pass_name=f"the anniversary pass at cut {held.cut_ms}",
            max_keys=self.slice_accounts,
            budget_s=self.slice_budget_s,
            max_events=self.slice_events,
        )

    def _entries(self, store: PartitionStore, held: Pass) -> Iterator[tuple[bytes, bytes]]:
        """The pass's due timers after its cursor: anniversaries, then birthdays."""
        after = (held.cursor or "").encode()
        return chain(
            due_entries(store, after, ANNIVERSARY, held.cut_ms),
            due_entries(store, after, BIRTHDAY, held.birthdays_until_ms),
        )

    def _index_slice(self, step: Step, held: Pass) -> tuple[SliceOutcome, Pass]:
        """A slice of an index-driven pass: the next due timers after the cursor."""
        state = step.state
        deadline = time.perf_counter() + self.slice_budget_s
        out = SliceOutcome()
        sent = 0
        visited: set[str] = set()
        for key, value in self._entries(state.store, held):
            kind, _, account_id = parse_key(key)
            if (
                out.keys >= self.slice_accounts
                or sent >= self.slice_events
                or account_id in visited
                or (out.keys and time.perf_counter() > deadline)
            ):
                out.exhausted = False
                break
            out.keys += 1
            visited.add(account_id)
            out.last = key.decode()
            drop_due(state, key)
            try:
                messages = self._visit(step, held, kind, account_id, value)
            except Exception as exc:  # noqa: BLE001 - one account must not stop the pass
                state.discard_key(account_id.encode())
                state.discard_key(key)
                drop_due(state, key)
                until = held.cut_ms if kind == ANNIVERSARY else held.birthdays_until_ms
                retry_ms = until + RETRY_MS
                put_due(state, due_key(kind, retry_ms, account_id), value)
                out.skipped += 1
                logger.error(
                    "partition %d: account %r skipped by the timer pass at cut %d "
                    "(tried again at %d): %r",
                    step.partition,
                    account_id,
                    held.cut_ms,
                    retry_ms,
                    exc,
                )
                continue
            for message_kind, message_key, payload in messages:
                self.runtime.send_event(step, message_kind, message_key, payload)
                out.events[message_kind] = out.events.get(message_kind, 0) + 1
                sent += 1
        if not out.exhausted:
            return out, replace(held, cursor=out.last)
        if held.rerun:
            # Timers were scheduled behind the cursor while the pass ran: another round.
            return out, replace(held, cursor="", rerun=False)
        return out, replace(held, cursor=None, done_ms=held.cut_ms)

    def _visit(
        self, step: Step, held: Pass, kind: str, account_id: str, value: bytes
    ) -> list[Sent]:
        """Visit one due timer (already removed); returns the events to send."""
        state = step.state
        plan = decode_plan(state.get(ACCOUNTS.name, account_id.encode()))
        if plan is None:
            return []  # the account was deleted: its timers go
        if kind == ANNIVERSARY:
            return self._anniversary(step, held, account_id, plan)
        day = date.fromisoformat(orjson.loads(value)["day"])
        rt = self.runtime
        judged = evaluate_birthday(
            account_id,
            plan,
            day,
            functools.partial(celebrated_of, state, account_id),
            held.birthdays_until_ms,
            rules=self.birthdays,
            catalog=rt.catalog,
            templates=rt.templates,
            now_ms=step.now_ms,
        )
        if judged.next_day is not None:
            _schedule_birthday(state, account_id, judged.next_day)
        if judged.event is None:
            return []
        put_celebrated(state, account_id, day)
        return [(BIRTHDAY_KIND, account_id.encode(), judged.event)]
