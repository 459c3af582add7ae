"""Sudden-drop evaluation of one account for one closed UTC day (contract 3.2).

Pure: the agent hands in the account's daily state, plan and period totals, and
gets back the events to emit; episode state is updated in place and written in
the same step as the events.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from domain.accounts import AccountPlan, period_of
from domain.catalog import Catalog
from domain.daily import AccountDaily
from domain.detection import Moment
from domain.drops import DropRules, assess, step
from domain.events import drop_event
from domain.messages import Templates
from domain.periods import Period, day_start_ms, day_to_date, utc_day
from domain.usage import AccountTotals

_ZERO = Decimal(0)


def due_day(now_ms: int, grace_ms: int) -> int:
    """The latest UTC day that has closed at least ``grace_ms`` ago (as a day number)."""
    return utc_day(now_ms - grace_ms) - 1


def evaluate_account(
    account_id: str,
    daily: AccountDaily,
    plan: AccountPlan | None,
    totals: AccountTotals,
    day: int,
    *,
    rules: DropRules,
    catalog: Catalog,
    templates: Templates,
    now_ms: int,
    arrived_ms: int,
    limit_reached_at: Callable[[str, Period, str], int | None] | None = None,
) -> tuple[list[Moment], bool]:
    """Assess every tracked metric of the account with ``day`` as the last complete day.

    Returns the drop events and whether the episode state changed. Episodes move for
    every account (so a paused account's drop is not announced later, when it is
    reactivated); events go only to active accounts with a plan in the catalog.
    ``limit_reached_at(metric, period, plan_id)`` tells when the period's limit was reached,
    when it was (the record that announced 1.0), for the drop's projection.
    """
    moments: list[Moment] = []
    changed = False
    closed_at_ms = day_start_ms(day + 1)
    catalog_plan = None if plan is None else catalog.plan(plan.plan_id)
    announce = plan is not None and plan.status == "active" and catalog_plan is not None
    for metric, history in sorted(daily.metrics.items()):
        assessment = assess(history, day, rules)
        before = daily.episode(metric)
        emit, after = step(before, assessment, rules)
        if after != before:
            daily.set_episode(metric, after)
            changed = True
        if not (emit and announce) or plan is None or catalog_plan is None:
            continue
        period = period_of(plan, closed_at_ms, catalog)
        payload = drop_event(
            templates=templates,
            catalog=catalog,
            plan=catalog_plan,
            account_id=account_id,
            metric=metric,
            period=period,
            total=totals.total(metric, period),
            limit=plan.limit(catalog_plan, metric),
            recent_days=len(assessment.recent_days),
            recent_total=assessment.recent_total,
            expected_total=assessment.expected_total,
            ratio=assessment.ratio if assessment.ratio is not None else _ZERO,
            last_active_at_ms=history.last_active_ms,
            first_recent_day=day_to_date(assessment.first_recent_day),
            evaluated_at_ms=closed_at_ms,
            emitted_at_ms=now_ms,
            limit_reached_at_ms=(
                None if limit_reached_at is None else limit_reached_at(metric, period, plan.plan_id)
            ),
        )
        moments.append(Moment("sudden-drop", account_id, payload, arrived_ms))
    return moments, changed
