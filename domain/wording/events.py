"""Moment events (contract 3): the JSON objects sent to ``moments.<kind>``.

:func:`threshold_event` and :func:`drop_event` take what the detectors know, work out the
projection, the suggestion and the message, and return a JSON-ready dict that validates
against ``config/schemas/moment-event.schema.json``. They are the one place an event's fields
are put together, so the schema, the contract table and the code cannot drift apart unnoticed.

JSON encoding:

- Instants are RFC 3339 in UTC with a ``Z`` (:func:`domain.common.timeutil.to_rfc3339`), with
  milliseconds only when they are not zero: ``2026-11-01T00:00:00Z``.
- Quantities, limits, prices and totals are JSON numbers written exactly
  (:mod:`domain.common.numbers`): an integer when whole and below 2**63 (``10000``, ``19``),
  else the shortest text of a double (``12.5``, ``0.29``, ``1e+20``); the intake refuses records
  whose totals could not be written so. Derived figures (projections, means) are the nearest double.
- Ratios (``usage.ratio``, ``drop.ratio``) are rounded down to 6 decimals, so a ratio never
  shows a level as reached before it is.
- ``level`` and ``crossed_levels`` are always floats, so 1.0 is written ``1.0`` as in the
  contract, and the event's ``level`` text is exactly the level text of its ``event_id``.

Event ids (lowercase hex SHA-256 of UTF-8 text, fields joined by ``|``):

- thresholds: ``<kind>|<account_id>|<metric>|<period_start>|<plan_id>|<level>``, where
  ``period_start`` is the event's ``period.start`` text (``2026-11-01T00:00:00Z``) and
  ``level`` is the shortest decimal text with at least one fractional digit (``0.8``,
  ``0.75``, ``1.0``) - the event's ``level`` as JSON writes it;
- drops: ``sudden-drop|<account_id>|<metric>|<first_recent_day>``, the first of the recent
  days as ``YYYY-MM-DD``;
- recoveries: ``usage-recovered|<account_id>|<metric>|<first_recent_day>``, the first recent
  day of the drop that ended, as ``YYYY-MM-DD``.

Only ``account_id`` may contain ``|`` (metrics, plan ids, instants and levels cannot), and it
sits at a fixed position, so the text of two different moments never coincides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from decimal import ROUND_FLOOR, Decimal, getcontext, localcontext
from typing import Any, Final

from domain.common.numbers import json_number
from domain.common.timeutil import to_rfc3339
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import Period
from domain.rules.anniversaries import MetricRecap, recap_text
from domain.rules.overage import Overage, is_over_level, overage_of, overage_suggestion
from domain.rules.projection import Projection, project, project_recent
from domain.rules.suggestions import (
    Suggestion,
    suggest_after_recovery,
    suggest_for_drop,
    suggest_upgrade,
)
from domain.rules.thresholds import HIT_LEVEL, Crossing, level_text, threshold_kind
from domain.wording.kinds import Kind
from domain.wording.messages import (
    anniversary_message,
    drop_message,
    recovered_message,
    threshold_message,
)
from domain.wording.templates import Message, Templates

SCHEMA_VERSION: Final = 1
"""Value of ``schema_version`` in every event; bumped only for incompatible changes."""

_RATIO_QUANTUM: Final = Decimal("0.000001")


def round_ratio(value: Decimal) -> Decimal:
    """``value`` rounded down to 6 decimals, as ratios are written in events."""
    if value.adjusted() + 10 <= getcontext().prec:  # the context has the digits already
        return value.quantize(_RATIO_QUANTUM, rounding=ROUND_FLOOR)
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, value.adjusted() + 10)
        return value.quantize(_RATIO_QUANTUM, rounding=ROUND_FLOOR)


def ratio_of(part: Decimal, whole: Decimal | None) -> Decimal | None:
    """``part / whole`` rounded down to 6 decimals; ``None`` without a ``whole`` (no limit)."""
    if whole is None or whole <= 0:
        return None
    return round_ratio(part / whole)


def _sha256(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


def event_id(
    kind: str, account_id: str, metric: str, period_start_ms: int, plan_id: str, level: Decimal
) -> str:
    """Id of a threshold moment: SHA-256 of ``kind|account_id|metric|period_start|plan_id|level``
    (``period_start`` as in :func:`to_rfc3339`, ``level`` as in :func:`level_text`)."""
    return _sha256(
        kind, account_id, metric, to_rfc3339(period_start_ms), plan_id, level_text(level)
    )


def drop_event_id(account_id: str, metric: str, first_recent_day: date) -> str:
    """Id of a sudden drop: SHA-256 of ``sudden-drop|account_id|metric|YYYY-MM-DD``."""
    return _sha256("sudden-drop", account_id, metric, first_recent_day.isoformat())


def recovered_event_id(account_id: str, metric: str, dropped_on: date) -> str:
    """Id of a usage recovery: SHA-256 of ``usage-recovered|account_id|metric|YYYY-MM-DD``,
    the day being the first recent day of the drop it ends (its ``dropped_on``)."""
    return _sha256("usage-recovered", account_id, metric, dropped_on.isoformat())


def anniversary_event_id(account_id: str, period_start_ms: int) -> str:
    """Id of a billing anniversary: SHA-256 of ``billing-anniversary|account_id|period_start``."""
    return _sha256("billing-anniversary", account_id, to_rfc3339(period_start_ms))


def _nullable_number(value: Decimal | None) -> int | float | None:
    return None if value is None else json_number(value)


def _drop_figures(
    recent_days: int,
    recent_total: Decimal,
    expected_total: Decimal,
    ratio: Decimal,
    last_active_at_ms: int | None,
) -> dict[str, Any]:
    """The ``drop`` block shared by sudden-drop and usage-recovered events."""
    return {
        "recent_days": recent_days,
        "recent_total": json_number(recent_total),
        "expected_total": json_number(expected_total),
        "ratio": json_number(round_ratio(ratio)),
        "last_active_at": _instant(last_active_at_ms),
    }


def _instant(ms: int | None) -> str | None:
    return None if ms is None else to_rfc3339(ms)


def _base(
    *,
    kind: Kind,
    eid: str,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    limit: Decimal | None,
) -> dict[str, Any]:
    """The fields every kind has, from ``schema_version`` to ``usage``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": eid,
        "kind": kind,
        "account_id": account_id,
        "metric": metric,
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "price": json_number(plan.price),
            "currency": catalog.currency,
        },
        "period": {"start": to_rfc3339(period.start_ms), "end": to_rfc3339(period.end_ms)},
        "usage": {
            "total": json_number(total),
            "limit": _nullable_number(limit),
            "ratio": _nullable_number(ratio_of(total, limit)),
            "unit": catalog.unit(metric),
        },
    }


def _projection(projection: Projection) -> dict[str, Any]:
    return {
        "period_total": json_number(projection.period_total),
        "limit_reached_at": _instant(projection.limit_reached_at_ms),
    }


def _tail(
    message: Message, suggestion: Suggestion, triggered_at_ms: int, emitted_at_ms: int
) -> dict[str, Any]:
    """The fields every kind has, from ``message`` to ``emitted_at``."""
    return {
        "message": {"title": message.title, "body": message.body},
        "suggestion": {
            "action": suggestion.action,
            "plan_id": suggestion.plan_id,
            "plan_name": suggestion.plan_name,
            "price": _nullable_number(suggestion.price),
            "price_delta": _nullable_number(suggestion.price_delta),
            "rationale": suggestion.rationale,
        },
        "triggered_at": to_rfc3339(triggered_at_ms),
        "emitted_at": to_rfc3339(emitted_at_ms),
    }


def threshold_event(
    *,
    templates: Templates,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    limit: Decimal,
    crossing: Crossing,
    trigger_record_id: str,
    triggered_at_ms: int,
    emitted_at_ms: int,
    limit_reached_at_ms: int | None = None,
) -> dict[str, Any]:
    """The threshold-near or threshold-hit event of ``crossing`` (contract 3, 3.1).

    ``total`` is the period total after the trigger record, ``limit`` the account's allotment
    of ``metric`` (its override, else the plan's), ``triggered_at_ms`` the record's event
    time. The kind follows the highest level crossed: 1.0 and above is a hit, and a hit above
    1.0 carries the ``overage`` block when the plan prices overage of ``metric`` (its
    suggestion's rationale then weighs that cost against the upgrade). The projection runs at the
    period-to-date pace as of the record; when this record reached the limit, that is when the
    limit was reached. The suggestion is :func:`~domain.rules.suggestions.suggest_upgrade` of the
    projected total.
    """
    kind = threshold_kind(crossing.level)
    # When this record reached the limit, that is when; else when an earlier one did. A hit
    # above 1.0 whose limit time is unknown (state written before it was kept) falls back to
    # this record's time: the limit was reached by then.
    reached = triggered_at_ms if HIT_LEVEL in crossing.crossed else limit_reached_at_ms
    if reached is None and kind == "threshold-hit":
        reached = triggered_at_ms
    projection = project(total, period, triggered_at_ms, limit, reached)
    suggestion = suggest_upgrade(catalog, plan, metric, projection.period_total, limit)
    overage: Overage | None = None
    if is_over_level(crossing.level):
        overage = overage_of(plan, metric, total, limit, projection.period_total)
        suggestion = overage_suggestion(
            catalog, plan, metric, suggestion, projection.period_total, overage
        )
    message = threshold_message(
        templates,
        kind=kind,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        period=period,
        total=total,
        limit=limit,
        level=crossing.level,
        projection=projection,
        suggestion=suggestion,
        overage=overage,
    )
    event = _base(
        kind=kind,
        eid=event_id(kind, account_id, metric, period.start_ms, plan.id, crossing.level),
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        period=period,
        total=total,
        limit=limit,
    )
    event["level"] = float(crossing.level)
    event["crossed_levels"] = [float(level) for level in crossing.crossed]
    event["trigger_record_id"] = trigger_record_id
    event["projection"] = _projection(projection)
    if overage is not None:
        event["overage"] = {
            "units": json_number(overage.units),
            "unit_price": json_number(overage.unit_price),
            "cost": json_number(overage.cost),
            "projected_cost": json_number(overage.projected_cost),
        }
    event.update(_tail(message, suggestion, triggered_at_ms, emitted_at_ms))
    return event


def drop_event(
    *,
    templates: Templates,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    limit: Decimal | None,
    recent_days: int,
    recent_total: Decimal,
    expected_total: Decimal,
    ratio: Decimal,
    last_active_at_ms: int | None,
    first_recent_day: date,
    evaluated_at_ms: int,
    emitted_at_ms: int,
    limit_reached_at_ms: int | None = None,
) -> dict[str, Any]:
    """The sudden-drop event of an evaluation at ``evaluated_at_ms`` (contract 3, 3.2).

    ``period`` is the billing period containing the evaluation and ``total`` its total so far;
    ``limit`` is the account's allotment (``None``: unlimited, so ``usage.limit`` and
    ``usage.ratio`` are null). ``recent_total`` over ``recent_days`` complete days starting on
    ``first_recent_day`` came to ``ratio`` of ``expected_total``. The projection carries the
    recent pace over the rest of the period, and the suggestion must cover it.
    ``limit_reached_at_ms`` is when the period total reached the limit, if the caller knows.
    """
    projection = project_recent(
        total, period, evaluated_at_ms, limit, recent_total, recent_days, limit_reached_at_ms
    )
    suggestion = suggest_for_drop(
        catalog, plan, metric, recent_total, projection.period_total, recent_days=recent_days
    )
    message = drop_message(
        templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        period=period,
        total=total,
        projection=projection,
        suggestion=suggestion,
        recent_days=recent_days,
        recent_total=recent_total,
        expected_total=expected_total,
        ratio=ratio,
        last_active_at_ms=last_active_at_ms,
        first_recent_day=first_recent_day,
    )
    event = _base(
        kind="sudden-drop",
        eid=drop_event_id(account_id, metric, first_recent_day),
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        period=period,
        total=total,
        limit=limit,
    )
    event["projection"] = _projection(projection)
    event["drop"] = _drop_figures(
        recent_days, recent_total, expected_total, ratio, last_active_at_ms
    )
    event.update(_tail(message, suggestion, evaluated_at_ms, emitted_at_ms))
    return event


def recovered_event(
    *,
    templates: Templates,
    catalog: Catalog,
    plan: Plan,
    paused: bool,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    limit: Decimal | None,
    recent_days: int,
    recent_total: Decimal,
    expected_total: Decimal,
    ratio: Decimal,
    last_active_at_ms: int | None,
    dropped_on: date,
    evaluated_at_ms: int,
    emitted_at_ms: int,
    limit_reached_at_ms: int | None = None,
) -> dict[str, Any]:
    """The usage-recovered event of an evaluation at ``evaluated_at_ms`` that ended the drop
    episode opened on ``dropped_on`` (contract 3, 3.3).

    Fields as in :func:`drop_event`, with the current figures; ``drop`` adds the ended
    drop's ``drop_event_id`` and ``dropped_on``. The suggestion is ``resume`` for a
    ``paused`` account, else ``none``.
    """
    projection = project_recent(
        total, period, evaluated_at_ms, limit, recent_total, recent_days, limit_reached_at_ms
    )
    suggestion = suggest_after_recovery(catalog, plan, metric, paused=paused)
    message = recovered_message(
        templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        period=period,
        total=total,
        projection=projection,
        suggestion=suggestion,
        recent_days=recent_days,
        recent_total=recent_total,
        expected_total=expected_total,
        dropped_on=dropped_on,
    )
    event = _base(
        kind="usage-recovered",
        eid=recovered_event_id(account_id, metric, dropped_on),
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        period=period,
        total=total,
        limit=limit,
    )
    event["projection"] = _projection(projection)
    event["drop"] = {
        **_drop_figures(recent_days, recent_total, expected_total, ratio, last_active_at_ms),
        "drop_event_id": drop_event_id(account_id, metric, dropped_on),
        "dropped_on": dropped_on.isoformat(),
    }
    event.update(_tail(message, suggestion, evaluated_at_ms, emitted_at_ms))
    return event


def anniversary_event(
    *,
    templates: Templates,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    period: Period,
    recap: Sequence[MetricRecap],
    periods_completed: int,
    years: int | None,
    suggestion: Suggestion,
    emitted_at_ms: int,
) -> dict[str, Any]:
    """The billing-anniversary event of the closed ``period`` (contract 3, 3.5).

    ``recap`` holds the period's final totals and the account's limits, one entry per metric
    (see :func:`domain.rules.anniversaries.recap_metrics`); ``triggered_at`` is the period's end.
    """
    message = anniversary_message(
        templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        period=period,
        periods_completed=periods_completed,
        years=years,
        recap=recap_text(catalog, recap),
        suggestion=suggestion,
    )
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": anniversary_event_id(account_id, period.start_ms),
        "kind": "billing-anniversary",
        "account_id": account_id,
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "price": json_number(plan.price),
            "currency": catalog.currency,
        },
        "period": {"start": to_rfc3339(period.start_ms), "end": to_rfc3339(period.end_ms)},
        "recap": {
            "metrics": [
                {
                    "metric": m.metric,
                    "total": json_number(m.total),
                    "limit": _nullable_number(m.limit),
                    "ratio": _nullable_number(ratio_of(m.total, m.limit)),
                    "unit": catalog.unit(m.metric),
                }
                for m in recap
            ],
            "anniversary": {"periods_completed": periods_completed, "years": years},
        },
    }
    event.update(_tail(message, suggestion, period.end_ms, emitted_at_ms))
    return event
