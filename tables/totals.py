"""Period-totals table: account id -> per-metric, per-period totals (``AccountTotals`` JSON).

One value per account so that a batch writes each account once.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, new_table, settings

period_totals: TableT[str, bytes] = new_table(
    app, settings, "period-totals", "Usage totals per account, metric and billing period."
)
