"""Every table of the worker, listed once.

The worker command opens these in each partition store and creates their changelog
topics, the metrics report keys for each (``moments_table_keys``), and tests open stores
with their columns; a table added here is known to all of them.
"""

from __future__ import annotations

from typing import Final

from state.table import TableSpec
from tables.accounts import ACCOUNTS
from tables.anniversaries import ANNIVERSARIES
from tables.anniversary_passes import ANNIVERSARY_PASSES
from tables.announced import ANNOUNCED
from tables.birthdays import BIRTHDAYS
from tables.custom_closes import CUSTOM_CLOSES
from tables.custom_firings import CUSTOM_FIRINGS
from tables.daily import DAILY
from tables.dedup import dedup_table
from tables.distinct import distinct_table
from tables.due import DUE
from tables.evaluations import EVALUATIONS
from tables.lifetime import LIFETIME
from tables.totals import TOTALS


def table_specs(dedup_horizon_ms: int, distinct_retention_ms: int) -> tuple[TableSpec, ...]:
    """Every table of the worker; the dedup table's changelog keeps ``dedup_horizon_ms``, the
    distinct table's ``distinct_retention_ms``
    (:func:`domain.intake.distinct.distinct_retention_ms`)."""
    return (
        ACCOUNTS,
        TOTALS,
        dedup_table(dedup_horizon_ms),
        ANNOUNCED,
        DAILY,
        EVALUATIONS,
        ANNIVERSARIES,
        ANNIVERSARY_PASSES,
        LIFETIME,
        distinct_table(distinct_retention_ms),
        DUE,
        BIRTHDAYS,
        CUSTOM_FIRINGS,
        CUSTOM_CLOSES,
    )


# The horizon and retention change only changelog retentions, never a name or a column.
_SPECS: Final = table_specs(dedup_horizon_ms=0, distinct_retention_ms=0)

TABLE_NAMES: Final[tuple[str, ...]] = tuple(spec.name for spec in _SPECS)
"""Every table's name, in the order of :func:`table_specs`."""

TABLE_COLUMNS: Final[tuple[str, ...]] = tuple(c for spec in _SPECS for c in spec.columns)
"""Every column family of a partition store: each table's own and its local indexes."""
