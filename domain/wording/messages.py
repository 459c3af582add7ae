"""Message builders: each kind's placeholder values, formatted, rendered by its template.

A builder takes what a moment is about (plan, period, totals, projection, suggestion) and
formats each placeholder of its kind (:data:`~domain.wording.templates.PLACEHOLDERS`) with
:mod:`domain.common.formatting` in the catalog's ``locale``; the template decides the words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Literal

from domain.common.bounded import remember
from domain.common.formatting import (
    format_approx,
    format_calendar_date,
    format_count,
    format_date,
    format_days,
    format_level,
    format_milestone,
    format_money,
    format_number,
    format_ordinal,
    format_percent,
    format_series,
    format_unit_price,
)
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import Period, date_to_day, day_start_ms
from domain.rules.anniversaries import peak_of
from domain.rules.overage import Overage
from domain.rules.projection import Projection
from domain.rules.suggestions import Suggestion
from domain.wording.templates import LEVELS, Message, Templates

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


@dataclass(frozen=True, slots=True)
class Situation:
    """What a usage message (threshold, drop, recovery) speaks of: the ``account_id``'s
    ``metric`` on its catalog ``plan`` in the billing ``period``, its ``total`` so far, the
    period's ``projection`` (``None`` for a level, which has no pace) and the plan
    ``suggestion``."""

    catalog: Catalog
    plan: Plan
    account_id: str
    metric: str
    period: Period
    total: Decimal
    projection: Projection | None
    suggestion: Suggestion

    @property
    def variant(self) -> str | None:
        """The templates' variant of the metric: its aggregation, ``None`` for a sum."""
        return self.catalog.aggregations.get(self.metric)


@dataclass(frozen=True, slots=True)
class RecentDays:
    """The recent days a drop or a recovery is judged on: ``total`` over ``days`` complete
    days against the ``expected`` total of as many usual days."""

    days: int
    total: Decimal
    expected: Decimal


def _plan_values(catalog: Catalog, plan: Plan, account_id: str) -> dict[str, str]:
    """The placeholders of the account and its plan, which every message has."""
    return {
        "account_id": account_id,
        "plan_name": plan.name,
        "plan_price": format_money(plan.price, catalog.currency, locale=catalog.locale),
        "period_word": catalog.period,
    }


def _common(situation: Situation) -> dict[str, str]:
    """The placeholders every usage message has (:func:`common_values` of ``situation``)."""
    return common_values(
        situation.catalog,
        situation.plan,
        situation.account_id,
        situation.metric,
        situation.period,
        situation.total,
        situation.projection,
        situation.suggestion,
    )


def common_values(
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    projection: Projection | None,
    suggestion: Suggestion,
    limit: Decimal | None = None,
) -> dict[str, str]:
    """The placeholders every usage message has, of a :class:`Situation` given field by field
    (see :func:`threshold_message_of`), and ``{limit}`` when ``limit`` is given."""
    loc = catalog.locale
    key = (
        id(catalog),
        id(plan),
        metric,
        suggestion.plan_id,
        suggestion.price,
        suggestion.price_delta,
        limit,
    )
    held = _fixed.get(key)
    if held is None or held[0] is not catalog or held[1] is not plan:
        fixed = _fixed_values(catalog, plan, metric, suggestion, limit)
        held = remember(_fixed, key, (catalog, plan, fixed), _FIXED_MAX)
    values = held[2].copy()
    values["account_id"] = account_id
    span = (period.start_ms, period.end_ms, loc)
    dates = _period_dates.get(span)
    if dates is None:
        dates = (format_date(period.start_ms, locale=loc), format_date(period.end_ms, locale=loc))
        remember(_period_dates, span, dates, _FIXED_MAX)
    values["period_start_date"], values["reset_date"] = dates
    values["total"] = format_number(total, locale=loc)
    values["rationale"] = suggestion.rationale
    if projection is not None:
        values["projected_total"] = format_approx(projection.period_total, locale=loc)
    return values


# The placeholders of common_values that depend on the catalog, the plan, the metric, the
# suggested plan and the limit only, by (catalog, plan, metric, suggested plan id, price, price
# delta, limit): a few plans and metrics make nearly every usage message. Catalogs and plans are
# immutable (read once at start-up); an entry holds both, so the ids in its key stay theirs.
# And the period's two dates, by (start, end, locale). Both bounded (accounts may have limits
# and billing anchors of their own).
_FIXED_MAX: Final = 4096
_fixed: dict[
    tuple[int, int, str, str | None, Decimal | None, Decimal | None, Decimal | None],
    tuple[Catalog, Plan, dict[str, str]],
] = {}
_period_dates: dict[tuple[int, int, str], tuple[str, str]] = {}


def _fixed_values(
    catalog: Catalog, plan: Plan, metric: str, suggestion: Suggestion, limit: Decimal | None
) -> dict[str, str]:
    """What :func:`common_values` writes that neither the account, the period nor the totals
    change: the plan's, the metric's and the suggested plan's placeholders, and the limit's."""
    loc = catalog.locale
    values = {
        "plan_name": plan.name,
        "plan_price": format_money(plan.price, catalog.currency, locale=loc),
        "period_word": catalog.period,
        "metric": metric,
        "unit": catalog.unit(metric),
    }
    suggested = None if suggestion.plan_id is None else catalog.plan(suggestion.plan_id)
    if suggested is not None and suggestion.price is not None:
        suggested_limit = suggested.limit(metric)
        values["suggested_plan"] = suggested.name
        values["suggested_price"] = format_money(suggestion.price, catalog.currency, locale=loc)
        values["suggested_limit"] = (
            "unlimited" if suggested_limit is None else format_number(suggested_limit, locale=loc)
        )
        values["price_delta"] = format_money(
            abs(suggestion.price_delta or _ZERO), catalog.currency, locale=loc
        )
    if limit is not None:
        values["limit"] = format_number(limit, locale=loc)
    return values


def threshold_message(
    templates: Templates,
    situation: Situation,
    *,
    kind: Literal["threshold-near", "threshold-hit"],
    limit: Decimal,
    level: Decimal,
    overage: Overage | None = None,
    limit_reached_at_ms: int | None = None,
) -> Message:
    """The message of a threshold moment: the ``situation``'s total of ``limit`` used,
    crossing ``level``.

    A metric with no pace (``latest``, ``max``: no projection) has no ``{pace}``, and its
    threshold-hit's ``{limit_date}`` is ``limit_reached_at_ms``; the templates of its
    aggregation word it as a level.

    ``limit`` is the account's allotment (its override, else the plan's). For threshold-near
    the ``{pace}`` sentence says when the limit will be reached at this pace, or that it will
    not be before ``reset_date``; for threshold-hit ``{limit_date}`` is the day it was reached.
    A threshold-hit above level 1.0 renders the ``threshold-over`` templates, whose
    ``{overage}`` sentence speaks of the ``overage`` cost when the plan prices it.
    """
    return threshold_message_of(
        templates,
        common_values(
            situation.catalog,
            situation.plan,
            situation.account_id,
            situation.metric,
            situation.period,
            situation.total,
            situation.projection,
            situation.suggestion,
            limit,
        ),
        situation.catalog,
        situation.metric,
        situation.total,
        situation.projection,
        situation.suggestion,
        kind,
        limit,
        level,
        overage,
        limit_reached_at_ms,
    )


def threshold_message_of(
    templates: Templates,
    values: dict[str, str],
    catalog: Catalog,
    metric: str,
    total: Decimal,
    projection: Projection | None,
    suggestion: Suggestion,
    kind: Literal["threshold-near", "threshold-hit"],
    limit: Decimal,
    level: Decimal,
    overage: Overage | None,
    limit_reached_at_ms: int | None,
) -> Message:
    """:func:`threshold_message` of a :class:`Situation` given field by field, ``values`` being
    its :func:`common_values` with the ``limit`` (which this function adds to). The threshold
    path (:func:`domain.wording.events.threshold_event`) calls it so: a frozen ``Situation``
    per event cost more than a twentieth of the event."""
    loc = catalog.locale
    values["percent"] = format_percent(total / limit, locale=loc)
    values["level_percent"] = format_level(level, locale=loc)
    values["remaining"] = format_number(max(limit - total, _ZERO), locale=loc)
    variant = catalog.aggregations.get(metric)
    reached = limit_reached_at_ms if projection is None else projection.limit_reached_at_ms
    if kind == "threshold-hit":
        values["over"] = format_number(max(total - limit, _ZERO), locale=loc)
        if reached is None:
            # domain.wording.events passes the announcing record's time; a hit without one is a bug.
            raise ValueError("a threshold-hit projection needs limit_reached_at_ms")
        values["limit_date"] = format_date(reached, locale=loc)
        if level > _ONE:
            _overage_values(templates, values, catalog, total, variant, projection, limit, overage)
            return templates.render("threshold-over", suggestion.action, values, variant)
    elif projection is not None:
        # The [pace] sentence has every placeholder but {rationale}; the message, not its
        # {limit_date}. Taken out and put back rather than copying the values.
        rationale = values.pop("rationale")
        if reached is not None:
            values["limit_date"] = format_date(reached, locale=loc)
            pace = templates.sentence("pace", "reaches_limit", values, variant)
            del values["limit_date"]
        else:
            pace = templates.sentence("pace", "within_limit", values, variant)
        values["pace"] = pace
        values["rationale"] = rationale
    return templates.render(kind, suggestion.action, values, variant)


def _overage_values(
    templates: Templates,
    values: dict[str, str],
    catalog: Catalog,
    total: Decimal,
    variant: str | None,
    projection: Projection | None,
    limit: Decimal,
    overage: Overage | None,
) -> None:
    """Add ``{over_percent}`` and the ``{overage}`` sentence of an overage message to
    ``values`` (which already hold the threshold-hit ones). A metric with no pace has no
    ``{projected_overage_cost}``."""
    loc = catalog.locale
    values["over_percent"] = format_percent(max(total - limit, _ZERO) / limit, locale=loc)
    sentence = {k: v for k, v in values.items() if k != "rationale"}
    if overage is None:
        values["overage"] = templates.sentence("overage", "unpriced", sentence, variant)
        return
    sentence.update(
        unit_price=format_unit_price(overage.unit_price, catalog.currency, locale=loc),
        overage_cost=format_money(overage.cost, catalog.currency, locale=loc),
    )
    if projection is not None:
        sentence["projected_overage_cost"] = format_money(
            overage.projected_cost, catalog.currency, locale=loc
        )
    values["overage"] = templates.sentence("overage", "priced", sentence, variant)


def _recent_values(recent: RecentDays, loc: str) -> dict[str, str]:
    """The placeholders of the recent days a drop or a recovery is judged on."""
    return {
        "recent_days": str(recent.days),
        "recent_span": format_days(recent.days),
        "recent_total": format_number(recent.total, locale=loc),
        "recent_daily": format_approx(recent.total / recent.days, locale=loc),
        "usual_daily": format_approx(recent.expected / recent.days, locale=loc),
        "expected_total": format_approx(recent.expected, locale=loc),
    }


def _recent_message(
    templates: Templates,
    kind: Literal["sudden-drop", "usage-recovered"],
    situation: Situation,
    recent: RecentDays,
    **values_of_kind: str,
) -> Message:
    """A drop or recovery message: the common and recent-day placeholders, with the kind's."""
    values = _common(situation)
    values.update(_recent_values(recent, situation.catalog.locale), **values_of_kind)
    return templates.render(kind, situation.suggestion.action, values, situation.variant)


def drop_message(
    templates: Templates,
    situation: Situation,
    recent: RecentDays,
    *,
    ratio: Decimal,
    last_active_at_ms: int | None,
    first_recent_day: date,
) -> Message:
    """The message of a sudden drop: the ``recent`` days' total came to ``ratio`` of the
    expected one, with the ``situation``'s period-to-date total and its projection at the new
    pace. Without a known ``last_active_at_ms`` the last activity reads as the day before the
    recent days began, which is right in the silent case that has no activity since."""
    loc = situation.catalog.locale
    last_active = last_active_at_ms
    if last_active is None:
        last_active = day_start_ms(date_to_day(first_recent_day)) - 1
    return _recent_message(
        templates,
        "sudden-drop",
        situation,
        recent,
        drop_percent=format_percent(max(_ONE - ratio, _ZERO), locale=loc),
        last_active_date=format_date(last_active, locale=loc),
    )


def account_change_message(
    templates: Templates,
    *,
    key: str,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    changed_at_ms: int,
    period: Period,
    figures: Sequence[tuple[str, Decimal, Decimal | None]],
    past: Sequence[tuple[str, Decimal]],
    rationale: str,
    extra: Mapping[str, str],
) -> Message:
    """The message of an account change (contract 3.6), template ``[account-change.<key>]``.

    ``plan`` is the account's plan after the change. Plan changes describe the current
    ``period``: ``figures`` are its (metric, total, limit) with usage (limit ``None``:
    unlimited; a ``max`` metric's reads as a peak), ``past`` the metrics already over the new
    limits and by how much. ``extra``
    holds the values only this key has (old plan, statuses, member counts, regions), already
    formatted.
    """
    loc = catalog.locale
    values = {
        **_plan_values(catalog, plan, account_id),
        "change_date": format_date(changed_at_ms, locale=loc),
        "rationale": rationale,
        **extra,
    }
    if key in ("plan_upgraded", "plan_downgraded", "plan_past_limit"):
        usage = [
            peak_of(catalog, metric)
            + (
                f"{format_number(total, locale=loc)} {catalog.unit(metric)} (no limit)"
                if limit is None
                else f"{format_number(total, locale=loc)} of "
                f"{format_number(limit, locale=loc)} {catalog.unit(metric)} "
                f"({format_percent(total / limit, locale=loc)})"
            )
            for metric, total, limit in figures
        ]
        values.update(
            period_start_date=format_date(period.start_ms, locale=loc),
            reset_date=format_date(period.end_ms, locale=loc),
            usage=", ".join(usage) if usage else "nothing used yet",
        )
        if past:
            values["past"] = format_series(
                [
                    f"{format_number(over, locale=loc)} {catalog.unit(metric)}"
                    for metric, over in past
                ]
            )
    return templates.render("account-change", key, values)


def recovered_message(
    templates: Templates, situation: Situation, recent: RecentDays, *, dropped_on: date
) -> Message:
    """The welcome-back message of a usage-recovered moment (contract 3.3): the ``recent``
    days' total is back near the expected one, after the drop that began on ``dropped_on``."""
    loc = situation.catalog.locale
    share = recent.total / recent.expected if recent.expected > _ZERO else _ONE
    return _recent_message(
        templates,
        "usage-recovered",
        situation,
        recent,
        recovered_percent=format_percent(share, locale=loc),
        dropped_on_date=format_calendar_date(dropped_on, locale=loc),
    )


def anniversary_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    period: Period,
    periods_completed: int,
    years: int | None,
    recap: str,
    suggestion: Suggestion,
    levels: bool = False,
) -> Message:
    """The message of a billing anniversary: the closed ``period``'s ``recap`` (prose), the
    periods completed, and the whole ``years`` when the period completes some (then the
    ``billing-anniversary-years`` templates celebrate them). ``levels``: the recap holds a
    metric that is not a sum or a count, so the ``levels`` variant words it (not "you used")."""
    loc = catalog.locale
    values = {
        **_plan_values(catalog, plan, account_id),
        "period_start_date": format_date(period.start_ms, locale=loc),
        "period_end_date": format_date(period.end_ms, locale=loc),
        "periods_completed": format_number(periods_completed, locale=loc),
        "periods_text": format_count(periods_completed, catalog.period, locale=loc),
        "recap": recap,
        "rationale": suggestion.rationale,
    }
    if suggestion.plan_name is not None and suggestion.price is not None:
        values["suggested_plan"] = suggestion.plan_name
        values["suggested_price"] = format_money(suggestion.price, catalog.currency, locale=loc)
        values["price_delta"] = format_money(
            abs(suggestion.price_delta or _ZERO), catalog.currency, locale=loc
        )
    table = "billing-anniversary"
    if years is not None:
        table = "billing-anniversary-years"
        values["years"] = format_number(years, locale=loc)
        values["years_text"] = format_count(years, "year", locale=loc)
    return templates.render(table, suggestion.action, values, LEVELS if levels else None)


def birthday_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    day: date,
    age: int | None,
    offer: str | None,
    rationale: str,
) -> Message:
    """The message of a birthday (contract 3.7): ``[birthday]``, or ``[birthday-age]`` with
    the ``age`` reached when it is given; the ``offer`` key when the catalog has an offer."""
    values = {
        **_plan_values(catalog, plan, account_id),
        "birthday_date": format_calendar_date(day, catalog.locale),
        "rationale": rationale,
    }
    if offer is not None:
        values["offer"] = offer
    table = "birthday"
    if age is not None:
        table = "birthday-age"
        values["age"] = format_number(age, locale=catalog.locale)
        values["age_ordinal"] = format_ordinal(age)
    return templates.render(table, "none" if offer is None else "offer", values)


def milestone_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    value: Decimal,
    reached: Sequence[Decimal],
    lifetime_total: Decimal,
    reward: str,
    rationale: str,
) -> Message:
    """The message of a lifetime milestone (contract 3.4): ``value`` (the highest of
    ``reached``) of ``metric`` reached, ``lifetime_total`` in all, with the catalog's
    ``reward``."""
    loc = catalog.locale
    unit = catalog.unit(metric)
    values = {
        **_plan_values(catalog, plan, account_id),
        "metric": metric,
        "unit": unit,
        "milestone": format_number(value, locale=loc),
        "celebration": format_milestone(value, unit, locale=loc),
        "reached": format_series([format_number(m, locale=loc) for m in reached]),
        "lifetime_total": format_number(lifetime_total, locale=loc),
        "reward": reward,
        "rationale": rationale,
    }
    return templates.render("milestone", "reward", values)
