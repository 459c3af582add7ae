"""Threshold detection over one batch's accepted records: state in, events out.

Runs after :func:`domain.intake.run_intake` on the same partition group, in
record order, so each record is judged against the period total it produced.
Pure: announced levels come in through a lookup and go out as new state that the
agent writes in the same step (and, under exactly-once, the same transaction) as
the events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from domain.catalog import Catalog
from domain.events import threshold_event
from domain.intake import Accepted
from domain.messages import Templates
from domain.thresholds import AnnouncedLevels, should_announce


@dataclass(frozen=True, slots=True)
class Moment:
    """One event to emit: its kind, account (the Kafka key) and JSON payload."""

    kind: str
    account_id: str
    payload: dict[str, Any]
    arrived_ms: int


@dataclass(slots=True)
class DetectionResult:
    """Events in emission order, and the announced levels that changed."""

    moments: list[Moment] = field(default_factory=list)
    announced: dict[str, AnnouncedLevels] = field(default_factory=dict)


def detect_thresholds(
    accepted: Iterable[Accepted],
    *,
    now_ms: int,
    prune_before_ms: int,
    catalog: Catalog,
    templates: Templates,
    announced_of: Callable[[str], AnnouncedLevels],
) -> DetectionResult:
    """Announce every level the accepted records crossed (contract 3.1).

    At most one event per record (for the highest new level), each (account, metric,
    period, plan, level) at most once. Accounts without a known, active plan and
    metrics without a limit announce nothing.
    """
    result = DetectionResult()
    for item in accepted:
        plan = item.plan
        if plan is None or not should_announce(plan):
            continue
        catalog_plan = catalog.plan(plan.plan_id)
        if catalog_plan is None:  # catalog changed since the plan was stored
            continue
        change = item.change
        limit = plan.limit(catalog_plan, change.metric)
        if limit is None:
            continue
        account = item.record.account_id
        announced = result.announced.get(account)
        if announced is None:
            announced = announced_of(account)
        crossing = announced.observe(
            change.metric, change.period, plan.plan_id, change.after, limit, catalog_plan.levels
        )
        if crossing is None:
            continue
        result.announced[account] = announced
        payload = threshold_event(
            templates=templates,
            catalog=catalog,
            plan=catalog_plan,
            account_id=account,
            metric=change.metric,
            period=change.period,
            total=change.after,
            limit=limit,
            crossing=crossing,
            trigger_record_id=item.record.record_id,
            triggered_at_ms=item.record.timestamp_ms,
            emitted_at_ms=now_ms,
        )
        result.moments.append(Moment(payload["kind"], account, payload, item.raw.arrived_ms))
    for announced in result.announced.values():
        announced.prune(prune_before_ms)
    return result
