"""Period-totals table: account id -> per-metric, per-period totals (``AccountTotals`` JSON).

One value per account so that a batch writes each account once.
"""

from __future__ import annotations

import orjson
from faust.types import TableT

from app.main import app, new_table, settings
from domain.usage import AccountTotals

period_totals: TableT[str, bytes] = new_table(
    app, settings, "period-totals", "Usage totals per account, metric and billing period."
)


def totals_of(account_id: str) -> AccountTotals:
    """Period totals held for ``account_id`` (empty when none)."""
    held = period_totals.get(account_id)
    return AccountTotals.from_json(None if held is None else orjson.loads(held))
