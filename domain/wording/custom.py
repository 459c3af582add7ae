"""Events of the moments a business defines (contract 3.8): ``custom.<rule id>``.

A rule brings its own words (``title`` and ``body`` in the catalog, checked at start against
:data:`~domain.plans.catalog.MOMENT_PLACEHOLDERS`) and its own action; this module fills them
in and builds the event, whose fields are those of the other usage moments plus
``custom {rule, window, value, threshold}``.

Placeholders, formatted as the other kinds format them (:mod:`domain.common.formatting`):

- ``{value}``, ``{threshold}``: the window's value and the threshold, in the metric's unit
  (``1,234.5``); ``{unit}``: the metric's display unit;
- ``{window_days}``: the rule's days (``7``); for a ``"period"`` window, the billing period's
  length in days, rounded up (``30``);
- ``{plan_name}``; ``{limit}``: the account's limit of the metric, ``unlimited`` without one
  (as ``{suggested_limit}`` reads in ``config/messages.toml``);
- ``{offer}``: the rule's offer (the catalog refuses the placeholder in a rule without one);
- ``{upgrade_plan_name}``, ``{upgrade_price}``: the plan an upgrade would choose (contract
  3.1: the cheapest higher plan covering the period projected at the current pace) and its
  price; on the largest plan (no plan to upgrade to), the current plan's name and price.

Suggestions: ``upgrade`` is chosen as a threshold chooses it (3.1; ``none`` on the largest
plan), ``downgrade`` as a sudden drop chooses it (3.2, over the window's days: ``pause`` when
the window's value is 0 and the plan is pausable, ``none`` when no cheaper plan fits); ``pause``
names no plan (``none`` for a plan that is not pausable); ``offer`` and ``reward`` carry the
rule's offer text; ``none`` suggests nothing.

event_id: SHA-256 of ``custom|<rule id>|<account_id>|<metric>|<start>``, start being the
window's first day (``YYYY-MM-DD``) for a rolling window, the period's start (RFC 3339 UTC)
for ``"period"``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from domain.common.formatting import format_money, format_number
from domain.common.numbers import json_number
from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.plans.catalog import Catalog, MomentRule, Plan
from domain.rules.projection import has_pace, project, project_recent
from domain.rules.suggestions import Suggestion, no_plan, suggest_for_drop, suggest_upgrade
from domain.wording.events import (
    SCHEMA_VERSION,
    Standing,
    message_fields,
    offer_fields,
    period_fields,
    plan_fields,
    suggestion_fields,
    usage_fields,
)
from domain.wording.payloads import CustomEvent, SuggestionFields
from domain.wording.templates import Message

_EPOCH: Final = date(1970, 1, 1)


def custom_event_id(rule_id: str, account_id: str, metric: str, start: str) -> str:
    """Id of a moment of rule ``rule_id``: SHA-256 of
    ``custom|<rule id>|<account_id>|<metric>|<start>``."""
    return hashlib.sha256(
        "|".join(("custom", rule_id, account_id, metric, start)).encode("utf-8")
    ).hexdigest()


def day_text(day: int) -> str:
    """UTC day number ``day`` as ``YYYY-MM-DD``."""
    return date.fromordinal(_EPOCH.toordinal() + day).isoformat()


@dataclass(frozen=True, slots=True)
class Fired:
    """A rule that fired: the window's ``value`` and the ``threshold`` it met (quantities of
    the metric), the window's ``start`` as the event id writes it, the ``days`` the value is
    over (a ``"period"`` window: the days of the period so far, at least 1), and the instant
    ``at_ms`` (``triggered_at``)."""

    rule: MomentRule
    value: Decimal
    threshold: Decimal
    start: str
    days: int
    at_ms: int


def custom_event(
    catalog: Catalog, standing: Standing, fired: Fired, emitted_at_ms: int
) -> CustomEvent:
    """The ``custom.<rule id>`` event of ``fired`` for ``standing`` (the account's plan, the
    billing period containing the moment and the metric's period-to-date value)."""
    rule, plan, metric = fired.rule, standing.plan, standing.metric
    total, limit = standing.total, standing.limit
    upgrade: Suggestion | None = None
    if rule.action == "upgrade" or "{upgrade_" in rule.title + rule.body:
        heading = total
        if has_pace(catalog.aggregations.get(metric)):
            heading = project(total, standing.period, fired.at_ms, limit, None).period_total
        upgrade = suggest_upgrade(catalog, plan, metric, heading, limit)
    suggestion = _suggestion(catalog, standing, fired, upgrade)
    values = _values(catalog, standing, fired, upgrade)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": custom_event_id(rule.id, standing.account_id, metric, fired.start),
        "kind": rule.kind,
        "account_id": standing.account_id,
        "metric": metric,
        "plan": plan_fields(plan, catalog),
        "period": period_fields(standing.period),
        "usage": usage_fields(total, limit, catalog.unit(metric)),
        "custom": {
            "rule": rule.id,
            "window": rule.window,
            "value": json_number(fired.value),
            "threshold": json_number(fired.threshold),
        },
        "message": message_fields(_message(rule, values)),
        "suggestion": suggestion,
        "triggered_at": to_rfc3339(fired.at_ms),
        "emitted_at": to_rfc3339(emitted_at_ms),
    }


def _message(rule: MomentRule, values: dict[str, str]) -> Message:
    # The catalog checked that the templates use only these placeholders, plainly.
    return Message(rule.title.format_map(values).strip(), rule.body.format_map(values).strip())


def _values(
    catalog: Catalog, standing: Standing, fired: Fired, upgrade: Suggestion | None
) -> dict[str, str]:
    loc = catalog.locale
    plan, limit, period = standing.plan, standing.limit, standing.period
    target: Plan = plan
    if upgrade is not None and upgrade.action == "upgrade" and upgrade.plan_id is not None:
        target = catalog.plan(upgrade.plan_id) or plan
    days = fired.rule.window_days
    if days is None:
        days = -(-(period.end_ms - period.start_ms) // DAY_MS)
    return {
        "value": format_number(fired.value, locale=loc),
        "threshold": format_number(fired.threshold, locale=loc),
        "unit": catalog.unit(standing.metric),
        "window_days": str(days),
        "plan_name": plan.name,
        "limit": "unlimited" if limit is None else format_number(limit, locale=loc),
        "offer": fired.rule.offer or "",
        "upgrade_plan_name": target.name,
        "upgrade_price": format_money(target.price, catalog.currency, locale=loc),
    }


def _suggestion(
    catalog: Catalog, standing: Standing, fired: Fired, upgrade: Suggestion | None
) -> SuggestionFields:
    rule, plan, metric = fired.rule, standing.plan, standing.metric
    action = rule.action
    if upgrade is not None and action == "upgrade":
        return suggestion_fields(upgrade)
    if action == "downgrade":
        heading = standing.total
        if has_pace(catalog.aggregations.get(metric)):
            heading = project_recent(
                standing.total,
                standing.period,
                fired.at_ms,
                standing.limit,
                fired.value,
                fired.days,
            ).period_total
        return suggestion_fields(
            suggest_for_drop(catalog, plan, metric, fired.value, heading, recent_days=fired.days)
        )
    if action == "pause" and not plan.pausable:
        # As the built-in kinds (3.2): only a pausable plan is offered a pause.
        return offer_fields(
            "none", f"Your {plan.name} plan cannot be paused; the message is the moment."
        )
    if action == "pause":
        price = format_money(plan.price, catalog.currency, locale=catalog.locale)
        return suggestion_fields(
            no_plan(
                "pause",
                f"Your {plan.name} plan ({price} a {catalog.period}) can be paused until you "
                "need it again.",
            )
        )
    if action == "offer":
        return offer_fields("offer", f"An offer made for this moment: {rule.offer}.", rule.offer)
    if action == "reward":
        return offer_fields("reward", f"A reward for this moment: {rule.offer}.", rule.offer)
    return offer_fields("none", "No plan change: the message is the moment.")
