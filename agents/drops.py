"""Drop evaluation: a tick starts it, slices of accounts finish it.

A tick (a record of the co-partitioned ticks topic, sent by ``agents.ticks`` once
partition p has consumed the backlog it had when a UTC day closed) marks day d as
*started* in the evaluations table, in the tick's own step. The engine then runs
:meth:`DropEvaluation.run_slice` as background steps: each evaluates the next
:data:`SLICE_ACCOUNTS` accounts of the partition (silent ones included: every
account with daily history), sends their drop and recovery events and moves the cursor, in one
transaction. Usage steps run between slices, or a slice rides at the start of a busy
partition's usage step (see :data:`engine.background.FOLD_EVERY_S`), so a large partition
never stalls usage for longer than one slice, and steady usage never starves the slices.
A crash resumes at the cursor; a repeated tick finds the day started or done and does
nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from agents.day_slices import run_day_slice, tick_day
from app.main import Runtime
from config.settings import to_ms
from domain.moments.detection import Moment
from domain.moments.evaluation import evaluate_account
from domain.plans.periods import Period, utc_day
from domain.rules.drops import DropRules
from engine.background import Sent
from engine.step import Step
from state.store import PartitionStore
from state.transaction import StepState
from tables.accounts import plan_of
from tables.anniversary_passes import keep_closed_after
from tables.announced import announced_of, put_announced
from tables.daily import DAILY, decode_daily, put_daily
from tables.evaluations import Evaluation, evaluation_of, put_evaluation
from tables.totals import put_totals, totals_of

logger = logging.getLogger(__name__)

#: Accounts per slice: a slice is one transaction, and the partition's usage waits
#: behind it, so it must stay short (a few hundred ms with 35 days of history each).
SLICE_ACCOUNTS = 500
#: Most seconds of rules per slice, for the same reason (see agents.anniversaries): the
#: cursor is kept in the slice's transaction, so an early end only makes more slices.
SLICE_BUDGET_S = 0.02


def drop_rules(runtime: Runtime) -> DropRules:
    """The drop rules from settings."""
    s = runtime.settings
    return DropRules(
        recent_days=s.drop_recent_days,
        baseline_weeks=s.drop_baseline_weeks,
        min_expected=s.drop_min_expected,
        fraction=s.drop_fraction,
    )


class TicksHandler:
    """Handles the ticks topic: starts the evaluation of a closed day."""

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """A tick that cannot be processed: ticks carry no data worth keeping; it is skipped."""
        logger.error(
            "partition %d: tick at offset %d skipped: %s", step.partition, record.offset, reason
        )

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Mark the newest day of ``records`` started, unless it was already."""

        def malformed(record: Any) -> None:
            logger.warning(
                "partition %d: ignoring malformed tick at offset %d", step.partition, record.offset
            )

        day = tick_day(records, malformed)
        if day is None:
            return
        held = evaluation_of(step.state, step.partition)
        if held is not None and held.day >= day:
            return
        put_evaluation(step.state, step.partition, Evaluation(day, ""))
        logger.info("partition %d: evaluating day %d for drops", step.partition, day)


def _reached_at(
    state: StepState, account_id: str, metric: str, period: Period, plan_id: str
) -> int | None:
    """When the account's limit of ``metric`` was reached in ``period`` (drop projections)."""
    return announced_of(state, account_id).reached_at(metric, period, plan_id)


class DropEvaluation:
    """The engine's background work: evaluation slices of started days."""

    def __init__(
        self,
        runtime: Runtime,
        slice_accounts: int = SLICE_ACCOUNTS,
        slice_budget_s: float = SLICE_BUDGET_S,
    ) -> None:
        self.runtime = runtime
        self.rules = drop_rules(runtime)
        self.slice_accounts = slice_accounts
        self.slice_budget_s = slice_budget_s

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether the partition has a started, unfinished evaluation."""
        held = evaluation_of(store, partition)
        return held is not None and not held.done

    def run_slice(self, step: Step) -> None:
        """Evaluate the next accounts after the cursor; finish the day when none are left."""
        rt = self.runtime
        state = step.state
        held = evaluation_of(state, step.partition)
        if held is None or held.cursor is None:
            return
        oldest_day = utc_day(step.now_ms) - rt.daily_days + 1
        stale_before_ms = step.now_ms - to_ms(rt.settings.late_grace_s) - 1
        # Closed periods wait for their billing anniversary (agents.anniversaries).
        stale_before_ms = min(stale_before_ms, keep_closed_after(state, step.partition))

        def judge(account_id: str, value: bytes) -> list[Sent]:
            found = self._account(step, held.day, account_id, value, oldest_day, stale_before_ms)
            return [(m.kind, m.account_id.encode(), m.payload) for m in found]

        run_day_slice(
            step,
            rt,
            held,
            table=DAILY.name,
            judge=judge,
            put=put_evaluation,
            work="drops",
            name="the drop evaluation",
            done_text="evaluated for drops",
            max_keys=self.slice_accounts,
            budget_s=self.slice_budget_s,
        )

    def _account(
        self,
        step: Step,
        day: int,
        account_id: str,
        value: bytes,
        oldest_day: int,
        stale_before_ms: int,
    ) -> list[Moment]:
        """Evaluate one account for ``day``, writing its state; returns its moments."""
        rt = self.runtime
        state = step.state
        days = decode_daily(value)
        pruned = days.prune(oldest_day)
        totals = totals_of(state, account_id)
        found, changed = evaluate_account(
            account_id,
            days,
            plan_of(state, account_id),
            totals,
            day,
            rules=self.rules,
            catalog=rt.catalog,
            templates=rt.templates,
            now_ms=step.now_ms,
            arrived_ms=step.now_ms,
            limit_reached_at=functools.partial(_reached_at, state, account_id),
        )
        # The sweep of stale state (#8): every account with state has a daily key (a
        # counted record writes one), so here, once a day, each account's periods that
        # no longer accept records go, whether or not the account still sends any.
        if totals.prune(stale_before_ms):
            put_totals(state, account_id, totals)
        announced = announced_of(state, account_id)
        if announced.prune(stale_before_ms):
            put_announced(state, account_id, announced)
        holds_more = not totals.is_empty() or bool(announced.levels or announced.reached)
        if changed or pruned or (days.is_empty() and not holds_more):
            put_daily(state, account_id, days, keep=holds_more)
        return found
