"""Moment events (contract 3): the one place an event's fields are put together.

Each builder takes what the rules know, as small value objects (:class:`Wording`,
:class:`Standing`, :class:`Crossed`, :class:`Evaluation`, :class:`ClosedPeriod`), works out
the projection, the suggestion and the message, and returns the kind's payload model of
:mod:`domain.wording.payloads`, a plain dict in the model's field order that validates against
``config/schemas/moment-event.schema.json`` (generated from the same models).

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
  day of the drop that ended, as ``YYYY-MM-DD``;
- milestones: ``milestone|<account_id>|<metric>|<milestone>``, the milestone as a plain integer
  when whole (``50``), else plain decimal text (``2.5``);
- anniversaries: ``billing-anniversary|<account_id>|<period_start>``;
- account changes: ``account-change|<account_id>|<change.type>|<updated_at>``, the plan record's
  ``updated_at`` as RFC 3339 UTC with ``Z``.

Only ``account_id`` may contain ``|`` (metrics, plan ids, instants and levels cannot), and it
sits at a fixed position, so the text of two different moments never coincides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal, getcontext, localcontext
from typing import Final, Literal, TypedDict

from domain.common.bounded import remember
from domain.common.formatting import format_milestone, format_number
from domain.common.numbers import json_number
from domain.common.timeutil import to_rfc3339
from domain.intake.accounts import AccountPlan
from domain.intake.lifetime import MilestoneDue
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import Period, date_to_day, day_start_ms
from domain.rules.anniversaries import MetricRecap, recap_text
from domain.rules.overage import Overage, is_over_level, overage_of, overage_suggestion
from domain.rules.projection import Projection, has_pace, project, project_recent
from domain.rules.suggestions import (
    Suggestion,
    suggest_after_recovery,
    suggest_for_drop,
    suggest_upgrade,
)
from domain.rules.thresholds import HIT_LEVEL, Crossing, level_text, threshold_kind
from domain.wording.messages import (
    RecentDays,
    Situation,
    anniversary_message,
    birthday_message,
    common_values,
    drop_message,
    milestone_message,
    recovered_message,
    threshold_message_of,
)
from domain.wording.payloads import (
    AccountChangeEvent,
    AnniversaryEvent,
    BirthdayEvent,
    BirthdayFields,
    ChangeType,
    DropEvent,
    DropFields,
    MessageFields,
    MilestoneEvent,
    PeriodFields,
    PlanFields,
    ProjectionFields,
    RecoveredEvent,
    SuggestionFields,
    ThresholdEvent,
    UsageFields,
)
from domain.wording.templates import Message, Templates

SCHEMA_VERSION: Final[Literal[1]] = 1
"""Value of ``schema_version`` in every event; bumped only for incompatible changes."""

_RATIO_QUANTUM: Final = Decimal("0.000001")


def round_ratio(value: Decimal) -> Decimal:
    """``value`` rounded down to 6 decimals, as ratios are written in events."""
    if value.adjusted() + 10 <= getcontext().prec:  # the context has the digits already
        return value.quantize(_RATIO_QUANTUM, ROUND_FLOOR)
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, value.adjusted() + 10)
        return value.quantize(_RATIO_QUANTUM, ROUND_FLOOR)


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


def birthday_event_id(account_id: str, day: date) -> str:
    """``event_id`` of the birthday of ``account_id`` celebrated on ``day``."""
    return _sha256("birthday", account_id, day.isoformat())


def milestone_text(value: Decimal) -> str:
    """A milestone as its event id writes it: ``50`` when whole, else plain decimal ``2.5``."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def milestone_event_id(account_id: str, metric: str, value: Decimal) -> str:
    """Id of a milestone: SHA-256 of ``milestone|account_id|metric|milestone``."""
    return _sha256("milestone", account_id, metric, milestone_text(value))


def change_event_id(account_id: str, change_type: str, updated_at_ms: int) -> str:
    """Id of an account change: SHA-256 of ``account-change|account_id|change_type|updated_at``
    (RFC 3339 UTC, ``Z``)."""
    return _sha256("account-change", account_id, change_type, to_rfc3339(updated_at_ms))


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


@dataclass(frozen=True, slots=True)
class Wording:
    """What every event is written with: the operators' templates and the plan catalog."""

    templates: Templates
    catalog: Catalog


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one metric of an account stands when a moment happens: the account's catalog
    ``plan``, the billing ``period``, its ``total`` so far and the account's ``limit`` (its
    override, else the plan's; ``None``: unlimited)."""

    account_id: str
    plan: Plan
    metric: str
    period: Period
    total: Decimal
    limit: Decimal | None


@dataclass(frozen=True, slots=True)
class Crossed:
    """A record that crossed threshold levels: the ``crossing``, the record's id and event
    time, and when the period's limit was reached by an earlier record, if one did."""

    crossing: Crossing
    record_id: str
    at_ms: int
    limit_reached_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The figures of a drop evaluation at ``evaluated_at_ms``: ``recent_total`` over
    ``recent_days`` complete days came to ``ratio`` of ``expected_total``.
    ``limit_reached_at_ms`` is when the period total reached the limit, if the caller knows."""

    recent_days: int
    recent_total: Decimal
    expected_total: Decimal
    ratio: Decimal
    last_active_at_ms: int | None
    evaluated_at_ms: int
    limit_reached_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ClosedPeriod:
    """A billing period closed for its anniversary: its ``recap`` (one entry per metric, see
    :func:`domain.rules.anniversaries.recap_metrics`), the periods completed and whole years."""

    period: Period
    recap: Sequence[MetricRecap]
    periods_completed: int
    years: int | None


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One change of an account: ``change {type, from, to}`` of an event."""

    type: ChangeType
    old: str | int
    new: str | int


def _nullable_number(value: Decimal | None) -> float | None:
    return None if value is None else json_number(value)


def _instant(ms: int | None) -> str | None:
    return None if ms is None else to_rfc3339(ms)


def plan_fields(plan: Plan, catalog: Catalog) -> PlanFields:
    """``plan {id, name, price, currency}``."""
    return {
        "id": plan.id,
        "name": plan.name,
        "price": json_number(plan.price),
        "currency": catalog.currency,
    }


# The texts of periods written before, by (start, end): an account's events fall in a few
# periods, shared by the accounts of a billing anchor. Cleared when full.
_PERIODS_MAX: Final = 4096
_period_texts: dict[tuple[int, int], tuple[str, str]] = {}


def period_fields(period: Period) -> PeriodFields:
    """``period {start, end}``."""
    start, end = _period_texts_of(period)
    return {"start": start, "end": end}


def _period_texts_of(period: Period) -> tuple[str, str]:
    """:func:`to_rfc3339` of the period's start and end, remembered."""
    key = period.span
    texts = _period_texts.get(key)
    if texts is None:
        texts = (to_rfc3339(period.start_ms), to_rfc3339(period.end_ms))
        remember(_period_texts, key, texts, _PERIODS_MAX)
    return texts


def usage_fields(total: Decimal, limit: Decimal | None, unit: str) -> UsageFields:
    """``usage {total, limit, ratio, unit}``; ``limit`` and ``ratio`` null when unlimited."""
    return {
        "total": json_number(total),
        "limit": _nullable_number(limit),
        "ratio": _nullable_number(ratio_of(total, limit)),
        "unit": unit,
    }


def message_fields(message: Message) -> MessageFields:
    """``message {title, body}``."""
    return {"title": message.title, "body": message.body}


def suggestion_fields(suggestion: Suggestion) -> SuggestionFields:
    """``suggestion`` of a plan suggestion (upgrade, downgrade, pause, resume or none)."""
    return {
        "action": suggestion.action,
        "plan_id": suggestion.plan_id,
        "plan_name": suggestion.plan_name,
        "price": _nullable_number(suggestion.price),
        "price_delta": _nullable_number(suggestion.price_delta),
        "rationale": suggestion.rationale,
    }


def offer_fields(
    action: Literal["reward", "offer", "none"], rationale: str, offer: str | None = None
) -> SuggestionFields:
    """``suggestion`` that names no plan: a reward, an offer (with its text) or nothing."""
    fields: SuggestionFields = {
        "action": action,
        "plan_id": None,
        "plan_name": None,
        "price": None,
        "price_delta": None,
        "rationale": rationale,
    }
    if offer is not None:
        fields["offer"] = offer
    return fields


def _projection_fields(projection: Projection | None) -> ProjectionFields | None:
    if projection is None:  # a level (latest, max): no pace to project
        return None
    return {
        "period_total": json_number(projection.period_total),
        "limit_reached_at": _instant(projection.limit_reached_at_ms),
    }


def _drop_figures(evaluation: Evaluation) -> DropFields:
    """The ``drop`` figures shared by sudden-drop and usage-recovered events."""
    return {
        "recent_days": evaluation.recent_days,
        "recent_total": json_number(evaluation.recent_total),
        "expected_total": json_number(evaluation.expected_total),
        "ratio": json_number(round_ratio(evaluation.ratio)),
        "last_active_at": _instant(evaluation.last_active_at_ms),
    }


def threshold_event(
    wording: Wording, standing: Standing, crossed: Crossed, emitted_at_ms: int
) -> ThresholdEvent:
    """The threshold-near or threshold-hit event of ``crossed`` (contract 3, 3.1).

    ``standing.total`` is the period total after the trigger record and ``standing.limit`` the
    account's allotment (never ``None`` here). The kind follows the highest level crossed: 1.0
    and above is a hit, and a hit above 1.0 carries the ``overage`` block when the plan prices
    overage of the metric (its suggestion's rationale then weighs that cost against the
    upgrade). The projection runs at the period-to-date pace as of the record; when this record
    reached the limit, that is when the limit was reached. The suggestion is
    :func:`~domain.rules.suggestions.suggest_upgrade` of the projected total.
    """
    catalog, plan, metric = wording.catalog, standing.plan, standing.metric
    period, total, limit = standing.period, standing.total, standing.limit
    if limit is None:
        raise ValueError(f"a threshold of {metric!r} needs a limit")
    crossing, triggered_at_ms = crossed.crossing, crossed.at_ms
    level = crossing.level
    kind = threshold_kind(level)
    # A hit above 1.0 whose limit time is unknown (state written before it was kept) falls
    # back to this record's time: the limit was reached by then.
    reached = triggered_at_ms if HIT_LEVEL in crossing.crossed else crossed.limit_reached_at_ms
    if reached is None and kind == "threshold-hit":
        reached = triggered_at_ms
    fixed = _threshold_fixed(catalog, plan, metric, limit)
    projection: Projection | None = None
    heading = total  # a level has no pace: plans must hold what it is now
    if fixed.has_pace:
        projection = project(total, period, triggered_at_ms, limit, reached)
        heading = projection.period_total
    suggestion = suggest_upgrade(catalog, plan, metric, heading, limit)
    overage: Overage | None = None
    if is_over_level(level):
        overage = overage_of(plan, metric, total, limit, heading)
        suggestion = overage_suggestion(catalog, plan, metric, suggestion, heading, overage)
    account_id = standing.account_id
    values = common_values(
        catalog, plan, account_id, metric, period, total, projection, suggestion, limit
    )
    message = threshold_message_of(
        wording.templates,
        values,
        catalog,
        metric,
        total,
        projection,
        suggestion,
        kind,
        limit,
        level,
        overage,
        reached,
    )
    start, end = _period_texts_of(period)
    event: ThresholdEvent = {
        "schema_version": SCHEMA_VERSION,
        # event_id(), with the period's start as period_fields writes it
        "event_id": _sha256(kind, account_id, metric, start, plan.id, level_text(level)),
        "kind": kind,
        "account_id": account_id,
        "metric": metric,
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "price": fixed.price,
            "currency": catalog.currency,
        },
        "period": {"start": start, "end": end},
        "usage": {
            "total": json_number(total),
            "limit": fixed.limit,
            "ratio": json_number(round_ratio(total / limit)),  # limits are > 0
            "unit": fixed.unit,
        },
        "level": float(level),
        "crossed_levels": [float(crossed_level) for crossed_level in crossing.crossed],
        "trigger_record_id": crossed.record_id,
        "projection": _projection_fields(projection),
    }  # type: ignore[typeddict-item]  # the rest follows, in field order
    if overage is not None:
        event["overage"] = {
            "units": json_number(overage.units),
            "unit_price": json_number(overage.unit_price),
            "cost": json_number(overage.cost),
            "projected_cost": json_number(overage.projected_cost),
        }
    event["message"] = {"title": message.title, "body": message.body}
    event["suggestion"] = {
        "action": suggestion.action,
        "plan_id": suggestion.plan_id,
        "plan_name": suggestion.plan_name,
        "price": _catalog_number(suggestion.price),
        "price_delta": _catalog_number(suggestion.price_delta),
        "rationale": suggestion.rationale,
    }
    event["triggered_at"] = to_rfc3339(triggered_at_ms)
    event["emitted_at"] = to_rfc3339(emitted_at_ms)
    return event


@dataclass(frozen=True, slots=True)
class _ThresholdFixed:
    """What a threshold event of one catalog, plan, metric and limit always writes the same:
    whether the metric has a pace, its unit, and the plan's price and the limit as JSON numbers.
    ``catalog`` and ``plan`` are held so that their ids, which key the cache, stay theirs."""

    catalog: Catalog
    plan: Plan
    has_pace: bool
    unit: str
    price: int | float
    limit: int | float


# _ThresholdFixed by (catalog, plan, metric, limit): a few plans and metrics make nearly every
# threshold event. Catalogs and plans are immutable (read once at start-up). Bounded (accounts
# may have limits of their own).
_FIXED_MAX: Final = 4096
_threshold_fixed_of: dict[tuple[int, int, str, Decimal], _ThresholdFixed] = {}


def _threshold_fixed(catalog: Catalog, plan: Plan, metric: str, limit: Decimal) -> _ThresholdFixed:
    key = (id(catalog), id(plan), metric, limit)
    fixed = _threshold_fixed_of.get(key)
    if fixed is None or fixed.catalog is not catalog or fixed.plan is not plan:
        fixed = _ThresholdFixed(
            catalog,
            plan,
            has_pace(catalog.aggregations.get(metric)),
            catalog.unit(metric),
            json_number(plan.price),
            json_number(limit),
        )
        remember(_threshold_fixed_of, key, fixed, _FIXED_MAX)
    return fixed


# JSON numbers of the amounts a catalog makes (suggested prices, price differences), by value:
# json_number depends on the value only, and a catalog has few such amounts. Bounded.
_NUMBERS_MAX: Final = 4096
_catalog_numbers: dict[Decimal, int | float] = {}


def _catalog_number(value: Decimal | None) -> int | float | None:
    """``_nullable_number(value)`` of a catalog amount, remembered."""
    if value is None:
        return None
    number = _catalog_numbers.get(value)
    if number is None:
        number = remember(_catalog_numbers, value, json_number(value), _NUMBERS_MAX)
    return number


class _RecentHead(TypedDict):
    """The fields of a sudden-drop or usage-recovered event between ``metric`` and ``drop``."""

    plan: PlanFields
    period: PeriodFields
    usage: UsageFields
    projection: ProjectionFields | None


class _RecentTail(TypedDict):
    """The fields of a sudden-drop or usage-recovered event after ``drop``."""

    message: MessageFields
    suggestion: SuggestionFields
    triggered_at: str
    emitted_at: str


def _situation(
    wording: Wording, standing: Standing, projection: Projection | None, suggestion: Suggestion
) -> Situation:
    """What the message of a usage moment of ``standing`` speaks of."""
    return Situation(
        catalog=wording.catalog,
        plan=standing.plan,
        account_id=standing.account_id,
        metric=standing.metric,
        period=standing.period,
        total=standing.total,
        projection=projection,
        suggestion=suggestion,
    )


def _recent_days(evaluation: Evaluation) -> RecentDays:
    return RecentDays(evaluation.recent_days, evaluation.recent_total, evaluation.expected_total)


def _recent_head(wording: Wording, situation: Situation, limit: Decimal | None) -> _RecentHead:
    catalog = wording.catalog
    return {
        "plan": plan_fields(situation.plan, catalog),
        "period": period_fields(situation.period),
        "usage": usage_fields(situation.total, limit, catalog.unit(situation.metric)),
        "projection": _projection_fields(situation.projection),
    }


def _recent_tail(
    message: Message, situation: Situation, evaluation: Evaluation, emitted_at_ms: int
) -> _RecentTail:
    return {
        "message": message_fields(message),
        "suggestion": suggestion_fields(situation.suggestion),
        "triggered_at": to_rfc3339(evaluation.evaluated_at_ms),
        "emitted_at": to_rfc3339(emitted_at_ms),
    }


def drop_event(
    wording: Wording,
    standing: Standing,
    evaluation: Evaluation,
    first_recent_day: date,
    emitted_at_ms: int,
) -> DropEvent:
    """The sudden-drop event of ``evaluation`` (contract 3, 3.2), whose recent days start on
    ``first_recent_day``.

    ``standing`` holds the billing period containing the evaluation and its total so far; an
    unlimited metric has null ``usage.limit`` and ``usage.ratio``. The projection carries the
    recent pace over the rest of the period, and the suggestion must cover it.
    """
    projection = _recent_projection(wording, standing, evaluation)
    suggestion = suggest_for_drop(
        wording.catalog,
        standing.plan,
        standing.metric,
        evaluation.recent_total,
        standing.total if projection is None else projection.period_total,
        recent_days=evaluation.recent_days,
    )
    situation = _situation(wording, standing, projection, suggestion)
    message = drop_message(
        wording.templates,
        situation,
        _recent_days(evaluation),
        ratio=evaluation.ratio,
        last_active_at_ms=evaluation.last_active_at_ms,
        first_recent_day=first_recent_day,
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": drop_event_id(standing.account_id, standing.metric, first_recent_day),
        "kind": "sudden-drop",
        "account_id": standing.account_id,
        "metric": standing.metric,
        **_recent_head(wording, situation, standing.limit),
        "drop": _drop_figures(evaluation),
        **_recent_tail(message, situation, evaluation, emitted_at_ms),
    }


def recovered_event(
    wording: Wording,
    standing: Standing,
    evaluation: Evaluation,
    dropped_on: date,
    emitted_at_ms: int,
    *,
    paused: bool,
) -> RecoveredEvent:
    """The usage-recovered event of ``evaluation``, which ended the drop episode opened on
    ``dropped_on`` (contract 3, 3.3).

    Fields as in :func:`drop_event`, with the current figures; ``drop`` adds the ended drop's
    ``drop_event_id`` and ``dropped_on``. The suggestion is ``resume`` for a ``paused``
    account, else ``none``.
    """
    account_id, metric = standing.account_id, standing.metric
    projection = _recent_projection(wording, standing, evaluation)
    suggestion = suggest_after_recovery(wording.catalog, standing.plan, metric, paused=paused)
    situation = _situation(wording, standing, projection, suggestion)
    message = recovered_message(
        wording.templates, situation, _recent_days(evaluation), dropped_on=dropped_on
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": recovered_event_id(account_id, metric, dropped_on),
        "kind": "usage-recovered",
        "account_id": account_id,
        "metric": metric,
        **_recent_head(wording, situation, standing.limit),
        "drop": {
            **_drop_figures(evaluation),
            "drop_event_id": drop_event_id(account_id, metric, dropped_on),
            "dropped_on": dropped_on.isoformat(),
        },
        **_recent_tail(message, situation, evaluation, emitted_at_ms),
    }


def _recent_projection(
    wording: Wording, standing: Standing, evaluation: Evaluation
) -> Projection | None:
    """The period projected at the recent days' pace (drops and recoveries); ``None`` for a
    level, which has no pace."""
    if not has_pace(wording.catalog.aggregations.get(standing.metric)):
        return None
    return project_recent(
        standing.total,
        standing.period,
        evaluation.evaluated_at_ms,
        standing.limit,
        evaluation.recent_total,
        evaluation.recent_days,
        evaluation.limit_reached_at_ms,
    )


def milestone_event(
    wording: Wording,
    plan: Plan,
    due: MilestoneDue,
    reached: Sequence[Decimal],
    reward: str,
    emitted_at_ms: int,
) -> MilestoneEvent:
    """The ``milestone`` event of the record of ``due``, which reached ``reached`` (ascending,
    non-empty) of its metric's milestones, whose reward is ``reward`` (contract 3.4).

    ``period`` and ``usage`` (the record's billing period and its total after the record) are
    included when the record's period is still held (not a late record).
    """
    catalog, record = wording.catalog, due.record
    account_id, metric, lifetime_total = record.account_id, record.metric, due.lifetime_total
    value = reached[-1]
    rationale = reward_rationale(catalog, metric, value, lifetime_total)
    message = milestone_message(
        wording.templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        metric=metric,
        value=value,
        reached=reached,
        lifetime_total=lifetime_total,
        reward=reward,
        rationale=rationale,
    )
    event: MilestoneEvent = {
        "schema_version": SCHEMA_VERSION,
        "event_id": milestone_event_id(account_id, metric, value),
        "kind": "milestone",
        "account_id": account_id,
        "metric": metric,
        "plan": plan_fields(plan, catalog),
    }  # type: ignore[typeddict-item]  # the rest follows, in field order
    if due.period is not None and due.period_total is not None:
        event["period"] = period_fields(due.period)
        limit = due.plan.limit(plan, metric)
        event["usage"] = usage_fields(due.period_total, limit, catalog.unit(metric))
    event["milestone"] = {
        "value": json_number(value),
        "lifetime_total": json_number(lifetime_total),
        "reached": [json_number(m) for m in reached],
    }
    event["message"] = message_fields(message)
    event["suggestion"] = offer_fields("reward", rationale, reward)
    event["triggered_at"] = to_rfc3339(record.timestamp_ms)
    event["emitted_at"] = to_rfc3339(emitted_at_ms)
    return event


def anniversary_event(
    wording: Wording,
    account_id: str,
    plan: Plan,
    closed: ClosedPeriod,
    suggestion: Suggestion,
    emitted_at_ms: int,
) -> AnniversaryEvent:
    """The billing-anniversary event of the ``closed`` period (contract 3, 3.5);
    ``triggered_at`` is the period's end."""
    catalog, period = wording.catalog, closed.period
    additive = ("sum", "count")
    levels = any(catalog.aggregation(m.metric) not in additive for m in closed.recap)
    message = anniversary_message(
        wording.templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        period=period,
        periods_completed=closed.periods_completed,
        years=closed.years,
        recap=recap_text(catalog, closed.recap),
        suggestion=suggestion,
        levels=levels,
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": anniversary_event_id(account_id, period.start_ms),
        "kind": "billing-anniversary",
        "account_id": account_id,
        "plan": plan_fields(plan, catalog),
        "period": period_fields(period),
        "recap": {
            "metrics": [
                {"metric": m.metric, **usage_fields(m.total, m.limit, catalog.unit(m.metric))}
                for m in closed.recap
            ],
            "anniversary": {"periods_completed": closed.periods_completed, "years": closed.years},
        },
        "message": message_fields(message),
        "suggestion": suggestion_fields(suggestion),
        "triggered_at": to_rfc3339(period.end_ms),
        "emitted_at": to_rfc3339(emitted_at_ms),
    }


def account_change_event(
    wording: Wording,
    account: AccountPlan,
    plan: Plan,
    change: AccountChange,
    period: Period | None,
    message: Message,
    suggestion: SuggestionFields,
    emitted_at_ms: int,
) -> AccountChangeEvent:
    """The ``account-change`` event of ``change``, which made ``account`` what it is, on
    ``plan`` (contract 3.6); ``period`` (the current billing period) for plan changes only.
    The message and the suggestion are :mod:`domain.moments.changes`' to choose."""
    event: AccountChangeEvent = {
        "schema_version": SCHEMA_VERSION,
        "event_id": change_event_id(account.account_id, change.type, account.updated_at_ms),
        "kind": "account-change",
        "account_id": account.account_id,
        "plan": plan_fields(plan, wording.catalog),
    }  # type: ignore[typeddict-item]  # the rest follows, in field order
    if period is not None:
        event["period"] = period_fields(period)
    event["change"] = {"type": change.type, "from": change.old, "to": change.new}
    event["message"] = message_fields(message)
    event["suggestion"] = suggestion
    event["triggered_at"] = to_rfc3339(account.updated_at_ms)
    event["emitted_at"] = to_rfc3339(emitted_at_ms)
    return event


def birthday_event(
    wording: Wording,
    account_id: str,
    plan: Plan,
    period: Period,
    day: date,
    age: int | None,
    emitted_at_ms: int,
) -> BirthdayEvent:
    """The ``birthday`` event of ``day`` (contract 3.7): the greeting, with ``age`` when given,
    and the catalog's ``offers.birthday`` when it has one; ``triggered_at`` is the day's
    start, ``period`` the billing period containing it."""
    catalog = wording.catalog
    offer = catalog.offers.birthday
    rationale = (
        "A birthday gift from us." if offer is not None else "Nothing to do: just our wishes."
    )
    message = birthday_message(
        wording.templates,
        catalog=catalog,
        plan=plan,
        account_id=account_id,
        day=day,
        age=age,
        offer=offer,
        rationale=rationale,
    )
    birthday: BirthdayFields = {"day": day.isoformat()}
    if age is not None:
        birthday["age"] = age
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": birthday_event_id(account_id, day),
        "kind": "birthday",
        "account_id": account_id,
        "plan": plan_fields(plan, catalog),
        "period": period_fields(period),
        "birthday": birthday,
        "message": message_fields(message),
        "suggestion": offer_fields("offer", rationale, offer)
        if offer is not None
        else offer_fields("none", rationale),
        "triggered_at": to_rfc3339(day_start_ms(date_to_day(day))),
        "emitted_at": to_rfc3339(emitted_at_ms),
    }
