"""Threshold detection over one batch's accepted records: state in, events out.

Runs after :func:`domain.intake.batch.run_intake` on the same partition group, in
record order, so each record is judged against the period total it produced.
Pure: announced levels come in through a lookup and go out as new state that the
agent writes in the same step (and, under exactly-once, the same transaction) as
the events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from domain.common.bounded import remember
from domain.intake.accounts import AccountPlan
from domain.intake.batch import Accepted
from domain.plans.catalog import Catalog, Plan
from domain.rules.thresholds import (
    HIT_LEVEL,
    AnnouncedLevels,
    Threshold,
    should_announce,
    thresholds,
)
from domain.wording.events import Crossed, Standing, Wording, threshold_event
from domain.wording.payloads import Payload
from domain.wording.templates import Templates


@dataclass(frozen=True, slots=True)
class Moment:
    """One event to emit: its kind, account (the Kafka key) and JSON payload."""

    kind: str
    account_id: str
    payload: Payload
    arrived_ms: int


@dataclass(slots=True)
class DetectionResult:
    """Events in emission order, and the announced levels that changed."""

    moments: list[Moment] = field(default_factory=list)
    announced: dict[str, AnnouncedLevels] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Limit:
    """What detection needs of a metric under a plan: the catalog plan, the account's limit,
    the levels with the totals that reach them, and the lowest of those totals."""

    catalog_plan: Plan
    limit: Decimal
    levels: tuple[Threshold, ...]
    lowest: Decimal


_LimitKey = tuple[str, str, str | None]

_UNSEEN: Final = _Limit(Plan("", "", -1, Decimal(0), False, {}, ()), Decimal(0), (), Decimal(0))
"""A marker: what a plan's metric maps to in :func:`detect_thresholds` before it is first
looked up (one dict lookup per record rather than two)."""

# _limit_of remembered per catalog (by id, the catalog kept alive next to its entries) and per
# (plan id, metric, the account's own limit): a few plans and metrics make nearly every
# record's limit. Bounded like the other caches (accounts may have limits of their own).
_LIMITS_MAX: Final = 65_536
_CATALOGS_MAX: Final = 8
_limits: dict[int, tuple[Catalog, dict[_LimitKey, _Limit | None]]] = {}


def _limits_of(catalog: Catalog) -> dict[_LimitKey, _Limit | None]:
    """The remembered limits of ``catalog``."""
    held = _limits.get(id(catalog))
    if held is None or held[0] is not catalog:
        held = remember(_limits, id(catalog), (catalog, {}), _CATALOGS_MAX)
    return held[1]


def _limit(
    limits: dict[_LimitKey, _Limit | None], plan: AccountPlan, metric: str, catalog: Catalog
) -> _Limit | None:
    """``_limit_of(plan, metric, catalog)``, remembered in ``limits`` (``_limits_of(catalog)``)."""
    own = plan.limits.get(metric)
    # An own limit by its text, so a remembered limit has the very digits of this one.
    key = (plan.plan_id, metric, None if own is None else str(own))
    try:
        return limits[key]
    except KeyError:
        found = _limit_of(plan, metric, catalog)
        remember(limits, key, found, _LIMITS_MAX)
        return found


def _limit_of(plan: AccountPlan, metric: str, catalog: Catalog) -> _Limit | None:
    """The thresholds of ``metric`` under ``plan``; None when nothing can be announced (the
    plan is no longer in the catalog, or the metric has no limit)."""
    catalog_plan = catalog.plan(plan.plan_id)
    if catalog_plan is None:  # catalog changed since the plan was stored
        return None
    limit = plan.limit(catalog_plan, metric)
    if limit is None:
        return None
    levels = thresholds(catalog_plan.levels, limit)
    if not levels:
        return None
    return _Limit(catalog_plan, limit, levels, min(at for _, at in levels))


def detect_thresholds(
    accepted: Iterable[Accepted],
    *,
    now_ms: int,
    prune_before_ms: int,
    catalog: Catalog,
    templates: Templates,
    announced_of: Callable[[str], AnnouncedLevels],
    clock: Callable[[], int] | None = None,
) -> DetectionResult:
    """Announce every level the accepted records crossed (contract 3.1).

    At most one event per record (for the highest new level), each (account, metric,
    period, plan, level) at most once. Accounts without a known, active plan and
    metrics without a limit announce nothing. An account's announced levels are looked up
    (once per batch) only when one of its totals reaches a level. ``clock`` stamps each
    event's ``emitted_at`` as it is made (``now_ms`` without one).
    """
    result = DetectionResult()
    changed = result.announced
    loaded: dict[str, AnnouncedLevels] = {}
    limits = _limits_of(catalog)
    wording = Wording(templates, catalog)
    # What each plan object of the batch (one per account: the intake reads a plan once per
    # batch) announces per metric: its _Limit, or None when it announces nothing. Two dict
    # lookups per record instead of the tests and the key of _limit.
    by_plan: dict[int, tuple[AccountPlan, dict[str, _Limit | None]]] = {}
    for item in accepted:
        plan = item.plan
        if plan is None:
            continue
        change = item  # an Accepted is its own Change
        metric = change.metric
        held = by_plan.get(id(plan))
        if held is None or held[0] is not plan:
            held = by_plan[id(plan)] = (plan, {})
        of_plan = held[1]
        found = of_plan.get(metric, _UNSEEN)
        if found is _UNSEEN:
            announces = should_announce(plan)
            found = of_plan[metric] = _limit(limits, plan, metric, catalog) if announces else None
        if found is None:
            continue
        total = change.after
        if total < found.lowest:  # below every level: nothing to announce, nothing to read
            continue
        account = item.record.account_id
        announced = loaded.get(account)
        if announced is None:
            announced = loaded[account] = announced_of(account)
        crossing = announced.observe_thresholds(
            metric, change.period, plan.plan_id, total, found.levels
        )
        if crossing is None:
            continue
        changed[account] = announced
        if HIT_LEVEL in crossing.crossed:
            announced.note_reached(metric, change.period, plan.plan_id, item.record.timestamp_ms)
        standing = Standing(account, found.catalog_plan, metric, change.period, total, found.limit)
        crossed = Crossed(
            crossing,
            item.record.record_id,
            item.record.timestamp_ms,
            announced.reached_at(metric, change.period, plan.plan_id),
        )
        emitted_at_ms = now_ms if clock is None else clock()
        payload = threshold_event(wording, standing, crossed, emitted_at_ms)
        result.moments.append(Moment(payload["kind"], account, payload, item.raw.timestamp))
    for announced in changed.values():
        announced.prune(prune_before_ms)
    return result
