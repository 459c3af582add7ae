"""The day close of the ``at_most`` rules of ``[[moments]]`` (contract 3.8): a tick starts it,
slices of accounts finish it.

The day tick (:mod:`agents.ticks`, sent once the partition consumed the backlog it had when a
UTC day closed) marks the day started in the ``custom-closes`` table, in the tick's own step
(:meth:`CustomClose.start`). The engine then runs :meth:`CustomClose.run_slice` as background
steps, as it runs the drop evaluation (:mod:`agents.drops`): each judges the next accounts with
a plan (the accounts table: silent accounts are the point), sends their events, writes their
rule firings and moves the cursor, in one transaction. A crash resumes at the cursor; a repeated
tick finds the day started or done and does nothing. Only wired when the catalog has
``at_most`` rules (:func:`CustomClose.wanted`).

An active plan stored by a version before ``active_since_ms`` gets the pass's own time the first
time the pass sees it (so it is judged from a whole window later on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agents.day_slices import run_day_slice, tick_day
from app.main import Runtime
from domain.intake.accounts import AccountPlan
from domain.moments.custom import ClosedDay, CustomRules, active_since_known, judge_closed_day
from domain.rules.custom import RuleFirings
from engine.background import Sent
from engine.step import Step
from state.store import PartitionStore
from tables.accounts import ACCOUNTS, decode_plan, put_plan
from tables.custom_closes import close_of, put_close
from tables.custom_firings import firings_of, put_firings
from tables.daily import daily_of
from tables.evaluations import Evaluation
from tables.totals import totals_of

logger = logging.getLogger(__name__)

#: Accounts and seconds per slice, as for drop evaluations (see agents.drops).
SLICE_ACCOUNTS = 500
SLICE_BUDGET_S = 0.02


class CustomClose:
    """The engine's background work: ``at_most`` slices of started days."""

    def __init__(
        self,
        runtime: Runtime,
        slice_accounts: int = SLICE_ACCOUNTS,
        slice_budget_s: float = SLICE_BUDGET_S,
    ) -> None:
        self.runtime = runtime
        self.rules = CustomRules.of(runtime.catalog)
        self.slice_accounts = slice_accounts
        self.slice_budget_s = slice_budget_s

    @staticmethod
    def wanted(runtime: Runtime) -> bool:
        """Whether the catalog has ``at_most`` rules, so this work has anything to do."""
        return bool(CustomRules.of(runtime.catalog).at_most)

    def start(self, step: Step, records: Sequence[Any]) -> None:
        """Mark the newest day of the tick ``records`` started, unless it was already."""
        day = tick_day(records)  # the drops' handler logs a malformed tick
        if day is None:
            return
        held = close_of(step.state, step.partition)
        if held is not None and held.day >= day:
            return
        put_close(step.state, step.partition, Evaluation(day, ""))
        logger.info("partition %d: closing day %d for the at_most rules", step.partition, day)

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether the partition has a started, unfinished day close."""
        held = close_of(store, partition)
        return held is not None and not held.done

    def run_slice(self, step: Step) -> None:
        """Judge the next accounts after the cursor; finish the day when none are left."""
        rt = self.runtime
        state = step.state
        held = close_of(state, step.partition)
        if held is None or held.cursor is None:
            return
        closed = ClosedDay(held.day, step.now_ms)

        def judge(account_id: str, value: bytes) -> list[Sent]:
            plan = decode_plan(value)
            if plan is None or plan.status != "active":
                return []
            return [
                (m.kind, m.account_id.encode(), m.payload)
                for m in self._account(step, account_id, plan, closed)
            ]

        run_day_slice(
            step,
            rt,
            held,
            table=ACCOUNTS.name,
            judge=judge,
            put=put_close,
            work="custom",
            name="the at_most close",
            done_text="closed for at_most rules",
            max_keys=self.slice_accounts,
            budget_s=self.slice_budget_s,
        )

    def _account(
        self, step: Step, account_id: str, plan: AccountPlan, closed: ClosedDay
    ) -> list[Any]:
        """Judge one account for the closed day, writing its state; returns its moments."""
        state = step.state
        known = active_since_known(plan, step.now_ms)
        if known is not plan:
            put_plan(state, account_id, known)
        loaded: list[RuleFirings] = []

        def firings() -> RuleFirings:
            held = firings_of(state, account_id)
            held.keep_only(self.rules.ids)
            loaded.append(held)
            return held

        moments = judge_closed_day(
            account_id,
            known,
            daily_of(state, account_id),
            totals_of(state, account_id),
            closed,
            catalog=self.runtime.catalog,
            firings=firings,
            emitted_at=self.runtime.clock.now_ms,
        )
        if loaded:
            put_firings(state, account_id, loaded[0])
        return moments
