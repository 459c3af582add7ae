"""Evaluations table: ``p<partition>`` -> last UTC day (epoch-day number) evaluated for drops.

Written in the same step as the drop events of that evaluation, so a day is evaluated
once per partition across restarts and rebalances.
"""

from __future__ import annotations

from faust.types import TableT

from app.main import app, new_table, settings

evaluations: TableT[str, bytes] = new_table(
    app, settings, "evaluations", "Last UTC day evaluated for sudden drops, per partition."
)
