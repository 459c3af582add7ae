"""Dedup table: ``account_id \\x1f record_id`` -> first-seen time (epoch ms, ASCII).

Keyed with the account so that a repeat always lands on the partition (and
RocksDB store) of its account, whichever worker owns it.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, rocksdb_options, settings

dedup: TableT[str, bytes] = app.Table(
    "dedup",
    key_type=str,
    value_type=bytes,
    default=None,
    partitions=settings.partitions,
    options=rocksdb_options(settings),
    help="record_ids seen within the dedup horizon.",
)
