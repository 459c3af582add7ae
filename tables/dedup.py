"""Dedup table: ``account_id \\x1f record_id`` -> first-seen time (epoch ms, ASCII).

Keyed with the account so that a repeat always lands on the partition (and
RocksDB store) of its account, whichever worker owns it.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, new_table, settings

dedup: TableT[str, bytes] = new_table(
    app, settings, "dedup", "record_ids seen within the dedup horizon."
)
