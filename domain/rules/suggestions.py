"""Plan suggestions (contract 3.1 and 3.2): which plan, if any, a moment should point to.

A threshold moment suggests the cheapest bigger plan that would hold the projected period
total; a sudden drop suggests pausing, or the cheapest smaller plan that would still hold the
period at the new pace, or nothing. Every suggestion carries a short ``rationale`` with real
numbers, so a notifier can show it as is.

"Covers" means the plan's limit for the metric is at least the projected total; a plan with no
limit for the metric covers anything. "Cheapest" is the lowest price, ties broken by rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from domain.common.bounded import remember
from domain.common.formatting import format_approx, format_days, format_money, format_number
from domain.plans.catalog import Catalog, Plan

Action = Literal["upgrade", "downgrade", "pause", "resume", "none"]
"""What a moment suggests; ``none`` comes with a rationale that says why nothing fits."""

ACTIONS: Final[tuple[Action, ...]] = ("upgrade", "downgrade", "pause", "resume", "none")

_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A suggested plan change, as in an event's ``suggestion`` object.

    For ``upgrade`` and ``downgrade`` the plan fields name the suggested plan and
    ``price_delta`` is its price minus the current one (negative for a downgrade). For
    ``pause``, ``resume`` and ``none`` no other plan is suggested and the plan fields are ``None``.
    """

    action: Action
    plan_id: str | None
    plan_name: str | None
    price: Decimal | None
    price_delta: Decimal | None
    rationale: str


def covers(plan: Plan, metric: str, total: Decimal) -> bool:
    """Whether ``plan``'s allotment of ``metric`` holds ``total`` (no limit holds anything)."""
    limit = plan.limit(metric)
    return limit is None or limit >= total


def _more_room(limit: Decimal | None, current_limit: Decimal) -> bool:
    """Whether a plan's ``limit`` (``None``: unlimited) gives more than ``current_limit``."""
    return limit is None or limit > current_limit


def cheapest(plans: Sequence[Plan]) -> Plan:
    """The cheapest of ``plans``, ties broken by rank."""
    return min(plans, key=lambda p: (p.price, p.rank))


def cheaper_plans(catalog: Catalog, current: Plan) -> list[Plan]:
    """The plans ranked below ``current`` that cost less (a smaller plan that costs as much
    saves nothing), by rank ascending."""
    return [plan for plan in catalog.lower(current) if plan.price < current.price]


def to_plan(action: Action, to: Plan, current: Plan, rationale: str) -> Suggestion:
    """An ``upgrade`` or ``downgrade`` from ``current`` to ``to``."""
    return Suggestion(action, to.id, to.name, to.price, to.price - current.price, rationale)


def no_plan(action: Action, rationale: str) -> Suggestion:
    """A suggestion that names no plan: ``pause``, ``resume`` or ``none``."""
    return Suggestion(action, None, None, None, None, rationale)


def holds(catalog: Catalog, plan: Plan, metric: str) -> str:
    """What ``plan`` gives of ``metric``: ``includes 100,000`` or ``has no limit on API calls``."""
    limit = plan.limit(metric)
    if limit is None:
        return f"has no limit on {catalog.unit(metric)}"
    return f"includes {format_number(limit, locale=catalog.locale)}"


def _offer(catalog: Catalog, plan: Plan, current: Plan, metric: str) -> str:
    """``Growth includes 100,000 API calls for $79 a month, $60 more than Starter``."""
    loc = catalog.locale
    delta = plan.price - current.price
    money = format_money(abs(delta), catalog.currency, locale=loc)
    difference = (
        "the same price as"
        if delta == _ZERO
        else f"{money} more than"
        if delta > _ZERO
        else f"{money} less than"
    )
    price = format_money(plan.price, catalog.currency, locale=loc)
    gives = holds(catalog, plan, metric)
    return f"{plan.name} {gives} for {price} a {catalog.period}, {difference} {current.name}"


def level_words(catalog: Catalog, metric: str, amount: Decimal) -> str | None:
    """What a level (contract 1.4) is now, as a clause: ``you have 12 seats`` for a ``latest``
    metric, ``your peak this month is 42 GB of storage`` for a ``max`` one; ``None`` for a
    metric with a pace (sum, count, unique_count), whose ``amount`` is a projection."""
    aggregation = catalog.aggregations.get(metric)
    if aggregation not in ("latest", "max"):
        return None
    amount_text = f"{format_number(amount, locale=catalog.locale)} {catalog.unit(metric)}"
    if aggregation == "latest":
        return f"you have {amount_text}"
    return f"your peak this {catalog.period} is {amount_text}"


def pace_verb(catalog: Catalog, metric: str) -> str:
    """How a projection of ``metric`` reads: ``have`` distinct users, ``use`` API calls."""
    return "have" if catalog.aggregations.get(metric) == "unique_count" else "use"


def _capital(clause: str) -> str:
    return clause[:1].upper() + clause[1:]


def suggest_upgrade(
    catalog: Catalog,
    current: Plan,
    metric: str,
    projected_total: Decimal,
    account_limit_override: Decimal | None = None,
) -> Suggestion:
    """The upgrade a threshold moment suggests (contract 3.1).

    The cheapest plan ranked above ``current`` whose limit for ``metric`` covers
    ``projected_total``, else the highest of them; ``none`` when there is no higher plan. An
    account whose ``account_limit_override`` already exceeds a bigger plan's limit would gain
    nothing from that plan, so such plans are passed over (and with none left, ``none``). For a
    ``latest`` or ``max`` metric, which has no pace, ``projected_total`` is its current value.

    What does not depend on ``projected_total`` (the plans that give more room, cheapest
    first, and the words offering each) is worked out once per plan, metric and limit
    (:class:`_Ladder`).
    """
    key = (id(catalog), id(current), metric, account_limit_override)
    ladder = _ladders.get(key)
    if ladder is None or ladder.catalog is not catalog or ladder.current is not current:
        ladder = _ladder(catalog, current, metric, account_limit_override)
        remember(_ladders, key, ladder, _LADDERS_MAX)
    heading = ladder.heading
    if heading.level:
        amount = f"{format_number(projected_total, locale=catalog.locale)}{heading.unit}"
        lead, on_track = f"{heading.lead}{amount}", f"{heading.clause}{amount}"
    else:
        projected = f"about {format_approx(projected_total, locale=catalog.locale)}{heading.unit}"
        lead, on_track = f"{heading.lead}{projected}", f"{heading.clause}{projected}"
    for rung in ladder.cheapest_first:
        if rung.limit is None or rung.limit >= projected_total:  # covers(rung.plan, ...)
            return rung.suggestion(f"{lead}; {rung.offer}.")
    largest = ladder.largest
    if largest is None:
        return no_plan("none", f"{ladder.none_lead}{on_track}{ladder.none_tail}")
    return largest.suggestion(f"{lead}, more than any plan includes; the largest, {largest.offer}.")


@dataclass(frozen=True, slots=True)
class _Heading:
    """How a threshold's rationale says where a metric is heading, around the amount, for one
    catalog and metric: ``lead + amount + unit`` starts a sentence (``At this pace you'll use
    about 12,500 API calls this month``), ``clause + amount + unit`` is a clause (``you're on
    track for ...``). The amount is ``about`` :func:`format_approx` of the projected total;
    for a level (:func:`level_words`), :func:`format_number` of what it is now."""

    level: bool
    lead: str
    clause: str
    unit: str


def _heading_of(catalog: Catalog, metric: str) -> _Heading:
    """The :class:`_Heading` of ``metric`` in ``catalog``."""
    unit = catalog.unit(metric)
    aggregation = catalog.aggregations.get(metric)
    if aggregation in ("latest", "max"):  # level_words
        clause = "you have " if aggregation == "latest" else f"your peak this {catalog.period} is "
        return _Heading(True, _capital(clause), clause, f" {unit}")
    verb = pace_verb(catalog, metric)
    return _Heading(
        False,
        f"At this pace you'll {verb} ",
        "you're on track for ",
        f" {unit} this {catalog.period}",
    )


@dataclass(frozen=True, slots=True)
class _Rung:
    """A plan an upgrade may suggest: its ``limit`` of the metric and the words offering it."""

    plan: Plan
    limit: Decimal | None
    price_delta: Decimal
    offer: str

    def suggestion(self, rationale: str) -> Suggestion:
        """The upgrade to this plan (:func:`to_plan`)."""
        plan = self.plan
        return Suggestion("upgrade", plan.id, plan.name, plan.price, self.price_delta, rationale)


@dataclass(frozen=True, slots=True)
class _Ladder:
    """What :func:`suggest_upgrade` suggests from ``current`` for one metric and limit, less the
    projected total: the plans that give more room (``cheapest_first``: by price, then rank;
    the first covering the total wins), the ``largest`` of them (suggested when none covers),
    or, with no such plan, the words of the ``none`` rationale around where usage is heading.
    ``catalog`` and ``current`` are held so that their ids, which key the cache, stay theirs."""

    catalog: Catalog
    current: Plan
    heading: _Heading
    cheapest_first: tuple[_Rung, ...]
    largest: _Rung | None
    none_lead: str
    none_tail: str


# _Ladder per (catalog, current plan, metric, account limit): a few plans, metrics and limits
# make nearly every threshold event. Catalogs and plans are immutable (read once at start-up);
# an entry holds both, so the ids in its key stay theirs. Bounded (accounts may have limits of
# their own).
_LADDERS_MAX: Final = 4096
_ladders: dict[tuple[int, int, str, Decimal | None], _Ladder] = {}


def _ladder(
    catalog: Catalog, current: Plan, metric: str, account_limit_override: Decimal | None
) -> _Ladder:
    """:class:`_Ladder` of ``current`` for ``metric``, as :func:`suggest_upgrade` defines it."""
    heading = _heading_of(catalog, metric)
    current_limit = (
        account_limit_override if account_limit_override is not None else current.limit(metric)
    )
    higher = catalog.higher(current)
    if not higher:
        lead, tail = (
            f"{current.name} is already the largest plan and ",
            "; talk to us about a custom limit.",
        )
        return _Ladder(catalog, current, heading, (), None, lead, tail)
    roomier = list(higher)
    if current_limit is not None:
        roomier = [plan for plan in higher if _more_room(plan.limit(metric), current_limit)]
        if not roomier:
            limit = format_number(current_limit, locale=catalog.locale)
            lead = (
                f"Your limit of {limit} {catalog.unit(metric)} is already more than "
                "bigger plans include and "
            )
            return _Ladder(
                catalog, current, heading, (), None, lead, "; talk to us about raising it."
            )
    rungs = [
        _Rung(
            plan,
            plan.limit(metric),
            plan.price - current.price,
            _offer(catalog, plan, current, metric),
        )
        for plan in roomier
    ]
    # cheapest(): the lowest (price, rank); sorted() is stable, so ties keep min()'s first.
    cheapest_first = tuple(sorted(rungs, key=lambda r: (r.plan.price, r.plan.rank)))
    return _Ladder(catalog, current, heading, cheapest_first, rungs[-1], "", "")


def _where_after_drop(catalog: Catalog, metric: str, amount: Decimal) -> tuple[str, str]:
    """How a drop's rationale says what a smaller plan must hold, plainly and with "even":
    ``At the recent pace you'd use about 5,000 API calls this month`` (``amount`` projected at
    the recent pace); for a level, what it is now (:func:`level_words`)."""
    level = level_words(catalog, metric, amount)
    if level is not None:
        return _capital(level), f"Even so, {level}"
    loc = catalog.locale
    pace = f"about {format_approx(amount, locale=loc)} {catalog.unit(metric)} this {catalog.period}"
    verb = pace_verb(catalog, metric)
    return f"At the recent pace you'd {verb} {pace}", f"Even at the recent pace you'd {verb} {pace}"


def suggest_for_drop(
    catalog: Catalog,
    current: Plan,
    metric: str,
    recent_total: Decimal,
    projected_period_total_at_new_pace: Decimal,
    *,
    recent_days: int | None = None,
) -> Suggestion:
    """The suggestion of a sudden drop (contract 3.2).

    ``pause`` when nothing was used recently and ``current`` can be paused; else ``downgrade``
    to the cheapest plan ranked below ``current`` that costs less and whose limit covers the
    period projected at the new pace (a smaller plan that costs as much saves nothing); else
    ``none``, with a rationale that suggests checking in. ``recent_days`` only words the
    rationale. For a ``latest`` or ``max`` metric, which has no pace, the plan must cover its
    current value, passed as ``projected_period_total_at_new_pace``.
    """
    loc = catalog.locale
    unit = catalog.unit(metric)
    span = "recently" if recent_days is None else f"in {format_days(recent_days)}"
    price = format_money(current.price, catalog.currency, locale=loc)
    if recent_total <= _ZERO and current.pausable:
        return no_plan(
            "pause",
            f"No {unit} {span}; your {current.name} plan ({price} a {catalog.period}) can be "
            "paused until you need it again.",
        )
    projected = projected_period_total_at_new_pace
    lead, even = _where_after_drop(catalog, metric, projected)
    cheaper = cheaper_plans(catalog, current)
    covering = [plan for plan in cheaper if covers(plan, metric, projected)]
    if covering:
        plan = cheapest(covering)
        return to_plan(
            "downgrade",
            plan,
            current,
            f"{lead}; {_offer(catalog, plan, current, metric)}.",
        )
    if not cheaper:
        return no_plan(
            "none",
            f"{current.name} is already the most affordable plan for you; a quick check-in "
            "can tell whether something changed on your side.",
        )
    return no_plan(
        "none",
        f"{even}, more than a cheaper plan includes, so "
        "a smaller plan wouldn't fit; a quick check-in can tell whether something changed.",
    )


def suggest_after_recovery(
    catalog: Catalog, current: Plan, metric: str, *, paused: bool
) -> Suggestion:
    """The suggestion of a usage recovery (contract 3.3): ``resume`` when the account is
    paused (its usage is back, its plan is not), else ``none``."""
    unit = catalog.unit(metric)
    if paused:
        price = format_money(current.price, catalog.currency, locale=catalog.locale)
        return no_plan(
            "resume",
            f"Your use of {unit} is back while your {current.name} plan is paused; resume it "
            f"({price} a {catalog.period}) to pick up where you left off.",
        )
    return no_plan(
        "none",
        f"Your use of {unit} is back to its usual level on your {current.name} plan; "
        "nothing to change.",
    )
