"""Milestone detection and events (contract 3.4): lifetime totals reaching catalog milestones.

Runs after :func:`domain.intake.batch.run_intake` over the records it listed in
``milestones_due``, in record order. For each, every milestone of the metric's catalog entry
that the record's lifetime total reaches and that was not announced yet becomes announced;
if any did, the record yields one ``milestone`` event for the highest, ``milestone.reached``
listing them all. The announced milestones live in the account's
:class:`~domain.intake.lifetime.AccountLifetime`, which the agent writes back in the same step (and
Kafka transaction) as the events, so each (account, metric, milestone) is announced at most
once, across restarts.

Event id: SHA-256 of ``milestone|<account_id>|<metric>|<milestone>``, the milestone as a plain
integer when whole (``50``), else plain decimal text (``2.5``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.common.formatting import format_milestone, format_number
from domain.common.numbers import json_number
from domain.common.timeutil import to_rfc3339
from domain.intake.lifetime import AccountLifetime, MilestoneDue
from domain.moments.detection import Moment
from domain.plans.catalog import Catalog, Milestones, Plan
from domain.wording.events import SCHEMA_VERSION, ratio_of
from domain.wording.messages import milestone_message
from domain.wording.templates import Templates


@dataclass(slots=True)
class MilestoneResult:
    """Milestone events in emission order, and the accounts whose announcements changed."""

    moments: list[Moment] = field(default_factory=list)
    announced: set[str] = field(default_factory=set)


def milestone_text(value: Decimal) -> str:
    """A milestone as its event id writes it: ``50`` when whole, else plain decimal ``2.5``."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def milestone_event_id(account_id: str, metric: str, value: Decimal) -> str:
    """Id of a milestone: SHA-256 of ``milestone|account_id|metric|milestone``."""
    text = "|".join(("milestone", account_id, metric, milestone_text(value)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def reward_rationale(catalog: Catalog, metric: str, value: Decimal, total: Decimal) -> str:
    """Why a reward now: ``Celebrating your 50th purchase (52 purchases in all) with a reward
    thanks a loyal customer while the moment is fresh.``"""
    loc = catalog.locale
    unit = catalog.unit(metric)
    return (
        f"Celebrating {format_milestone(value, unit, locale=loc)} "
        f"({format_number(total, locale=loc)} {unit} in all) "
        f"with a reward thanks a loyal customer while the moment is fresh."
    )


def milestone_event(
    *,
    templates: Templates,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    milestones: Milestones,
    reached: Sequence[Decimal],
    lifetime_total: Decimal,
    due: MilestoneDue,
    emitted_at_ms: int,
) -> dict[str, Any]:
    """The ``milestone`` event of a record that reached ``reached`` (ascending, non-empty).

    ``period`` and ``usage`` (the record's billing period and its total after the record) are
    included when the record's period is still held (not a late record).
    """
    value = reached[-1]
    rationale = reward_rationale(catalog, metric, value, lifetime_total)
    message = milestone_message(
        templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        value=value,
        reached=reached,
        lifetime_total=lifetime_total,
        reward=milestones.reward,
        rationale=rationale,
    )
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": milestone_event_id(account_id, metric, value),
        "kind": "milestone",
        "account_id": account_id,
        "metric": metric,
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "price": json_number(plan.price),
            "currency": catalog.currency,
        },
    }
    if due.period is not None and due.period_total is not None:
        limit = due.plan.limit(plan, metric)
        event["period"] = {
            "start": to_rfc3339(due.period.start_ms),
            "end": to_rfc3339(due.period.end_ms),
        }
        ratio = ratio_of(due.period_total, limit)
        event["usage"] = {
            "total": json_number(due.period_total),
            "limit": None if limit is None else json_number(limit),
            "ratio": None if ratio is None else json_number(ratio),
            "unit": catalog.unit(metric),
        }
    event["milestone"] = {
        "value": json_number(value),
        "lifetime_total": json_number(lifetime_total),
        "reached": [json_number(m) for m in reached],
    }
    event["message"] = {"title": message.title, "body": message.body}
    event["suggestion"] = {
        "action": "reward",
        "plan_id": None,
        "plan_name": None,
        "price": None,
        "price_delta": None,
        "rationale": rationale,
        "offer": milestones.reward,
    }
    event["triggered_at"] = to_rfc3339(due.record.timestamp_ms)
    event["emitted_at"] = to_rfc3339(emitted_at_ms)
    return event


def detect_milestones(
    due: Iterable[MilestoneDue],
    *,
    lifetime_of: Callable[[str], AccountLifetime],
    catalog: Catalog,
    templates: Templates,
    now_ms: int,
    clock: Callable[[], int] | None = None,
) -> MilestoneResult:
    """Announce the milestones the listed records reached (contract 3.4).

    ``lifetime_of`` gives the account's lifetime state as the intake left it (the agent
    passes the intake's own objects); announcements are marked on it. At most one event per
    record, for the highest new milestone. A plan no longer in the catalog announces nothing
    (and marks nothing, so a later record announces once it is). ``clock`` stamps each event's
    ``emitted_at`` as it is made (``now_ms`` without one).
    """
    result = MilestoneResult()
    for item in due:
        record = item.record
        metric = record.metric
        account = record.account_id
        lifetime = lifetime_of(account)
        milestones = catalog.milestones.get(metric)
        plan = catalog.plan(item.plan.plan_id)
        if milestones is None or plan is None:
            lifetime.unlist(metric)
            continue
        reached = lifetime.announce(metric, milestones, item.lifetime_total)
        if not reached:
            continue
        result.announced.add(account)
        payload = milestone_event(
            templates=templates,
            catalog=catalog,
            plan=plan,
            account_id=account,
            metric=metric,
            milestones=milestones,
            reached=reached,
            lifetime_total=item.lifetime_total,
            due=item,
            emitted_at_ms=now_ms if clock is None else clock(),
        )
        result.moments.append(Moment("milestone", account, payload, item.arrived_ms))
    return result
