"""Period totals regrouped when an account's billing periods change (contract 2).

Usage of an account whose plan is unknown is counted in calendar months; when its plan
arrives with another anchor, or an account's ``billing_anchor`` changes, the totals must
follow the new periods, so that the next record is judged on all of its period's usage.
The daily totals (kept 35 days, longer than any period) hold that usage by UTC day, so the
totals of every period that still accepts records are rebuilt from them.

One limit, said plainly: a day is attributed whole to the period that contains its start
(00:00 UTC). With an anchor at midnight UTC (billing systems' usual choice) the rebuilt
totals are exact; with an anchor at another time of day, usage recorded before the change on
the anchor's day itself but before its time counts in the new period rather than the old.
Records after the change are attributed by their exact timestamps as always.

A ``max`` metric's days give each period the highest of their values; a ``latest`` metric's
readings go to the periods of their own timestamps, the readings of periods no longer kept
(and the daily carry) becoming the carry. A ``unique_count`` metric's days hold distinct
counts per day, which do not add up to a period's: rebuilt by this module, its period value
counts a value once per day it was seen.
"""

from __future__ import annotations

from domain.intake.accounts import AccountPlan, period_of
from domain.intake.daily import AccountDaily, DailyReadings
from domain.intake.usage import AccountTotals, Reading
from domain.plans.catalog import Catalog
from domain.plans.periods import day_start_ms


def periods_change(held: AccountPlan | None, new: AccountPlan) -> bool:
    """Whether ``new`` puts the account's usage in other periods than ``held`` did."""
    return held is None or held.anchor_ms != new.anchor_ms


def regroup_totals(
    daily: AccountDaily, plan: AccountPlan, catalog: Catalog, *, keep_end_after_ms: int
) -> AccountTotals:
    """The account's totals under ``plan``'s periods, from its daily totals, for every period
    ending after ``keep_end_after_ms`` (the periods that still accept records)."""
    totals = AccountTotals()
    for metric, history in daily.metrics.items():
        if type(history) is DailyReadings:
            _regroup_readings(totals, metric, history, plan, catalog, keep_end_after_ms)
            continue
        for day, total in sorted(history.days.items()):
            period = period_of(plan, day_start_ms(day), catalog)
            if period.end_ms > keep_end_after_ms:
                totals.add(metric, period, total)
    return totals


def _regroup_readings(
    totals: AccountTotals,
    metric: str,
    history: DailyReadings,
    plan: AccountPlan,
    catalog: Catalog,
    keep_end_after_ms: int,
) -> None:
    """Fold the days of a ``max`` or ``latest`` metric into ``totals`` (see the module)."""
    kind = history.kind
    carry: Reading | None = history.carry
    for day, value in sorted(history.values.items()):
        ts_ms = history.stamps.get(day, day_start_ms(day))  # max keeps no timestamps
        period = period_of(plan, ts_ms, catalog)
        if period.end_ms > keep_end_after_ms:
            totals.fold(metric, kind, period, value, ts_ms)
        elif kind == "latest" and (carry is None or ts_ms >= carry[0]):
            carry = (ts_ms, value)
    if kind == "latest" and carry is not None:
        totals.carry[metric] = carry
