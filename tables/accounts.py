"""Accounts table: account id -> the plan in force (``domain.accounts.AccountPlan`` JSON)."""

from __future__ import annotations

from faust.types import TableT

from app.main import app, rocksdb_options, settings

accounts: TableT[str, bytes] = app.Table(
    "accounts",
    key_type=str,
    value_type=bytes,
    default=None,
    partitions=settings.partitions,
    options=rocksdb_options(settings),
    help="Plan records in force, by account id.",
)
