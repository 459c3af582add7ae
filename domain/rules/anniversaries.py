"""Billing anniversaries (contract 3.5): which period closed, its recap, and what to suggest.

Pure rules; the agent (:mod:`agents.anniversaries`) runs them over a partition's accounts in
background slices and keeps, per account, the small :class:`Summary` of the last closed period
so the next one can be judged on two periods.

When a period is *final*. A record is late once ``now > period.end + late_grace`` (see
:func:`domain.intake.batch.run_intake`), so from then on nothing changes the period's totals. The
passes run at *cuts*: ``now - late_grace - 1 ms`` when a check finds something due
(:func:`due_cut`), so every period whose end is at or before a cut is final. A pass visits only
the accounts whose period end is due (:mod:`tables.due`, scheduled at :func:`next_end`), so a
period is announced within a check interval (and the catch-up) of becoming final, whatever the
anchor's time of day. A pass at cut ``c`` announces, for each account it visits, the *latest*
period ending at or before ``c`` (:func:`latest_closed`), once: after downtime, the periods that
closed meanwhile collapse into the latest one, as the contract asks.

Counting periods and years. ``periods_completed`` counts the account's periods from its origin
(the plan's ``billing_anchor``; for an account without one, the start of the first period this
worker announced, since the contract's default anchor is a calendar alignment, not a join date)
to the closed period's end. The closed period completes ``n`` whole years when the ``n``-th
anniversary of the origin (same month, day and time of day; Feb 29 falls on Feb 28 in other
years) falls in ``(period.start, period.end]``. For monthly and daily periods that is exactly
"the period ends on the anniversary date" (12 months, 365 or 366 days); weekly periods never
line up with dates, so the week that contains the anniversary completes the year.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Final

from domain.common.formatting import format_number, format_percent
from domain.common.timeutil import DAY_MS, datetime_to_ms, ms_to_datetime
from domain.intake.accounts import AccountPlan, period_of
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import WEEK_MS, Period, PeriodLength
from domain.rules.suggestions import (
    Suggestion,
    cheaper_plans,
    cheapest,
    covers,
    no_plan,
    to_plan,
)

HOUR_MS: Final = 3_600_000

_ZERO: Final = Decimal(0)


def due_cut(now_ms: int, late_grace_ms: int) -> int:
    """The latest cut at ``now_ms``: ``now - grace - 1 ms``, the last instant whose periods
    are final. Every period ending at or before it is final: a record of it would be late.

    (Cuts were whole hours until the due index, issue 19: a pass then visited every account,
    so it ran at most once an hour.)
    """
    return now_ms - late_grace_ms - 1


def next_end(plan: AccountPlan, after_ms: int, catalog: Catalog) -> int:
    """The end of the account's first billing period ending after ``after_ms``: when its next
    anniversary is due, once ``after_ms`` has been judged."""
    return period_of(plan, after_ms, catalog).end_ms


def latest_closed(plan: AccountPlan, cut_ms: int, catalog: Catalog) -> Period:
    """The account's latest billing period that ended at or before ``cut_ms``."""
    current = period_of(plan, cut_ms - 1, catalog)
    if current.end_ms <= cut_ms:
        return current
    return period_of(plan, current.start_ms - 1, catalog)


def _month_index(ms: int) -> int:
    moment = ms_to_datetime(ms)
    return moment.year * 12 + moment.month - 1


def periods_completed(origin_ms: int, end_ms: int, length: PeriodLength) -> int:
    """How many periods of ``length`` from ``origin_ms`` have ended by ``end_ms`` (a period
    boundary of that origin); zero or less when ``end_ms`` is not after the origin."""
    if length == "month":
        return _month_index(end_ms) - _month_index(origin_ms)
    step = WEEK_MS if length == "week" else DAY_MS
    return (end_ms - origin_ms) // step


def anniversary_ms(origin_ms: int, years: int) -> int:
    """The ``years``-th anniversary of ``origin_ms``: same month, day (Feb 29 -> Feb 28 in
    other years) and time of day."""
    origin = ms_to_datetime(origin_ms)
    year = origin.year + years
    day = origin.day
    if origin.month == 2 and day == 29 and not _leap(year):
        day = 28
    return datetime_to_ms(origin.replace(year=year, day=day, tzinfo=UTC))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def whole_years(origin_ms: int, period: Period) -> int | None:
    """``n`` when the ``n``-th anniversary of the origin (n >= 1) falls in ``(start, end]``."""
    n = ms_to_datetime(period.end_ms).year - ms_to_datetime(origin_ms).year
    if n >= 1 and anniversary_ms(origin_ms, n) > period.end_ms:
        n -= 1
    if n < 1 or ms_to_datetime(origin_ms).year + n > 9999:
        return None
    return n if anniversary_ms(origin_ms, n) > period.start_ms else None


@dataclass(frozen=True, slots=True)
class MetricRecap:
    """One metric of a closed period: its final total and the account's limit (None: none)."""

    metric: str
    total: Decimal
    limit: Decimal | None

    @property
    def reached(self) -> bool:
        """The total reached the limit (exact comparison)."""
        return self.limit is not None and self.total >= self.limit

    def underused(self, level: Decimal) -> bool:
        """The total stayed at or below ``level`` of the limit (exact comparison)."""
        return self.limit is not None and self.total <= level * self.limit


def recap_metrics(
    totals: Mapping[str, Decimal], limits: Mapping[str, Decimal]
) -> list[MetricRecap]:
    """One entry per metric with usage or a limit in the period, ordered by metric."""
    metrics = sorted(set(totals) | set(limits))
    return [MetricRecap(m, totals.get(m, _ZERO), limits.get(m)) for m in metrics]


@dataclass(frozen=True, slots=True)
class Summary:
    """What the next period's judgement needs of a closed one."""

    end_ms: int
    reached: frozenset[str]
    underused: bool


def summarize(period: Period, recap: Sequence[MetricRecap], underuse_level: Decimal) -> Summary:
    """The summary of a closed period: metrics that reached their limit, and whether every
    limited metric (at least one) stayed at or below ``underuse_level`` of its limit."""
    limited = [m for m in recap if m.limit is not None]
    return Summary(
        period.end_ms,
        frozenset(m.metric for m in limited if m.reached),
        bool(limited) and all(m.underused(underuse_level) for m in limited),
    )


def judge(now: Summary, previous: Summary | None) -> str:
    """``upgrade``, ``downgrade`` or ``none`` for a closed period (contract 3.5).

    ``previous`` is the summary of the period just before, or None when there is none to go by
    (the account's first period, or one the worker did not judge): then this period alone
    decides. Upgrade when a limited metric reached its limit in both periods; downgrade when
    every limited metric stayed at or below the underuse level in both. An account without a
    limited metric has nothing to measure underuse against, so it is never told to downgrade.
    """
    reached = now.reached if previous is None else now.reached & previous.reached
    if reached:
        return "upgrade"
    if now.underused and (previous is None or previous.underused):
        return "downgrade"
    return "none"


def _covers_all(plan: Plan, recap: Sequence[MetricRecap]) -> bool:
    return all(covers(plan, m.metric, m.total) for m in recap)


def peak_of(catalog: Catalog, metric: str) -> str:
    """``a peak of `` before a ``max`` metric's value in prose (its period value is the
    period's highest: "a peak of 42 GB of storage"), else nothing."""
    return "a peak of " if catalog.aggregations.get(metric) == "max" else ""


def recap_text(catalog: Catalog, recap: Sequence[MetricRecap]) -> str:
    """The recap in prose for messages, never empty: ``9,500 of 10,000 API calls (95%) and
    2 GB of storage``, or ``no usage recorded``. A ``max`` metric's total is the period's
    peak: ``a peak of 42 of 100 GB of storage (42%)``."""
    loc = catalog.locale
    parts = []
    for m in recap:
        unit = catalog.unit(m.metric)
        peak = peak_of(catalog, m.metric)
        if m.limit is None:
            parts.append(f"{peak}{format_number(m.total, locale=loc)} {unit}")
        else:
            parts.append(
                f"{peak}{format_number(m.total, locale=loc)} of "
                f"{format_number(m.limit, locale=loc)} {unit} "
                f"({format_percent(m.total / m.limit, locale=loc)})"
            )
    if not parts:
        return "no usage recorded"
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


def suggest(
    catalog: Catalog,
    current: Plan,
    action: str,
    recap: Sequence[MetricRecap],
    *,
    underuse_level: Decimal,
    first: bool,
) -> Suggestion:
    """The suggestion for ``action`` (from :func:`judge`), with a plan and a rationale.

    Upgrade: the cheapest higher plan whose limits cover every total of the period, else the
    largest plan; ``none`` when there is no higher plan. Downgrade: the cheapest lower plan
    that costs less and covers every total (no limit covers anything); ``none`` when none
    does. ``none`` thanks the account. ``first``: judged on this period alone (wording only).
    """
    loc = catalog.locale
    period = catalog.period
    if action == "upgrade":
        units = ", ".join(catalog.unit(m.metric) for m in recap if m.reached)
        reached = f"your limit of {units}" if units else "your limits"
        again = f"this {period}" if first else f"this {period} and the one before"
        higher = catalog.higher(current)
        if not higher:
            return no_plan(
                "none",
                f"You reached {reached} {again}; {current.name} is already the "
                "largest plan, so talk to us about a custom limit.",
            )
        covering = [p for p in higher if _covers_all(p, recap)]
        plan = cheapest(covering) if covering else higher[-1]
        return to_plan(
            "upgrade",
            plan,
            current,
            f"You reached {reached} {again}; {plan.name} "
            f"{'has room for all of it' if plan in covering else 'is the largest plan'}.",
        )
    if action == "downgrade":
        lately = f"this {period}" if first else f"this {period} and the one before"
        cheaper = cheaper_plans(catalog, current)
        covering = [p for p in cheaper if _covers_all(p, recap)]
        if covering:
            plan = cheapest(covering)
            return to_plan(
                "downgrade",
                plan,
                current,
                f"You used no more than {format_percent(underuse_level, locale=loc)} "
                "of each allotment "
                f"{lately}; {plan.name} would have covered this {period}'s usage.",
            )
        return no_plan(
            "none",
            f"You used no more than {format_percent(underuse_level, locale=loc)} "
            f"of each allotment {lately}, "
            "but no "
            f"cheaper plan would hold this {period}'s usage, so {current.name} stays the best "
            "fit. Thank you for being with us.",
        )
    return no_plan(
        "none",
        f"{current.name} fits the way you use it. Thank you for being with us.",
    )


def origin_of(plan: AccountPlan, held_origin_ms: int | None, period: Period) -> int:
    """Where the account's periods are counted from: its billing anchor, else the origin held
    (the first period announced), else this period's start."""
    if plan.anchor_ms is not None:
        return plan.anchor_ms
    return held_origin_ms if held_origin_ms is not None else period.start_ms
