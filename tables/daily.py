"""Daily table: account id -> per-metric UTC daily totals and open drop episodes.

Values are ``AccountDaily`` JSON; days older than MOMENTS_DAILY_RETENTION_DAYS are deleted.
"""

from __future__ import annotations

import orjson
from faust.types import TableT

from app.main import app, new_table, settings
from domain.daily import AccountDaily

daily: TableT[str, bytes] = new_table(
    app, settings, "daily", "Daily usage totals and drop episodes per account."
)


def daily_of(account_id: str) -> AccountDaily:
    """Daily totals and drop episodes held for ``account_id`` (empty when none)."""
    held = daily.get(account_id)
    return AccountDaily.from_json(None if held is None else orjson.loads(held))
