"""Billing anniversaries: a tick starts a pass at a cut, slices of accounts finish it.

A tick carrying ``"cut"`` (sent by :mod:`agents.ticks` once partition p has consumed the
backlog it had when the cut became due) starts a pass in the anniversary-passes table, in the
tick's own step. The engine then runs :meth:`AnniversaryEvaluation.run_slice` as background
steps: each judges the next accounts of the partition (every account with a plan, usage or
not; see :func:`domain.moments.anniversary_pass.evaluate_anniversary`), sends their events, keeps
their summaries and moves the cursor, in one transaction. A crash resumes at the cursor; a
repeated tick finds its cut started or done and does nothing.

Most accounts of a pass have nothing due (their period did not end since the last pass), and
judging them costs a plan decode; announcing costs a totals read and an event. A slice stops
at whichever limit comes first, so it stays a short transaction either way.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson

from app.main import Runtime
from domain.moments.anniversary_pass import PassRules, evaluate_anniversary
from domain.wording.kinds import Kind
from engine.background import Sent, slice_keys
from engine.step import Step
from state.store import PartitionStore
from tables.accounts import ACCOUNTS, decode_plan
from tables.anniversaries import anniversary_of, put_anniversary
from tables.anniversary_passes import Pass, pass_of, put_pass
from tables.totals import totals_of

logger = logging.getLogger(__name__)

#: Accounts looked at per slice (a plan decode and a period each, ~10 us).
SLICE_ACCOUNTS = 5000
#: Anniversaries announced per slice (a totals read, a recap, an event and a write each).
SLICE_EVENTS = 500
#: Most seconds of rules per slice: a slice holds up its partition's usage (the engine runs
#: one step per partition at a time) and the worker's one core, so it ends early when its
#: time is up. Measured: slices of 5,000 accounts with no budget put the latency bench's
#: p99 at 610 ms; the cursor is kept in the same transaction, so where a slice ends changes
#: nothing but how many slices a pass takes.
SLICE_BUDGET_S = 0.02

KIND: Final[Kind] = "billing-anniversary"


def pass_rules(runtime: Runtime) -> PassRules:
    """The pass's rules: the settings' underuse level, else the catalog's."""
    level = runtime.settings.underuse_level
    return PassRules(runtime.catalog.underuse_level if level is None else level)


def tick_cuts(records: Sequence[Any]) -> list[int]:
    """The cuts of the ticks among ``records`` (ticks of drops only carry a day)."""
    cuts = []
    for record in records:
        try:
            cut = orjson.loads(record.value or b"").get("cut")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(cut, int):
            cuts.append(cut)
    return cuts


def start_pass(step: Step, records: Sequence[Any]) -> None:
    """Start a pass at the newest cut of ``records``, unless one at that cut already started.

    A pass still running at an older cut restarts from the first account at the new cut:
    accounts it judged already hold their summary and are not judged twice.
    """
    cuts = tick_cuts(records)
    if not cuts:
        return
    cut = max(cuts)
    held = pass_of(step.state, step.partition)
    if held is not None and held.cut_ms >= cut:
        return
    put_pass(step.state, step.partition, Pass(cut, "", None if held is None else held.done_ms))
    logger.info("partition %d: anniversary pass at cut %d started", step.partition, cut)


class AnniversaryEvaluation:
    """The engine's background work for anniversaries: slices of started passes."""

    def __init__(
        self,
        runtime: Runtime,
        slice_accounts: int = SLICE_ACCOUNTS,
        slice_events: int = SLICE_EVENTS,
        slice_budget_s: float = SLICE_BUDGET_S,
    ) -> None:
        self.runtime = runtime
        self.rules = pass_rules(runtime)
        self.slice_accounts = slice_accounts
        self.slice_events = slice_events
        self.slice_budget_s = slice_budget_s

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether the partition has a started, unfinished pass."""
        held = pass_of(store, partition)
        return held is not None and not held.complete

    def run_slice(self, step: Step) -> None:
        """Judge the next accounts after the cursor; complete the pass when none are left."""
        rt = self.runtime
        state = step.state
        held = pass_of(state, step.partition)
        if held is None or held.cursor is None:
            return
        started = time.perf_counter()

        def judge(account_id: str, value: bytes) -> list[Sent]:
            # Straight from the scan: the step's cache would keep every plan of the partition.
            plan = decode_plan(value)
            if plan is None:
                return []
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
            return [] if event is None else [(KIND, account_id.encode(), event)]

        done = slice_keys(
            step,
            ACCOUNTS.name,
            held.cursor,
            judge,
            rt.settings.event_topic,
            pass_name=f"the anniversary pass at cut {held.cut_ms}",
            max_keys=self.slice_accounts,
            budget_s=self.slice_budget_s,
            max_events=self.slice_events,
        )
        progress = (
            Pass(held.cut_ms, None, held.cut_ms)
            if done.exhausted
            else Pass(held.cut_ms, done.last, held.done_ms)
        )
        put_pass(state, step.partition, progress)
        logger.debug(
            "partition %d: anniversary slice of %d accounts (%d events) in %.3fs",
            step.partition,
            done.keys,
            sum(done.events.values()),
            time.perf_counter() - started,
        )
        if done.exhausted:
            logger.info(
                "partition %d: anniversary pass at cut %d complete", step.partition, held.cut_ms
            )
        step.on_commit(
            functools.partial(
                rt.metrics.count_background, done.events, done.skipped, "anniversaries"
            )
        )
