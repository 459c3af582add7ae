"""Announced table: account id -> levels announced per metric, period and plan.

Values are ``AnnouncedLevels`` JSON. Written in the same step (and Kafka
transaction) as the events it records, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

import orjson

from domain.rules.thresholds import AnnouncedLevels
from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

ANNOUNCED = TableSpec(
    "announced", "Threshold levels announced per account, metric, period and plan."
)


def announced_of(view: Reader, account_id: str) -> AnnouncedLevels:
    """Levels announced for ``account_id`` (none when nothing was); through the store's
    object cache, as the other per-account tables are read: the levels are changed in place
    only where they are written back (a crossing, a prune that removed something)."""
    return read(view, ANNOUNCED.name, account_id.encode(), decode_announced)


def decode_announced(held: bytes | None) -> AnnouncedLevels:
    """``AnnouncedLevels`` from their stored bytes (none for None)."""
    return AnnouncedLevels.from_json(None if held is None else orjson.loads(held))


def put_announced(state: StepState, account_id: str, levels: AnnouncedLevels) -> None:
    """Record the levels announced for ``account_id`` (deleting the key when none are left)."""
    key = account_id.encode()
    value = jsonbytes.dumps(levels.to_json()) if levels.levels or levels.reached else None
    state.put_object(ANNOUNCED.name, key, levels, value)
