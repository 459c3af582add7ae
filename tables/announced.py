"""Announced table: account id -> levels announced per metric, period and plan.

Values are ``AnnouncedLevels`` JSON.

Written in the same step as the events it records, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, rocksdb_options, settings

announced: TableT[str, bytes] = app.Table(
    "announced",
    key_type=str,
    value_type=bytes,
    default=None,
    partitions=settings.partitions,
    options=rocksdb_options(settings),
    help="Threshold levels announced per account, metric, period and plan.",
)
