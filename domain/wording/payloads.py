"""The event payloads (contract 3): one typed model per kind, the source of every copy.

Each kind's payload is a ``TypedDict`` listing its fields in the order they are sent, so the
builders of :mod:`domain.wording.events` are type-checked against it and a payload stays a
plain dict on the hot path (nothing to convert before ``orjson``). :class:`MomentEvent` is the
union of them: every field any kind may carry, with its widest type, in the guide's order. The
fields carry their facts as ``Annotated`` metadata:

- :class:`Schema`: JSON Schema keywords beyond the type (pattern, bounds, format);
- :class:`Doc`: the field's description in the JSON Schema;
- :class:`Row`: its row in the field table of ``docs/events.md`` (type, null, meaning);
- :class:`Define`: a type the schema defines once under ``$defs`` (instants, levels);
- :class:`Presence`: on a kind model's field, when that kind carries it (guide only);
- :data:`KIND_ONLY`: on a :class:`MomentEvent` field, kinds whose model lacks the field must
  not carry it; the general fields (metric, period, usage, projection) are merely absent.

:mod:`domain.wording.event_schema` turns these into ``config/schemas/moment-event.schema.json``
and the field table; ``tests/unit/test_event_schema.py`` fails when a committed copy differs
from what the models give. What a type cannot say (a ``threshold-near`` is below 1.0, a
``downgrade`` names a cheaper plan) is written as :class:`Rule` lists next to the models.
"""

# No ``from __future__ import annotations``: TypedDict reads ``Required``/``NotRequired`` from
# evaluated annotations only (Python 3.11).
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, NotRequired, Required, TypedDict

from domain.rules.thresholds import ThresholdKind
from domain.wording.kinds import KINDS

ChangeType = Literal[
    "plan_upgraded",
    "plan_downgraded",
    "paused",
    "resumed",
    "cancelled",
    "members_added",
    "region_changed",
]
"""Every ``change.type``, in the contract's order."""

Action = Literal["upgrade", "downgrade", "pause", "resume", "reward", "offer", "none"]
"""Every ``suggestion.action``."""


class Schema:
    """JSON Schema keywords of a field beyond its type, in the order the schema writes them."""

    __slots__ = ("keywords",)

    def __init__(self, **keywords: Any) -> None:
        self.keywords: Mapping[str, Any] = keywords


@dataclass(frozen=True, slots=True)
class Doc:
    """A field's ``description`` in the JSON Schema."""

    text: str


@dataclass(frozen=True, slots=True)
class Row:
    """A field's row in the field table of ``docs/events.md``. ``{choices}`` in ``type`` stands
    for the field's ``Literal`` values; fields in a row with the same texts share one row."""

    type: str
    null: str
    meaning: str


@dataclass(frozen=True, slots=True)
class Rule:
    """What a type cannot carry: when ``key`` (of the event, or of the suggestion) is one of
    ``values``, ``then`` applies (else ``otherwise``, if given). Schema fragments, as written."""

    key: str
    values: tuple[str, ...]
    then: Mapping[str, Any]
    otherwise: Mapping[str, Any] | None = None
    description: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class Define:
    """A type the schema defines once, under ``$defs/<name>``, and refers to."""

    name: str
    description: str
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class Presence:
    """When a kind carries a field, in the guide's table of fields by kind, where "yes" (a
    required field) or "-" (a field its model lacks) does not say it."""

    text: str


@dataclass(frozen=True, slots=True)
class Actions:
    """The suggestion actions a kind may carry (a narrowing of :data:`Action`)."""

    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class KindOnly:
    """Marks a :class:`MomentEvent` field that only the kinds whose model has it may carry."""


KIND_ONLY: Final = KindOnly()


NEVER: Final = "never"

Instant = Annotated[
    str,
    Define("instant", "RFC 3339 date-time in UTC with a Z."),
    Schema(
        format="date-time",
        pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?Z$",
    ),
]
"""An instant as events write it: ``2026-11-01T00:00:00Z``, ``2026-11-18T10:00:00.412Z``."""

Level = Annotated[
    float,
    Define("level", "A fraction of the limit: near levels in (0, 1), 1.0, overage levels above 1."),
    Schema(exclusiveMinimum=0),
]
"""A threshold level; always a float, so that 1.0 is written ``1.0``."""

# JSON numbers are typed ``float`` (an ``int`` is one to a type checker): ``json_number`` writes
# an int when the value is whole and below 2**63. ``int`` fields are integers in the schema.
EventId = Annotated[str, Schema(pattern="^[0-9a-f]{64}$")]
Metric = Annotated[str, Schema(pattern="^[a-z0-9_.-]{1,64}$")]
Text = Annotated[str, Schema(minLength=1)]
RecordId = Annotated[str, Schema(minLength=1, maxLength=128)]
Amount = Annotated[float, Schema(minimum=0)]
Positive = Annotated[float, Schema(exclusiveMinimum=0)]
Day = Annotated[str, Schema(format="date", pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]

_PLAN_NAMES: Final = Row("string", NEVER, "Catalog id (`starter`) and display name (`Starter`).")
_PERIOD_ENDS: Final = Row(
    "instant",
    NEVER,
    "Start (inclusive) and end (exclusive) of the period; at `end`, usage starts again from zero.",
)
_CHANGE_VALUES: Final = Row(
    "string or integer",
    "`from` may be null by the schema; the workers do not send that (a value not known before "
    "is not a change)",
    "The old and new value: plan ids, statuses, member counts or regions.",
)
_MESSAGE_TEXT: Final = Row(
    "non-empty string",
    NEVER,
    "Subject line and a few sentences of plain text (no HTML, no markdown).",
)
_UNLESS_PLAN: Final = "unless the action is `upgrade` or `downgrade`"
_SUGGESTED_PLAN: Final = Row("string", _UNLESS_PLAN, "The suggested plan.")


# ------------------------------------------------------------------------------- objects


class PlanFields(TypedDict):
    """``plan``: the account's plan (for an account change, the plan after it)."""

    id: Annotated[str, Schema(pattern="^[A-Za-z0-9_.-]{1,64}$"), _PLAN_NAMES]
    name: Annotated[Text, _PLAN_NAMES]
    price: Annotated[
        Amount,
        Doc("Price per billing period."),
        Row("number >= 0", NEVER, "Price per billing period."),
    ]
    currency: Annotated[
        str,
        Doc("ISO 4217 code."),
        Schema(pattern="^[A-Z]{3}$"),
        Row("string, ISO 4217 code", NEVER, "Currency of every price in the event, e.g. `USD`."),
    ]


class PeriodFields(TypedDict):
    """``period``: a billing period, ``end`` exclusive."""

    start: Annotated[Instant, _PERIOD_ENDS]
    end: Annotated[Instant, _PERIOD_ENDS]


class UsageFields(TypedDict):
    """``usage``: period-to-date usage; ``limit`` and ``ratio`` null when unlimited."""

    total: Annotated[
        Amount, Row("number >= 0", NEVER, "Usage so far in the period, in the metric's unit.")
    ]
    limit: Annotated[
        float | None,
        Schema(exclusiveMinimum=0),
        Row(
            "number > 0",
            "when the metric is unlimited (drops, recoveries, milestones)",
            "The account's allotment per period (its override, else the plan's). Always a number "
            "in threshold events.",
        ),
    ]
    ratio: Annotated[
        float | None,
        Doc("total / limit, rounded down to 6 decimals."),
        Schema(minimum=0),
        Row(
            "number >= 0, 6 decimals, rounded down",
            "when `usage.limit` is null",
            "`usage.total / usage.limit`; can exceed 1.",
        ),
    ]
    unit: Annotated[
        Text,
        Doc("Display unit of the metric, from the plan catalog."),
        Row("string", NEVER, "Display unit of the metric from the catalog, e.g. `API calls`."),
    ]


class LimitedUsageFields(TypedDict):
    """``usage`` of a threshold: the metric has a limit, so ``limit`` and ``ratio`` are numbers."""

    total: Amount
    limit: Annotated[float, Schema(exclusiveMinimum=0)]
    ratio: Annotated[float, Schema(minimum=0)]
    unit: Text


class ProjectionFields(TypedDict):
    """``projection``: where the period is heading."""

    period_total: Annotated[
        Amount,
        Row(
            "number >= 0",
            NEVER,
            "The period's total if usage goes on at the current pace: the period-to-date pace for "
            "thresholds, the recent days' pace for drops and recoveries. Whole when usage is "
            "whole, else to hundredths. Never below `usage.total`.",
        ),
    ]
    limit_reached_at: Annotated[
        Instant | None,
        Row(
            "instant",
            "when there is no limit, or the pace does not reach it before `period.end`; in "
            "sudden-drop and usage-recovered events also when the limit was already reached "
            "before the evaluation",
            "When the limit is projected to be reached, or was reached (a hit carries the time of "
            "the record that reached it).",
        ),
    ]


class _DropFigures(TypedDict):
    recent_days: Annotated[
        int,
        Schema(minimum=1),
        Row("integer >= 1", NEVER, "How many complete UTC days were compared (3 by default)."),
    ]
    recent_total: Annotated[Amount, Row("number >= 0", NEVER, "Usage over those days.")]
    expected_total: Annotated[
        Amount,
        Row(
            "number >= 0",
            NEVER,
            "What those days usually bring: for each day, the mean of the same weekday over the "
            "baseline weeks, summed.",
        ),
    ]
    ratio: Annotated[
        Amount,
        Row(
            "number >= 0, 6 decimals, rounded down",
            NEVER,
            "`recent_total / expected_total`; `0` is total silence.",
        ),
    ]
    last_active_at: Annotated[
        Instant | None,
        Row(
            "instant",
            "when no record with a positive quantity is known",
            "Event time of the latest usage record with a positive quantity. It can fall after the "
            "recent days when usage resumed after midnight and before the evaluation.",
        ),
    ]


_DROP_EVENT_ID: Final = Row(
    "string, 64 hex digits",
    "usage-recovered only; never null",
    "The `event_id` of the `sudden-drop` event whose episode this recovery ends: stop outreach "
    "pending for it.",
)
_DROPPED_ON: Final = Row(
    "date `YYYY-MM-DD`", "usage-recovered only; never null", "The first recent day of that drop."
)


class DropFields(_DropFigures):
    """``drop``: the figures behind a drop; a recovery adds the drop it ends."""

    drop_event_id: NotRequired[Annotated[EventId, _DROP_EVENT_ID]]
    dropped_on: NotRequired[Annotated[Day, _DROPPED_ON]]


class EndedDropFields(_DropFigures):
    """``drop`` of a recovery: the current figures, and the drop whose episode it ends."""

    drop_event_id: EventId
    dropped_on: Day


class OverageFields(TypedDict):
    """``overage``: what running past the allotment costs, in ``plan.currency``."""

    units: Annotated[Amount, Row("number >= 0", NEVER, "Usage past the limit so far.")]
    unit_price: Annotated[
        Positive, Row("number > 0", NEVER, "The plan's price per unit past the limit.")
    ]
    cost: Annotated[Amount, Row("number >= 0", NEVER, "`units * unit_price`, in `plan.currency`.")]
    projected_cost: Annotated[
        Amount,
        Row(
            "number >= 0",
            NEVER,
            "The cost of the period's overage at the current pace; for a `latest` or `max` "
            "metric, which has no pace, the cost of its value now (equal to `cost`).",
        ),
    ]


class MilestoneFields(TypedDict):
    """``milestone``: the lifetime milestone reached."""

    value: Annotated[
        Positive, Row("number > 0", NEVER, "The highest milestone this record reached (`50`).")
    ]
    lifetime_total: Annotated[
        Amount,
        Row("number >= 0", NEVER, "The account's lifetime total of the metric after the record."),
    ]
    reached: Annotated[
        list[Positive],
        Schema(minItems=1),
        Row(
            "array of numbers, ascending",
            NEVER,
            "Every milestone this record reached, `value` last.",
        ),
    ]


class RecapMetricFields(TypedDict):
    """One metric of a closed period in ``recap.metrics``."""

    metric: Metric
    total: Amount
    limit: Annotated[float | None, Schema(exclusiveMinimum=0)]
    ratio: Annotated[float | None, Schema(minimum=0)]
    unit: Text


class AnniversaryFields(TypedDict):
    """``recap.anniversary``: the periods completed, and the whole years they make (else null)."""

    periods_completed: Annotated[int, Schema(minimum=1)]
    years: Annotated[int | None, Schema(minimum=1)]


class RecapFields(TypedDict):
    """``recap``: the closed period in figures."""

    metrics: Annotated[
        list[RecapMetricFields],
        Row(
            "array of `{metric, total, limit, ratio, unit}`",
            "never (may be empty)",
            "One entry per metric with usage or a limit in the closed period: its final total, "
            "the account's limit and ratio (null when unlimited) and display unit.",
        ),
    ]
    anniversary: Annotated[
        AnniversaryFields,
        Row(
            "`{periods_completed, years}`",
            NEVER,
            "Periods completed since the billing anchor (without an anchor, since the first "
            "period announced), and whole years when they make some (`years` null otherwise).",
        ),
    ]


ChangeFields = TypedDict(
    "ChangeFields",
    {
        "type": Annotated[ChangeType, Row("{choices}", NEVER, "The kind of change.")],
        "from": Annotated[str | int | None, _CHANGE_VALUES],
        "to": Annotated[str | int, _CHANGE_VALUES],
    },
)
"""``change``: what changed, from what to what (``from`` is a Python keyword: functional form)."""


class BirthdayFields(TypedDict):
    """``birthday``: the day celebrated, and the age reached when it is shown."""

    day: Annotated[
        Day, Row("date `YYYY-MM-DD`", NEVER, "The day celebrated (UTC; Feb 28 for Feb 29).")
    ]
    age: NotRequired[
        Annotated[
            int,
            Schema(minimum=0),
            Row(
                "integer >= 0",
                "absent unless the year of birth is known and the catalog's `[birthday] "
                "show_age` is true",
                "The age reached that day.",
            ),
        ]
    ]


class MessageFields(TypedDict):
    """``message``: a short human message, rendered from the operators' templates."""

    title: Annotated[Text, _MESSAGE_TEXT]
    body: Annotated[Text, _MESSAGE_TEXT]


class SuggestionFields(TypedDict):
    """``suggestion``: what the account could do."""

    action: Annotated[
        Action,
        Row(
            "{choices}",
            NEVER,
            "Thresholds: `upgrade` or `none`. Drops: `pause`, `downgrade` or `none`. Recoveries: "
            "`resume` or `none`. Milestones: `reward`. Anniversaries: `upgrade`, `downgrade` or "
            "`none`. Account changes: `offer` or `none`.",
        ),
    ]
    plan_id: Annotated[str | None, Schema(pattern="^[A-Za-z0-9_.-]{1,64}$"), _SUGGESTED_PLAN]
    plan_name: Annotated[str | None, Schema(minLength=1), _SUGGESTED_PLAN]
    price: Annotated[
        float | None,
        Schema(minimum=0),
        Row("number >= 0", _UNLESS_PLAN, "The suggested plan's price per period."),
    ]
    price_delta: Annotated[
        float | None,
        Row(
            "number",
            _UNLESS_PLAN,
            "Suggested price minus the current plan's price: positive for an upgrade, negative "
            "for a downgrade.",
        ),
    ]
    rationale: Annotated[
        Text,
        Row(
            "non-empty string", NEVER, "One sentence explaining the suggestion, with real numbers."
        ),
    ]
    offer: NotRequired[
        Annotated[
            Text,
            Row(
                "non-empty string",
                "present only when the action is `reward` or `offer`",
                "The reward or offer, from the catalog (`[[milestones]]` reward, `[offers]`).",
            ),
        ]
    ]


_NULL_PLAN: Final = {"type": "null"}
SUGGESTION_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "action",
        ("upgrade", "downgrade"),
        {
            "properties": {
                "plan_id": {"type": "string"},
                "plan_name": {"type": "string"},
                "price": {"type": "number"},
                "price_delta": {"type": "number"},
            }
        },
        {
            "properties": {
                "plan_id": _NULL_PLAN,
                "plan_name": _NULL_PLAN,
                "price": _NULL_PLAN,
                "price_delta": _NULL_PLAN,
            }
        },
    ),
    Rule("action", ("downgrade",), {"properties": {"price_delta": {"exclusiveMaximum": 0}}}),
    Rule("action", ("reward", "offer"), {"required": ["offer"]}, {"properties": {"offer": False}}),
)
"""A suggestion names a plan exactly when it changes plans; a downgrade's plan is cheaper; a
reward or an offer says what it is."""

Suggestion = Annotated[
    SuggestionFields,
    Define(
        "suggestion",
        "upgrade and downgrade name the suggested plan, its price per period and price_delta = "
        "its price minus the current plan's (negative for a downgrade); pause, resume, reward, "
        "offer and none name no plan and have null plan fields; reward and offer add offer, the "
        "text of the reward or offer. rationale is a short sentence with real numbers.",
        SUGGESTION_RULES,
    ),
]


# ---------------------------------------------------------------------------- the kinds


class ThresholdEvent(TypedDict):
    """Thresholds: metric, period, usage with a limit, projection, level, crossed_levels and
    trigger_record_id; upgrade or nothing."""

    schema_version: Literal[1]
    event_id: EventId
    kind: ThresholdKind
    account_id: RecordId
    metric: Metric
    plan: PlanFields
    period: PeriodFields
    usage: LimitedUsageFields
    level: Level
    crossed_levels: list[Level]
    trigger_record_id: RecordId
    projection: ProjectionFields | None
    overage: NotRequired[
        Annotated[
            OverageFields, Presence("`threshold-hit` above 1.0, when the plan prices overage")
        ]
    ]
    message: MessageFields
    suggestion: Annotated[Suggestion, Actions(("upgrade", "none"))]
    triggered_at: Instant
    emitted_at: Instant


class DropEvent(TypedDict):
    """Sudden drops: metric, period, usage, projection and drop; pause, downgrade or nothing."""

    schema_version: Literal[1]
    event_id: EventId
    kind: Literal["sudden-drop"]
    account_id: RecordId
    metric: Metric
    plan: PlanFields
    period: PeriodFields
    usage: UsageFields
    projection: ProjectionFields | None
    drop: DropFields
    message: MessageFields
    suggestion: Annotated[Suggestion, Actions(("pause", "downgrade", "none"))]
    triggered_at: Instant
    emitted_at: Instant


class RecoveredEvent(TypedDict):
    """Usage recovered: metric, period, usage, projection and drop with drop_event_id and
    dropped_on; resume or nothing."""

    schema_version: Literal[1]
    event_id: EventId
    kind: Literal["usage-recovered"]
    account_id: RecordId
    metric: Metric
    plan: PlanFields
    period: PeriodFields
    usage: UsageFields
    projection: ProjectionFields | None
    drop: Annotated[EndedDropFields, Presence("yes, with `drop_event_id` and `dropped_on`")]
    message: MessageFields
    suggestion: Annotated[Suggestion, Actions(("resume", "none"))]
    triggered_at: Instant
    emitted_at: Instant


class MilestoneEvent(TypedDict):
    """Milestones: metric and milestone (period and usage when the plan's period applies);
    reward."""

    schema_version: Literal[1]
    event_id: EventId
    kind: Literal["milestone"]
    account_id: RecordId
    metric: Metric
    plan: PlanFields
    period: NotRequired[Annotated[PeriodFields, Presence("unless the record is late")]]
    usage: NotRequired[Annotated[UsageFields, Presence("unless the record is late")]]
    milestone: MilestoneFields
    message: MessageFields
    suggestion: Annotated[Suggestion, Actions(("reward",))]
    triggered_at: Instant
    emitted_at: Instant


class AnniversaryEvent(TypedDict):
    """Billing anniversaries: the closed period and its recap; upgrade, downgrade or nothing."""

    schema_version: Literal[1]
    event_id: EventId
    kind: Literal["billing-anniversary"]
    account_id: RecordId
    plan: PlanFields
    period: Annotated[PeriodFields, Presence("yes (the closed period)")]
    recap: RecapFields
    message: MessageFields
    suggestion: Annotated[Suggestion, Actions(("upgrade", "downgrade", "none"))]
    triggered_at: Instant
    emitted_at: Instant


class AccountChangeEvent(TypedDict):
    """Account changes: change; any action that fits the change."""

    schema_version: Literal[1]
    event_id: EventId
    kind: Literal["account-change"]
    account_id: RecordId
    plan: PlanFields
    period: NotRequired[Annotated[PeriodFields, Presence("plan changes only")]]
    change: ChangeFields
    message: MessageFields
    suggestion: Suggestion
    triggered_at: Instant
    emitted_at: Instant


class BirthdayEvent(TypedDict):
    """Birthdays: the day celebrated; an offer or nothing."""

    schema_version: Literal[1]
    event_id: EventId
    kind: Literal["birthday"]
    account_id: RecordId
    plan: PlanFields
    period: Annotated[PeriodFields, Presence("yes (the period containing the birthday)")]
    birthday: BirthdayFields
    message: MessageFields
    suggestion: Annotated[Suggestion, Actions(("offer", "none"))]
    triggered_at: Instant
    emitted_at: Instant


class CustomFields(TypedDict):
    """``custom``: the rule of ``[[moments]]`` that fired and the figures it judged."""

    rule: Annotated[
        str,
        Schema(pattern="^[a-z0-9-]{1,40}$"),
        Row("string matching `[a-z0-9-]{1,40}`", NEVER, "The rule's `id` in `[[moments]]`."),
    ]
    window: Annotated[
        str,
        Schema(pattern="^(period|[1-9][0-9]?d)$"),
        Row(
            "string",
            NEVER,
            'The rule\'s window as written: `"period"` (the billing period) or `"<N>d"` '
            "(the UTC day of the moment and the N-1 days before it).",
        ),
    ]
    value: Annotated[
        Amount,
        Row("number >= 0", NEVER, "The window's value under the metric's aggregation."),
    ]
    threshold: Annotated[
        Amount,
        Row(
            "number >= 0",
            NEVER,
            "The threshold the value met (`at_least`: reached; `at_most`: at or below), in the "
            "metric's unit; with `of_limit`, the fraction times the account's limit.",
        ),
    ]


CUSTOM_KIND_PATTERN: Final = "^custom\\.[a-z0-9-]{1,40}$"
CustomKind = Annotated[str, Schema(pattern=CUSTOM_KIND_PATTERN)]
"""The kind of a rule's moment: ``custom.<rule id>``."""


class CustomEvent(TypedDict):
    """Moments a business defines (``[[moments]]``): metric, period, usage and custom; the
    rule's action."""

    schema_version: Literal[1]
    event_id: EventId
    kind: CustomKind
    account_id: RecordId
    metric: Metric
    plan: PlanFields
    period: PeriodFields
    usage: UsageFields
    custom: CustomFields
    message: MessageFields
    suggestion: Suggestion
    triggered_at: Instant
    emitted_at: Instant


KIND_MODELS: Final[tuple[type[Any], ...]] = (
    ThresholdEvent,
    DropEvent,
    RecoveredEvent,
    MilestoneEvent,
    AnniversaryEvent,
    AccountChangeEvent,
    BirthdayEvent,
    CustomEvent,
)
"""One model per kind (thresholds share one), in the order of :data:`.kinds.KINDS`, then the
model of every ``custom.<rule id>``."""

Payload = (
    ThresholdEvent
    | DropEvent
    | RecoveredEvent
    | MilestoneEvent
    | AnniversaryEvent
    | AccountChangeEvent
    | BirthdayEvent
    | CustomEvent
)
"""The payload of any moment event."""

KIND_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "kind",
        ("threshold-near",),
        {"properties": {"level": {"exclusiveMaximum": 1}, "overage": False}},
        description="threshold-near is a level below the whole limit, without overage.",
    ),
    Rule(
        "kind",
        ("threshold-hit",),
        {"properties": {"level": {"minimum": 1}}},
        description="threshold-hit is the whole limit (1.0) or an overage level above it.",
    ),
)
"""What the threshold model cannot say: near is below 1.0 and has no overage, hit is 1.0 or
above. The schema puts them after the conditional of the model whose kinds they name."""


class MomentEvent(TypedDict, total=False):
    """Any moment event: every field a kind may carry, with its widest type, in the guide's
    order. The value of every message on the moments.<kind> topics."""

    schema_version: Required[
        Annotated[
            Literal[1],
            Doc("Version of this schema; changes only for incompatible changes."),
            Row(
                "integer",
                NEVER,
                "`1`. Changes only for incompatible changes (see "
                "[versioning](#versioning-and-compatibility)).",
            ),
        ]
    ]
    event_id: Required[
        Annotated[
            EventId,
            Doc(
                "Lowercase hex SHA-256 of the UTF-8 text of the moment's identity, fields joined "
                "by '|'. Thresholds: kind|account_id|metric|period_start|plan_id|level (level as "
                "JSON writes it, with a fractional digit: 0.8, 1.0, 1.5). "
                "sudden-drop|account_id|metric|first_recent_day (YYYY-MM-DD); "
                "usage-recovered|account_id|metric|first_recent_day of the drop; "
                "milestone|account_id|metric|milestone (a plain integer when whole: 50); "
                "billing-anniversary|account_id|period_start; "
                "account-change|account_id|change|updated_at (change is change.type); "
                "birthday|account_id|day (the day celebrated, YYYY-MM-DD). Instants as "
                "RFC 3339 UTC with Z. The same moment always gets the same id, across restarts: "
                "deduplicate on it."
            ),
            Row(
                "string, 64 lowercase hex digits",
                NEVER,
                "Identity of the moment: the same moment always has the same id, across retries "
                "and restarts. Deduplicate on it. Recipe in [The event id](#the-event-id).",
            ),
        ]
    ]
    kind: Required[
        Annotated[
            str,
            Schema(anyOf=[{"enum": list(KINDS)}, {"pattern": CUSTOM_KIND_PATTERN}]),
            Doc(
                "What happened; also the topic suffix (moments.<kind>). custom.<rule id> for a "
                "rule of the catalog's [[moments]]."
            ),
            Row(
                f"{', '.join(f'`{k}`' for k in KINDS)}, or `custom.<rule id>`",
                NEVER,
                "What happened; also the topic suffix. `custom.<rule id>` for a moment you "
                "define (`[[moments]]` in the catalog).",
            ),
        ]
    ]
    account_id: Required[
        Annotated[
            RecordId,
            Row(
                "string, 1 to 128 characters",
                NEVER,
                "The account; also the Kafka key. May contain any character, including `\\|`.",
            ),
        ]
    ]
    metric: Annotated[
        Metric,
        Row(
            "string matching `[a-z0-9_.-]{1,64}`",
            NEVER,
            "The metric, e.g. `api_calls`. Absent from `billing-anniversary` (see "
            "`recap.metrics`) and `account-change`.",
        ),
    ]
    plan: Required[
        Annotated[
            PlanFields,
            Doc("The account's plan when the moment happened."),
            Row(
                "object",
                NEVER,
                "The account's plan when the moment happened; for an `account-change`, the plan "
                "after the change.",
            ),
        ]
    ]
    period: Annotated[
        PeriodFields,
        Doc("The billing period the moment belongs to; end is exclusive."),
        Row(
            "object",
            NEVER,
            "The billing period the moment belongs to: the closed one for `billing-anniversary`, "
            "the current one under the new plan for a plan change. Absent from other account "
            "changes and from the `milestone` of a late record.",
        ),
    ]
    usage: Annotated[
        UsageFields,
        Doc(
            "Period-to-date usage of the metric when the moment happened. limit is the account's "
            "allotment (its override, else the plan's); limit and ratio are null when the metric "
            "has no limit."
        ),
        Row(
            "object",
            NEVER,
            "Period-to-date usage of the metric when the moment happened. Absent from "
            "`billing-anniversary`, `account-change` and the `milestone` of a late record.",
        ),
    ]
    level: Annotated[
        Level,
        KIND_ONLY,
        Doc(
            "Thresholds only: the highest level this record crossed, as a fraction of the limit "
            "(0.8, 1.0, 1.5)."
        ),
        Row(
            "number > 0",
            "thresholds; never null",
            "The highest level crossed: below 1 for `threshold-near`; `1.0`, or an overage level "
            "above it such as `1.5`, for `threshold-hit`.",
        ),
    ]
    crossed_levels: Annotated[
        list[Level],
        KIND_ONLY,
        Schema(minItems=1),
        Doc("Thresholds only: every level this record crossed, ascending, the highest last."),
        Row(
            "array of numbers, ascending",
            "thresholds; never null",
            "Every level this record crossed; usually `[level]`, `level` is always last.",
        ),
    ]
    trigger_record_id: Annotated[
        RecordId,
        KIND_ONLY,
        Doc("Thresholds only: record_id of the usage record that crossed the level."),
        Row(
            "string",
            "thresholds; never null",
            "The producer's `record_id` of the usage record that crossed the level (for tracing).",
        ),
    ]
    projection: Annotated[
        ProjectionFields | None,
        Doc(
            "period_total: the period's total at the current pace (period-to-date pace for "
            "thresholds, the recent days' pace for drops), whole when usage is whole, else to "
            "hundredths. limit_reached_at: when the limit was reached, or is projected to be "
            "reached before the period ends; null when there is no limit, or the pace does not "
            "reach it within the period. The whole projection is null for a latest or max "
            "metric: a level has no pace."
        ),
        Row(
            "object",
            "for a `latest` or `max` metric (a level has no pace: contract 1.4)",
            "Where the period is heading. Thresholds, drops and recoveries only.",
        ),
    ]
    drop: Annotated[
        DropFields,
        KIND_ONLY,
        Doc(
            "sudden-drop and usage-recovered. recent_total: usage over the last recent_days "
            "complete UTC days; expected_total: for each of those days, the mean of the same "
            "weekday over the baseline weeks, summed; ratio: recent_total / expected_total, "
            "rounded down to 6 decimals; last_active_at: event time of the latest record with "
            "usage, null if unknown. usage-recovered adds drop_event_id (the event_id of the drop "
            "it ends) and dropped_on (the drop's first recent day)."
        ),
        Row(
            "object",
            NEVER,
            "The figures behind a drop: in `sudden-drop`, those that made it a drop; in "
            "`usage-recovered`, the current ones that end it.",
        ),
    ]
    overage: Annotated[
        OverageFields,
        KIND_ONLY,
        Doc(
            "threshold-hit above level 1.0, when the plan prices overage for the metric: units "
            "past the limit, the price per unit, their cost so far and the projected cost for the "
            "whole period, in plan.currency."
        ),
        Row(
            "object",
            NEVER,
            "What running past the allotment costs. Only in a `threshold-hit` above `1.0`, when "
            "the plan prices overage of the metric.",
        ),
    ]
    milestone: Annotated[
        MilestoneFields,
        KIND_ONLY,
        Doc(
            "milestone only. value: the highest milestone reached; lifetime_total: the lifetime "
            "total of the metric after the record; reached: every milestone this record reached, "
            "ascending."
        ),
        Row("object", NEVER, "The lifetime milestone reached (`milestone` events only)."),
    ]
    recap: Annotated[
        RecapFields,
        KIND_ONLY,
        Doc(
            "billing-anniversary only. metrics: one entry per metric with usage or a limit in the "
            "closed period (total as it stood when the period became final; limit and ratio null "
            "when unlimited); anniversary: periods completed since the billing anchor, and whole "
            "years when they make some (else null)."
        ),
        Row("object", NEVER, "The closed period in figures (`billing-anniversary` only)."),
    ]
    change: Annotated[
        ChangeFields,
        KIND_ONLY,
        Doc(
            "account-change only: what changed, from what to what (plan ids for plan changes, "
            "statuses, member counts, regions)."
        ),
        Row("object", NEVER, "What changed (`account-change` only)."),
    ]
    birthday: Annotated[
        BirthdayFields,
        KIND_ONLY,
        Doc(
            "birthday only: the day celebrated (UTC; Feb 28 for a Feb 29 birthday in other years) "
            "and, when the year of birth is known and the catalog shows it, the age reached."
        ),
        Row("object", NEVER, "The birthday celebrated (`birthday` only)."),
    ]
    custom: Annotated[
        CustomFields,
        KIND_ONLY,
        Doc(
            "custom.<rule id> only: the rule of [[moments]] that fired (rule: its id; window: "
            'as written, "7d" or "period"), the window\'s value and the threshold it met, both '
            "absolute quantities in the metric's unit (with of_limit, the fraction times the "
            "account's limit)."
        ),
        Row("object", NEVER, "The rule that fired and its figures (`custom.<rule id>` only)."),
    ]
    message: Required[
        Annotated[
            MessageFields,
            Doc(
                "A short human warning with real numbers, units and dates, ready to send. Wording "
                "comes from the operators' templates (config/messages.toml)."
            ),
            Row(
                "object",
                NEVER,
                "A short human message with real numbers, units and dates, ready to send. Wording "
                "from the operators' templates (`config/messages.toml`), English by default.",
            ),
        ]
    ]
    suggestion: Required[Annotated[Suggestion, Row("object", NEVER, "What the account could do.")]]
    triggered_at: Required[
        Annotated[
            Instant,
            Doc(
                "Event time of the record that caused the moment (thresholds, milestones), of the "
                "evaluation (drops, recoveries), the end of the closed period (anniversaries) or "
                "the plan record's updated_at (account changes)."
            ),
            Row(
                "instant",
                NEVER,
                "When the moment happened. Thresholds and milestones: the event time "
                "(`timestamp`) of the usage record that crossed the level or reached the "
                "milestone. Drops and recoveries: the UTC midnight that closed the last recent "
                "day. Anniversaries: the end of the closed period (`period.end`). Account "
                "changes: the plan record's `updated_at`.",
            ),
        ]
    ]
    emitted_at: Required[
        Annotated[
            Instant,
            Doc("Wall-clock time of emission."),
            Row(
                "instant",
                NEVER,
                "Wall-clock time at which the worker emitted the event. A repeat of the same "
                "moment (see below) can have a different `emitted_at`.",
            ),
        ]
    ]
