"""Announced table: account id -> levels announced per metric, period and plan.

Values are ``AnnouncedLevels`` JSON.

Written in the same step as the events it records, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, new_table, settings

announced: TableT[str, bytes] = new_table(
    app, settings, "announced", "Threshold levels announced per account, metric, period and plan."
)
