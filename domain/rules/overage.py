"""Overage (contract 3.1): usage past the limit, what it costs, and whether an upgrade pays.

A threshold-hit at a level above 1.0 is an overage moment. When the plan prices overage for
the metric (``overage = { api_calls = 0.002 }`` in the catalog), the event carries an
``overage`` block: the units past the limit, the price per unit, their cost so far and the
cost the period is heading for at the current pace. The suggestion's rationale then compares
that projected cost with what the suggested upgrade costs more, so the account can tell in
money whether upgrading or paying the overage is cheaper this period.

Pure decimal arithmetic; costs are derived figures (contract 4: written as the nearest double).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

from domain.common.formatting import format_approx, format_money
from domain.plans.catalog import Catalog, Plan
from domain.rules.projection import has_pace
from domain.rules.suggestions import Suggestion, covers, holds, level_words, pace_verb
from domain.rules.thresholds import HIT_LEVEL

_ZERO: Final = Decimal(0)


def is_over_level(level: Decimal) -> bool:
    """Whether ``level`` is an overage level: above the whole limit (1.0)."""
    return level > HIT_LEVEL


@dataclass(frozen=True, slots=True)
class Overage:
    """The ``overage`` block of an event, in the plan's currency.

    ``units`` is the period total past the limit, ``cost`` their price, ``projected_cost``
    the price of the projected period total past the limit. None is ever negative.
    """

    units: Decimal
    unit_price: Decimal
    cost: Decimal
    projected_cost: Decimal


def overage_of(
    plan: Plan, metric: str, total: Decimal, limit: Decimal, projected_total: Decimal
) -> Overage | None:
    """The overage of ``total`` (and of the ``projected_total``) past ``limit``, priced at
    ``plan``'s overage price for ``metric``; ``None`` when the plan does not price it."""
    price = plan.overage_price(metric)
    if price is None:
        return None
    units = max(total - limit, _ZERO)
    projected_units = max(projected_total - limit, _ZERO)
    return Overage(units, price, units * price, projected_units * price)


def _costs(catalog: Catalog, suggested: Plan, current: Plan, period: str) -> str:
    """``Growth costs $60 more a month`` (or the same as, or less than, the current plan)."""
    delta = suggested.price - current.price
    if delta == _ZERO:
        return f"{suggested.name} costs the same as {current.name}"
    money = format_money(abs(delta), catalog.currency, locale=catalog.locale)
    return f"{suggested.name} costs {money} {'more' if delta > _ZERO else 'less'} a {period}"


def _projected_cost_under(plan: Plan, metric: str, projected_total: Decimal) -> Decimal | None:
    """The projected overage cost under ``plan``: zero when it covers the projected total,
    the priced excess when it prices overage, else unknown (``None``)."""
    if covers(plan, metric, projected_total):
        return _ZERO
    price = plan.overage_price(metric)
    limit = plan.limit(metric)
    if price is None or limit is None:
        return None
    return (projected_total - limit) * price


def _pace(catalog: Catalog, metric: str, amount: Decimal) -> str:
    """``at this pace you'll use about 12,500 API calls`` (``have`` for a distinct count); for
    a level, which has no pace, what it is now: ``you have 12 seats``."""
    level = level_words(catalog, metric, amount)
    if level is not None:
        return level
    approx = format_approx(amount, locale=catalog.locale)
    return f"at this pace you'll {pace_verb(catalog, metric)} about {approx} {catalog.unit(metric)}"


def overage_suggestion(
    catalog: Catalog,
    current: Plan,
    metric: str,
    suggestion: Suggestion,
    projected_total: Decimal,
    overage: Overage | None,
) -> Suggestion:
    """``suggestion`` (:func:`~domain.rules.suggestions.suggest_upgrade`) with a rationale in money
    when ``overage`` is priced (contract 3.1): the upgrade's price difference against the
    projected overage cost it would save. Without a price, ``suggestion`` unchanged. For a
    ``latest`` or ``max`` metric ``projected_total`` is its current value (no pace)."""
    loc = catalog.locale
    if overage is None:
        return suggestion
    period = catalog.period
    cost = format_money(overage.projected_cost, catalog.currency, locale=loc)
    suggested = None if suggestion.plan_id is None else catalog.plan(suggestion.plan_id)
    aggregation = catalog.aggregations.get(metric)
    if suggestion.action != "upgrade" or suggested is None:
        at = "At this pace that's about" if has_pace(aggregation) else "At this level that's"
        return replace(
            suggestion,
            rationale=f"{suggestion.rationale} {at} {cost} of overage this {period}.",
        )
    gives = holds(catalog, suggested, metric)
    pace = _pace(catalog, metric, projected_total)
    costs = _costs(catalog, suggested, current, period)
    after = _projected_cost_under(suggested, metric, projected_total)
    if after is None:  # the suggested plan neither covers the pace nor prices its overage
        rationale = (
            f"{costs}; {pace} (about {cost} of overage on {current.name}), and "
            f"{suggested.name} {gives}."
        )
        return replace(suggestion, rationale=rationale)
    saving = max(overage.projected_cost - after, _ZERO)
    saving_text = format_money(saving, catalog.currency, locale=loc)
    saves = f"would save about {saving_text} of overage this {period}"
    if saving >= suggested.price - current.price:
        verdict = "so it pays for itself"
    else:
        verdict = "so for now the overage costs less than the upgrade"
    rationale = f"{costs} and {saves}, {verdict}; {pace}, and {suggested.name} {gives}."
    return replace(suggestion, rationale=rationale)
