"""Daily table: account id -> per-metric UTC daily totals and open drop episodes.

Values are ``AccountDaily`` JSON; days older than MOMENTS_DAILY_RETENTION_DAYS are deleted.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, new_table, settings

daily: TableT[str, bytes] = new_table(
    app, settings, "daily", "Daily usage totals and drop episodes per account."
)
