"""Milestone detection and events (contract 3.4): lifetime totals reaching catalog milestones.

Runs after :func:`domain.intake.batch.run_intake` over the records it listed in
``milestones_due``, in record order. For each, every milestone of the metric's catalog entry
that the record's lifetime total reaches and that was not announced yet becomes announced;
if any did, the record yields one ``milestone`` event for the highest, ``milestone.reached``
listing them all. The announced milestones live in the account's
:class:`~domain.intake.lifetime.AccountLifetime`, which the agent writes back in the same step (and
Kafka transaction) as the events, so each (account, metric, milestone) is announced at most
once, across restarts.

The event and its id are :func:`domain.wording.events.milestone_event`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from domain.intake.lifetime import AccountLifetime, MilestoneDue
from domain.moments.detection import Moment
from domain.plans.catalog import Catalog
from domain.wording.events import Wording, milestone_event
from domain.wording.templates import Templates


@dataclass(slots=True)
class MilestoneResult:
    """Milestone events in emission order, and the accounts whose announcements changed."""

    moments: list[Moment] = field(default_factory=list)
    announced: set[str] = field(default_factory=set)


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
    wording = Wording(templates, catalog)
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
            wording,
            plan,
            item,
            reached,
            milestones.reward,
            now_ms if clock is None else clock(),
        )
        result.moments.append(Moment("milestone", account, payload, item.arrived_ms))
    return result
