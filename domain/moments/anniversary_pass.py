"""One account's billing anniversary in a pass at a cut (contract 3.5).

Pure: the agent hands in the account's plan, its period totals, what it holds of the
account's last anniversary and the pass's cut, and gets back what to hold now and the event to
send, if any. See :mod:`domain.rules.anniversaries` for when periods are final and how they count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from domain.intake.accounts import AccountPlan
from domain.intake.usage import AccountTotals
from domain.plans.catalog import Catalog
from domain.rules.anniversaries import (
    Summary,
    judge,
    latest_closed,
    origin_of,
    periods_completed,
    recap_metrics,
    suggest,
    summarize,
    whole_years,
)
from domain.wording.events import ClosedPeriod, Wording, anniversary_event
from domain.wording.payloads import AnniversaryEvent
from domain.wording.templates import Templates


@dataclass(frozen=True, slots=True)
class Held:
    """What is kept of an account between anniversaries: the summary of the last closed
    period judged (its end is the last anniversary's), and the origin its periods are counted
    from when its plan has no billing anchor (``None`` while it has one)."""

    summary: Summary
    origin_ms: int | None


@dataclass(frozen=True, slots=True)
class PassRules:
    """Settings of a pass."""

    underuse_level: Decimal


def evaluate_anniversary(
    account_id: str,
    plan: AccountPlan,
    totals_of: Callable[[], AccountTotals],
    held_of: Callable[[], Held | None],
    cut_ms: int,
    *,
    done_cut_ms: int | None,
    rules: PassRules,
    catalog: Catalog,
    templates: Templates,
    now_ms: int,
) -> tuple[Held | None, AnniversaryEvent | None]:
    """Judge the account's latest period closed at ``cut_ms``, once.

    ``totals_of`` and ``held_of`` read the account's period totals and what is held of its last
    anniversary; they are called only for an account whose period may be due, since most
    accounts of a pass have none. Returns ``(held, event)``: ``held`` is the new value to keep
    (None: keep what is held) and ``event`` the billing-anniversary to send (None: nothing).

    A period ending at or before ``done_cut_ms`` (the cut of the last complete pass) was
    judged by that pass, and one the held summary already covers was judged before: neither is
    judged again. A period is judged for every account with a plan in the catalog, active or
    not, so the next period always has its predecessor's summary; only active accounts get the
    event. A period that ends at or before the billing anchor completes no billing period and
    is passed over, as is one that ended before the account's plan was known here
    (``plan.known_since_ms``).
    """
    catalog_plan = catalog.plan(plan.plan_id)
    if catalog_plan is None:
        return None, None
    period = latest_closed(plan, cut_ms, catalog)
    if done_cut_ms is not None and period.end_ms <= done_cut_ms:
        return None, None
    if plan.known_since_ms is not None and period.end_ms <= plan.known_since_ms:
        # Ended before the account's plan was known here: nothing of it was observed, and a
        # recap of zeros would mislead (a fresh deployment would greet every account with one).
        # Its successor is judged as a first period.
        return None, None
    held = held_of()
    if held is not None and held.summary.end_ms >= period.end_ms:
        return None, None
    origin_ms = origin_of(plan, None if held is None else held.origin_ms, period)
    completed = periods_completed(origin_ms, period.end_ms, catalog.period)
    if completed < 1:
        return None, None
    period_totals = totals_of().period_values(period)  # a gauge's carried value included
    limits: dict[str, Decimal] = {}
    for metric in {*catalog_plan.limits, *plan.limits}:
        limit = plan.limit(catalog_plan, metric)
        if limit is not None:
            limits[metric] = limit
    recap = recap_metrics(period_totals, limits)
    summary = summarize(period, recap, rules.underuse_level)
    previous = None
    if held is not None and held.summary.end_ms == period.start_ms:
        previous = held.summary
    keep = Held(summary, origin_ms if plan.anchor_ms is None else None)
    if plan.status != "active":
        return keep, None
    suggestion = suggest(
        catalog,
        catalog_plan,
        judge(summary, previous),
        recap,
        underuse_level=rules.underuse_level,
        first=previous is None,
    )
    closed = ClosedPeriod(period, recap, completed, whole_years(origin_ms, period))
    event = anniversary_event(
        Wording(templates, catalog), account_id, catalog_plan, closed, suggestion, now_ms
    )
    return keep, event
