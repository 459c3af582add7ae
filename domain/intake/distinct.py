"""Keys and lifetimes of the distinct values a ``unique_count`` metric has counted (1.4).

The intake asks the distinct table whether a value was already counted in a scope (a billing
period, or a UTC day) and counts it only when it was not. Each (account, metric, scope,
value) is one entry, kept while a record could still fold into its scope and no longer:

- a period scope until the period stops taking records: ``period.end_ms + late_grace_ms +
  1`` is the first instant a record of it counts as ``late`` (contract 3.1);
- a day scope until the day leaves the window of daily totals (contract 3.2).

Pure: the table (:mod:`tables.distinct`) stores what these functions decide.
"""

from __future__ import annotations

from typing import Final

from domain.plans.periods import Period, day_start_ms

_DAY_MS: Final = 86_400_000
#: Longest billing period (a month of 31 days), with a day to spare.
_LONGEST_PERIOD_DAYS: Final = 32
#: Margin of the changelog's retention past the longest life of an entry.
_SPARE_DAYS: Final = 2


def period_scope(period: Period) -> str:
    """The scope text of a billing period: ``p<start in epoch ms>``."""
    return f"p{period.start_ms}"


def day_scope(day: int) -> str:
    """The scope text of a UTC day (days since the epoch): ``d<day>``."""
    return f"d{day}"


def distinct_key(account_id: str, metric: str, scope: str, value_key: str) -> str:
    """Distinct-table key of one value of ``metric`` counted for an account in ``scope``.

    ``<length of account_id>:<account_id>\\x1f<metric>\\x1f<scope>\\x1f<value_key>``: the
    length makes the account unambiguous whatever it holds; metric names and scopes hold no
    ``\\x1f``; the value key (JSON text, :attr:`domain.intake.records.UsageRecord.unique`) is
    last, so it may hold anything. Account first, like the dedup key.
    """
    return f"{len(account_id)}:{account_id}\x1f{metric}\x1f{scope}\x1f{value_key}"


def period_expiry(period: Period, late_grace_ms: int) -> int:
    """When a period's distinct values go: the first instant its records are ``late``."""
    return period.end_ms + late_grace_ms + 1


def day_expiry(day: int, daily_retention_days: int) -> int:
    """When a day's distinct values go: the day the window of daily totals leaves it.

    The intake keeps the last ``daily_retention_days`` days, today included, so day ``d`` is
    dropped at the start of day ``d + daily_retention_days``.
    """
    return day_start_ms(day + daily_retention_days)


def distinct_retention_ms(daily_retention_days: int, late_grace_ms: int) -> int:
    """How long the distinct table's changelog keeps a segment: the longest life of an entry.

    A day entry lives at most ``daily_retention_days`` days past its day, a period entry at
    most a month and the late grace past the period's start (its records may arrive until
    then); two days to spare, so restore never misses an entry still alive.
    """
    days = max(daily_retention_days, _LONGEST_PERIOD_DAYS) + _SPARE_DAYS
    return days * _DAY_MS + late_grace_ms
