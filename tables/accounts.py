"""Accounts table: account id -> the plan in force (``domain.intake.accounts.AccountPlan`` JSON)."""

from __future__ import annotations

import orjson

from domain.intake.accounts import AccountPlan
from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

ACCOUNTS = TableSpec("accounts", "Plan records in force, by account id.")


def decode_plan(held: bytes | None) -> AccountPlan | None:
    """An ``AccountPlan`` from its stored bytes (None for None)."""
    return None if held is None else AccountPlan.from_json(orjson.loads(held))


def plan_of(view: Reader, account_id: str) -> AccountPlan | None:
    """The plan held for ``account_id``, or None when none is known."""
    return read(view, ACCOUNTS.name, account_id.encode(), decode_plan)


def put_plan(state: StepState, account_id: str, plan: AccountPlan) -> None:
    """Hold ``plan`` for ``account_id``."""
    value = jsonbytes.dumps(plan.to_json())
    state.put_object(ACCOUNTS.name, account_id.encode(), plan, value)
