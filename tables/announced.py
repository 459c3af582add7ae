"""Announced table: account id -> levels announced per metric, period and plan.

Values are ``AnnouncedLevels`` JSON.

Written in the same step as the events it records, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

import orjson
from faust.types import TableT

from app.main import app, new_table, settings
from domain.thresholds import AnnouncedLevels

announced: TableT[str, bytes] = new_table(
    app, settings, "announced", "Threshold levels announced per account, metric, period and plan."
)


def announced_of(account_id: str) -> AnnouncedLevels:
    """Levels announced for ``account_id`` (none when nothing was)."""
    held = announced.get(account_id)
    return AnnouncedLevels.from_json(None if held is None else orjson.loads(held))
