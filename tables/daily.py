"""Daily table: account id -> per-metric UTC daily totals and open drop episodes.

Values are ``AccountDaily`` JSON; days older than MOMENTS_DAILY_RETENTION_DAYS are deleted.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, rocksdb_options, settings

daily: TableT[str, bytes] = app.Table(
    "daily",
    key_type=str,
    value_type=bytes,
    default=None,
    partitions=settings.partitions,
    options=rocksdb_options(settings),
    help="Daily usage totals and drop episodes per account.",
)
