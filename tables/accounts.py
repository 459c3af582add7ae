"""Accounts table: account id -> the plan in force (``domain.accounts.AccountPlan`` JSON)."""

from __future__ import annotations

import orjson
from faust.types import TableT

from app.main import app, new_table, settings
from domain.accounts import AccountPlan

accounts: TableT[str, bytes] = new_table(
    app, settings, "accounts", "Plan records in force, by account id."
)


def plan_of(account_id: str) -> AccountPlan | None:
    """The plan held for ``account_id``, or None when none is known."""
    held = accounts.get(account_id)
    return None if held is None else AccountPlan.from_json(orjson.loads(held))
