"""Accounts table: account id -> the plan in force (``domain.accounts.AccountPlan`` JSON)."""

from __future__ import annotations

import orjson

from domain.accounts import AccountPlan
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader

ACCOUNTS = TableSpec("accounts", "Plan records in force, by account id.")


def plan_of(view: Reader, account_id: str) -> AccountPlan | None:
    """The plan held for ``account_id``, or None when none is known."""
    held = view.get(ACCOUNTS.name, account_id.encode())
    return None if held is None else AccountPlan.from_json(orjson.loads(held))


def put_plan(state: StepState, account_id: str, plan: AccountPlan) -> None:
    """Hold ``plan`` for ``account_id``."""
    state.put(ACCOUNTS.name, account_id.encode(), orjson.dumps(plan.to_json()))


def forget_plan(state: StepState, account_id: str) -> None:
    """Forget the plan of ``account_id`` (a tombstone)."""
    state.delete(ACCOUNTS.name, account_id.encode())
