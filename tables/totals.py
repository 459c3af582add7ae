"""Period-totals table: account id -> per-metric, per-period totals (``AccountTotals`` JSON).

One value per account so that a batch writes each account once.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, rocksdb_options, settings

period_totals: TableT[str, bytes] = app.Table(
    "period-totals",
    key_type=str,
    value_type=bytes,
    default=None,
    partitions=settings.partitions,
    options=rocksdb_options(settings),
    help="Usage totals per account, metric and billing period.",
)
