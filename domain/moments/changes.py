"""Account changes (contract 3.6): what a plan record changes, and the events that say so.

When a plan record replaces the one held for an account, :func:`diff_accounts` lists what
changed, in the contract's order: the plan (``plan_upgraded`` / ``plan_downgraded``, by catalog
rank), the status (``paused``, ``resumed``, ``cancelled``), the members (``members_added``, an
increase only) and the region (``region_changed``). :func:`change_events` turns each change into
one ``account-change`` event.

What is not a change:

- a value that was not known before (``members`` or ``region`` absent from the held record):
  the billing system starting to publish a field is not a move or a new member, and telling
  every account about "new services in your new area" when the field first appears would be
  wrong; a value that disappears (``to`` would be null) is not one either;
- a region written differently but the same (``"CA"`` and ``" ca"``): regions are compared
  stripped and case-folded, while ``change.from`` / ``change.to`` carry the values as published;
- a move to a plan the catalog no longer lists the held one of (its rank is unknown, so
  neither "up" nor "down" can be said), and anything else of the record (limits, anchor).

The event and its id (:func:`domain.wording.events.change_event_id`: the account, the change
type and the record's ``updated_at``) are :func:`domain.wording.events.account_change_event`'s.
A re-delivered record holds no change, so it has no event; two changes of one type in one
record cannot happen.

Suggestions are ``offer`` (with the catalog's ``[offers]`` text) for added members and a new
region, else ``none`` with a rationale; account changes never suggest a plan: the account just
chose one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal, get_args

from domain.common.formatting import format_count, format_money, format_number, format_percent
from domain.intake.accounts import AccountPlan, Status
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import Period
from domain.wording.events import (
    AccountChange,
    Wording,
    account_change_event,
    offer_fields,
)
from domain.wording.messages import account_change_message
from domain.wording.payloads import AccountChangeEvent, ChangeType, SuggestionFields
from domain.wording.templates import Message, Templates

CHANGE_TYPES: Final[tuple[ChangeType, ...]] = get_args(ChangeType)
"""Every ``change.type``, in the contract's order."""

#: The change a new status is: whatever the old one was, ``active`` is a resumption.
_STATUS_CHANGE: Final[Mapping[Status, ChangeType]] = {
    "paused": "paused",
    "active": "resumed",
    "cancelled": "cancelled",
}
_ZERO: Final = Decimal(0)


def _same_region(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def diff_accounts(held: AccountPlan, new: AccountPlan, catalog: Catalog) -> list[AccountChange]:
    """What ``new`` changes of ``held``, in the contract's order (empty: nothing to announce).

    The caller has already decided that ``new`` replaces ``held`` (contract 1.2); neither is
    looked at for its ``updated_at``.
    """
    changes: list[AccountChange] = []
    if new.plan_id != held.plan_id:
        old_plan = catalog.plan(held.plan_id)
        new_plan = catalog.plan(new.plan_id)
        if old_plan is not None and new_plan is not None:
            kind: ChangeType = (
                "plan_upgraded" if new_plan.rank > old_plan.rank else "plan_downgraded"
            )
            changes.append(AccountChange(kind, held.plan_id, new.plan_id))
    if new.status != held.status:
        changes.append(AccountChange(_STATUS_CHANGE[new.status], held.status, new.status))
    if held.members is not None and new.members is not None and new.members > held.members:
        changes.append(AccountChange("members_added", held.members, new.members))
    if (
        held.region is not None
        and new.region is not None
        and not _same_region(held.region, new.region)
    ):
        changes.append(AccountChange("region_changed", held.region, new.region))
    return changes


@dataclass(frozen=True, slots=True)
class _Suggestion:
    action: Literal["offer", "none"]
    rationale: str
    offer: str | None = None

    def fields(self) -> SuggestionFields:
        return offer_fields(self.action, self.rationale, self.offer)


@dataclass(frozen=True, slots=True)
class _Standing:
    """Where the period's usage stands under the new plan's limits."""

    figures: tuple[tuple[str, Decimal, Decimal | None], ...]  # metric, total, limit
    past: tuple[tuple[str, Decimal], ...]  # metric, amount over its limit
    nearest: tuple[str, Decimal, Decimal] | None  # metric, ratio, limit: highest ratio < 1


def _standing(
    account: AccountPlan, plan: Plan, totals: Mapping[str, Decimal], catalog: Catalog
) -> _Standing:
    figures = []
    past = []
    nearest: tuple[str, Decimal, Decimal] | None = None
    for metric in sorted(totals):
        total = totals[metric]
        if total <= _ZERO:
            continue
        limit = account.limit(plan, metric)
        figures.append((metric, total, limit))
        if limit is None:
            continue
        if total > limit:
            past.append((metric, total - limit))
        else:
            ratio = total / limit
            if nearest is None or ratio > nearest[1]:
                nearest = (metric, ratio, limit)
    return _Standing(tuple(figures), tuple(past), nearest)


def _plan_suggestion(
    change: AccountChange, plan: Plan, standing: _Standing, catalog: Catalog
) -> _Suggestion:
    loc = catalog.locale
    if standing.past:
        return _Suggestion(
            "none",
            f"Nothing needs doing now; your next usage counts against {plan.name}'s limits.",
        )
    near = min(plan.near_levels, default=Decimal("0.8"))
    if standing.nearest is not None and standing.nearest[1] >= near:
        metric, ratio, limit = standing.nearest
        return _Suggestion(
            "none",
            f"You're already at {format_percent(ratio, locale=loc)} of {plan.name}'s "
            f"{format_number(limit, locale=loc)} {catalog.unit(metric)} this {catalog.period}, "
            "so keep an "
            "eye on it.",
        )
    if change.type == "plan_upgraded":
        return _Suggestion("none", f"{plan.name} gives you more room; nothing else needs doing.")
    return _Suggestion(
        "none",
        f"Everything you've used this {catalog.period} fits within {plan.name}'s limits; "
        "nothing else needs doing.",
    )


def _other_suggestion(change: AccountChange, plan: Plan, catalog: Catalog) -> _Suggestion:
    if change.type == "paused":
        return _Suggestion("none", "There's nothing to suggest while the plan is paused.")
    if change.type == "resumed":
        return _Suggestion("none", "Nothing else needs doing.")
    if change.type == "cancelled":
        return _Suggestion("none", "There's nothing to suggest for a cancelled account.")
    offers = catalog.offers
    if change.type == "members_added":
        assert isinstance(change.old, int) and isinstance(change.new, int)  # noqa: S101
        offer = offers.members_added
        if offer is not None:
            added = format_count(change.new - change.old, "member", locale=catalog.locale)
            rationale = f"Adding {added} qualifies your account for {offer}."
            return _Suggestion("offer", rationale, offer)
    else:
        offer = offers.region_changed
        if offer is not None:
            return _Suggestion("offer", f"Moving to {change.new} brings {offer}.", offer)
    return _Suggestion(
        "none",
        f"No offer comes with this change; your {plan.name} plan carries on as before.",
    )


def _message_values(change: AccountChange, catalog: Catalog) -> dict[str, str]:
    """The placeholders that only this change type has."""
    loc = catalog.locale
    if change.type in ("plan_upgraded", "plan_downgraded"):
        old_plan = catalog.plan(str(change.old))
        assert old_plan is not None  # noqa: S101  # diff_accounts checked it
        return {
            "old_plan_name": old_plan.name,
            "old_plan_price": format_money(old_plan.price, catalog.currency, locale=loc),
        }
    if change.type in ("paused", "resumed", "cancelled"):
        return {"old_status": str(change.old)}
    if change.type == "members_added":
        assert isinstance(change.old, int) and isinstance(change.new, int)  # noqa: S101
        return {
            "old_members": format_count(change.old, "member", locale=loc),
            "members": format_count(change.new, "member", locale=loc),
            "added": format_count(change.new - change.old, "member", locale=loc),
        }
    return {"old_region": str(change.old), "region": str(change.new)}


def change_events(
    *,
    templates: Templates,
    catalog: Catalog,
    account: AccountPlan,
    changes: list[AccountChange],
    period: Period,
    totals: Mapping[str, Decimal],
    emitted_at_ms: int,
) -> list[AccountChangeEvent]:
    """One ``account-change`` event per change in ``changes`` (of :func:`diff_accounts`) that
    made ``account`` what it is, in order.

    ``period`` is the account's current billing period under ``account`` and ``totals`` its
    usage so far by metric; plan changes say where that usage stands under the new limits
    (the account's overrides, else the new plan's) and carry ``period``.
    """
    plan = catalog.plan(account.plan_id)
    if plan is None:  # the plans handler dead-letters such records; nothing to say
        return []
    standing = _standing(account, plan, totals, catalog)
    wording = Wording(templates, catalog)
    events = []
    for change in changes:
        is_plan = change.type in ("plan_upgraded", "plan_downgraded")
        if is_plan:
            suggestion = _plan_suggestion(change, plan, standing, catalog)
        else:
            suggestion = _other_suggestion(change, plan, catalog)
        message = _message(templates, change, account, plan, catalog, standing, period, suggestion)
        event = account_change_event(
            wording,
            account,
            plan,
            change,
            period if is_plan else None,
            message,
            suggestion.fields(),
            emitted_at_ms,
        )
        events.append(event)
    return events


def _message(
    templates: Templates,
    change: AccountChange,
    account: AccountPlan,
    plan: Plan,
    catalog: Catalog,
    standing: _Standing,
    period: Period,
    suggestion: _Suggestion,
) -> Message:
    key: str = change.type
    if key in ("plan_upgraded", "plan_downgraded") and standing.past:
        key = "plan_past_limit"
    return account_change_message(
        templates,
        key=key,
        catalog=catalog,
        plan=plan,
        account_id=account.account_id,
        changed_at_ms=account.updated_at_ms,
        period=period,
        figures=standing.figures,
        past=standing.past,
        rationale=suggestion.rationale,
        extra=_message_values(change, catalog),
    )
