"""Sudden-drop evaluation of one account for one closed UTC day (contract 3.2).

Pure: the agent hands in the account's daily state, plan and period totals, and
gets back the events to emit; episode state is updated in place and written in
the same step as the events.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from domain.intake.accounts import AccountPlan, period_of
from domain.intake.daily import AccountDaily, Episode
from domain.intake.usage import AccountTotals
from domain.moments.detection import Moment
from domain.plans.catalog import Catalog
from domain.plans.periods import Period, day_start_ms, day_to_date, utc_day
from domain.rules.drops import DropRules, assess, ended, step
from domain.wording.events import Evaluation, Standing, Wording, drop_event, recovered_event
from domain.wording.payloads import Payload
from domain.wording.templates import Templates

_ZERO = Decimal(0)
_ONE = Decimal(1)


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

    Returns the drop and recovery events and whether the episode state changed. Episodes
    move for every account (so a paused account's drop is not announced later, when it is
    reactivated); sudden-drop events go only to active accounts with a plan in the catalog,
    and the episode remembers whether its drop was sent. An evaluation that ends an episode
    whose drop was sent yields one usage-recovered (contract 3.3) for an active or paused
    account with a plan in the catalog (paused: the ``resume`` case); a cancelled account's
    recovery, like any of its moments, yields nothing.
    ``limit_reached_at(metric, period, plan_id)`` tells when the period's limit was reached,
    when it was (the record that announced 1.0), for the drop's projection.
    """
    moments: list[Moment] = []
    wording = Wording(templates, catalog)
    changed = False
    closed_at_ms = day_start_ms(day + 1)
    catalog_plan = None if plan is None else catalog.plan(plan.plan_id)
    announce = plan is not None and plan.status == "active" and catalog_plan is not None
    welcome = plan is not None and plan.status != "cancelled" and catalog_plan is not None
    for metric, history in sorted(daily.metrics.items()):
        assessment = assess(history, day, rules)
        before = daily.episode(metric)
        emit, after = step(before, assessment, rules)
        if emit and not announce:  # opened, but nobody told: no recovery to announce later
            after = Episode(True, after.opened_day, announced=False)
        dropped_on = ended(before, after)
        if after != before:
            daily.set_episode(metric, after)
            changed = True
        if plan is None or catalog_plan is None:
            continue
        if emit and announce:
            kind = "sudden-drop"
        elif dropped_on is not None and welcome and assessment.recent_total > _ZERO:
            # An episode also ends when the baseline has gone silent too (nothing expected,
            # nothing used): that re-arms detection but is no one coming back.
            kind = "usage-recovered"
        else:
            continue
        period = period_of(plan, closed_at_ms, catalog)
        reached_at = (
            None if limit_reached_at is None else limit_reached_at(metric, period, plan.plan_id)
        )
        standing = Standing(
            account_id,
            catalog_plan,
            metric,
            period,
            totals.total(metric, period),
            plan.limit(catalog_plan, metric),
        )
        recovered = kind == "usage-recovered" and dropped_on is not None
        ratio = assessment.ratio
        if ratio is None:
            # Usage after a silence longer than the baseline: nothing was expected, so it is at
            # least as usual for a recovery (the message says 100%); a drop is total silence.
            ratio = _ONE if recovered else _ZERO
        evaluation = Evaluation(
            len(assessment.recent_days),
            assessment.recent_total,
            assessment.expected_total,
            ratio,
            history.last_active_ms,
            closed_at_ms,
            reached_at,
        )
        payload: Payload
        if recovered and dropped_on is not None:
            paused = plan.status == "paused"
            opened = day_to_date(dropped_on)
            payload = recovered_event(wording, standing, evaluation, opened, now_ms, paused=paused)
        else:
            first_recent_day = day_to_date(assessment.first_recent_day)
            payload = drop_event(wording, standing, evaluation, first_recent_day, now_ms)
        moments.append(Moment(kind, account_id, payload, arrived_ms))
    return moments, changed
