"""Accounts table: account id -> the plan in force (``domain.accounts.AccountPlan`` JSON)."""

from __future__ import annotations

from faust.types import TableT

from app.main import app, new_table, settings

accounts: TableT[str, bytes] = new_table(
    app, settings, "accounts", "Plan records in force, by account id."
)
