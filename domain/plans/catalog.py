"""The plan catalog (contract 1.3): plans, their ranks, prices and allotments.

The catalog is read once at start-up from ``config/plans.toml`` (``MOMENTS_PLANS_FILE``). Its
schema is the pydantic models at the end of this module (one field per TOML key, each typed by
a check that says what it accepts); the frozen dataclasses below are what the rules use. An
invalid file stops the worker with one :class:`CatalogError` whose message names the file, the
plan (its id, or its position when the id is missing), the field, and what is accepted. Numbers
become ``Decimal`` through their TOML text form, so ``0.8`` is exactly 0.8 and a total of
exactly 80 % of a limit compares equal to it.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from os import PathLike
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from domain.common.formatting import known_locale
from domain.common.numbers import MAX_AMOUNT, MIN_AMOUNT, exact_in_json
from domain.common.tomlfile import parse_toml, read_toml_text
from domain.errors import CatalogError
from domain.plans.periods import PERIOD_LENGTHS, PeriodLength

METRIC_PATTERN: Final = re.compile(r"[a-z0-9_.-]{1,64}")
"""What a metric name looks like (contract 1.1), matched in full."""

PLAN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What a plan id looks like, matched in full: it appears in event ids joined by ``|``."""

LOCALE_PATTERN: Final = re.compile(r"[a-z]{2}(_[A-Z]{2})?")
"""What the catalog's locale looks like, matched in full: a language, maybe a country."""

_CURRENCY_PATTERN: Final = re.compile(r"[A-Z]{3}")

Aggregation = Literal["sum", "count", "max", "latest", "unique_count"]
"""How a metric's records make its period, day and lifetime values (contract 1.4)."""

AGGREGATIONS: Final[tuple[Aggregation, ...]] = get_args(Aggregation)

LIFETIME_AGGREGATIONS: Final[frozenset[Aggregation]] = frozenset({"sum", "count"})
"""Aggregations with a lifetime value, so milestones (contract 3.4): the additive ones."""

FIELD_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}")
"""A field of a record or of CloudEvents ``data``, dots for nesting (``usage.tokens``)."""

_EVENT_TYPE_PATTERN: Final = re.compile(r"\S(.{0,254}\S)?")

DEFAULT_PERIOD: Final[PeriodLength] = "month"
DEFAULT_CURRENCY: Final = "USD"
DEFAULT_NEAR_LEVELS: Final[tuple[Decimal, ...]] = (Decimal("0.8"),)
DEFAULT_UNDERUSE_LEVEL: Final = Decimal("0.3")
DEFAULT_LOCALE: Final = "en_US"
_HIT_LEVEL: Final = Decimal(1)


@dataclass(frozen=True, slots=True)
class Plan:
    """One rung of the upgrade ladder.

    ``limits`` maps a metric to its allotment per period; a metric absent from it is unlimited
    in this plan (no thresholds, but still counted and watched for drops). ``near_levels`` is the
    plan's effective list of threshold-near fractions: its own override, else the catalog's;
    ``over_levels`` likewise, for the overage levels above 1.0 (contract 3.1). ``overage`` maps
    a metric to its price per unit past the limit, where the plan prices overage.
    """

    id: str
    name: str
    rank: int
    price: Decimal
    pausable: bool
    limits: Mapping[str, Decimal] = field(hash=False)
    near_levels: tuple[Decimal, ...]
    over_levels: tuple[Decimal, ...] = ()
    overage: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def levels(self) -> tuple[Decimal, ...]:
        """Every level announced in this plan, ascending: the near levels, 1.0 (hit), then the
        overage levels."""
        return (*self.near_levels, _HIT_LEVEL, *self.over_levels)

    def overage_price(self, metric: str) -> Decimal | None:
        """Price per unit of ``metric`` past the limit, or ``None`` when not priced."""
        return self.overage.get(metric)

    def limit(self, metric: str) -> Decimal | None:
        """The plan's allotment of ``metric`` per period, or ``None`` when unlimited."""
        return self.limits.get(metric)


@dataclass(frozen=True, slots=True)
class Milestones:
    """Lifetime milestones of one metric (contract 3.4), ascending, and their reward."""

    metric: str
    at: tuple[Decimal, ...]
    reward: str


@dataclass(frozen=True, slots=True)
class Meter:
    """Turns CloudEvents of one ``type`` into readings of ``metric`` (contract 1.4).

    ``value`` is the path into ``data`` of the quantity (``("usage", "tokens")``), or ``None``
    for a quantity of 1; ``where`` holds the ``data`` fields (paths) an event must match.
    """

    event_type: str
    metric: str
    value: tuple[str, ...] | None = None
    where: Mapping[tuple[str, ...], str | int | float | bool] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )


@dataclass(frozen=True, slots=True)
class Offers:
    """Offers attached to account changes (contract 3.6); ``None`` when the catalog has none."""

    members_added: str | None = None
    region_changed: str | None = None
    #: Contract 3.7: the offer of a birthday event.
    birthday: str | None = None


@dataclass(frozen=True, slots=True)
class Birthdays:
    """The catalog's ``[birthday]`` table (contract 3.7)."""

    #: Birthday messages give the age when the year of birth is known.
    show_age: bool = False


MomentAction = Literal["upgrade", "downgrade", "pause", "offer", "reward", "none"]
"""What a rule of ``[[moments]]`` suggests (contract 3.8)."""

MOMENT_ACTIONS: Final[tuple[MomentAction, ...]] = get_args(MomentAction)

MOMENT_ID_PATTERN: Final = re.compile(r"[a-z0-9-]{1,40}")
"""What a rule id of ``[[moments]]`` looks like, matched in full: it names a topic."""

MAX_WINDOW_DAYS: Final = 35
"""The longest rolling window a rule may watch: the daily state keeps at least 35 days."""

MOMENT_PLACEHOLDERS: Final = frozenset(
    {
        "value",  # 3: the window's value, in the metric's unit
        "threshold",  # 3: at_least/at_most as an absolute quantity (of_limit: fraction x limit)
        "unit",  # support calls (catalog [metrics])
        "window_days",  # 7; for a "period" window, the billing period's length in days
        "plan_name",  # Starter
        "limit",  # 10,000: the plan's limit of the metric, or "unlimited"
        "offer",  # the rule's offer text
        "upgrade_plan_name",  # Growth: the plan an upgrade would choose (contract 3.1)
        "upgrade_price",  # $79: its price
    }
)
"""Placeholders a rule's ``title`` and ``body`` may use (contract 3.8)."""


@dataclass(frozen=True, slots=True)
class MomentRule:
    """One rule of ``[[moments]]`` (contract 3.8): a moment the business defines.

    ``window`` is the rule's own string (``"7d"``, ``"period"``); ``window_days`` its days, or
    ``None`` for the billing period. ``at_least`` rules fire on an accepted record when the
    window's value reaches ``amount``; ``at_most`` rules at a day close when it is at or below
    it. With ``of_limit``, ``amount`` is a fraction of the plan's limit of ``metric``, and the
    rule does not apply to an account whose plan has no limit for it. ``plans`` holds the plan
    ids the rule is for, or ``None`` for every plan. ``cooldown_days``: after a firing, none
    again for the account within this many days; ``None`` for a ``"period"`` window without a
    cooldown of its own (once per period). ``offer`` is ``None`` when the rule has none.
    """

    id: str
    metric: str
    window: str
    window_days: int | None
    at_least: bool
    amount: Decimal
    of_limit: bool
    plans: frozenset[str] | None
    cooldown_days: int | None
    title: str
    body: str
    action: MomentAction
    offer: str | None = None

    @property
    def kind(self) -> str:
        """The rule's event kind: ``custom.<id>`` (its topic is ``moments.custom.<id>``)."""
        return f"custom.{self.id}"

    def applies_to(self, plan_id: str) -> bool:
        """Whether an account on plan ``plan_id`` is watched by this rule."""
        return self.plans is None or plan_id in self.plans


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every plan on offer, ordered by rank (cheapest rung first), with catalog-wide settings.

    ``locale`` (``en_US``, ``de``) is the catalog's language and country for formatting
    messages; it is held here, not used by the rules.
    """

    period: PeriodLength
    currency: str
    near_levels: tuple[Decimal, ...]
    units: Mapping[str, str] = field(hash=False)
    plans: tuple[Plan, ...]
    over_levels: tuple[Decimal, ...] = ()
    underuse_level: Decimal = DEFAULT_UNDERUSE_LEVEL
    milestones: Mapping[str, Milestones] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    offers: Offers = Offers()
    locale: str = DEFAULT_LOCALE
    birthday: Birthdays = Birthdays()
    #: Metric -> its aggregation, for metrics declared with one; any other metric is a sum.
    aggregations: Mapping[str, Aggregation] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    #: ``unique_count`` metric -> the field whose distinct values it counts (a path).
    unique_fields: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    meters: tuple[Meter, ...] = ()
    #: The ``[[moments]]`` rules (contract 3.8), in catalog order.
    moments: tuple[MomentRule, ...] = ()
    _by_id: Mapping[str, Plan] = field(init=False, repr=False, compare=False, hash=False)
    _meters_by_type: Mapping[str, tuple[Meter, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _moments_by_metric: Mapping[str, tuple[MomentRule, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.plans, key=lambda p: p.rank))
        # Frozen dataclass: fields can only be set through object.__setattr__.
        object.__setattr__(self, "plans", ordered)
        object.__setattr__(self, "_by_id", MappingProxyType({p.id: p for p in ordered}))
        by_type: dict[str, tuple[Meter, ...]] = {}
        for meter in self.meters:
            by_type[meter.event_type] = (*by_type.get(meter.event_type, ()), meter)
        object.__setattr__(self, "_meters_by_type", MappingProxyType(by_type))
        by_metric: dict[str, tuple[MomentRule, ...]] = {}
        for rule in self.moments:
            by_metric[rule.metric] = (*by_metric.get(rule.metric, ()), rule)
        object.__setattr__(self, "_moments_by_metric", MappingProxyType(by_metric))

    @property
    def plan_ids(self) -> tuple[str, ...]:
        """Ids of all plans, by rank."""
        return tuple(p.id for p in self.plans)

    def plan(self, plan_id: str) -> Plan | None:
        """The plan with id ``plan_id``, or ``None`` when the catalog has no such plan."""
        return self._by_id.get(plan_id)

    def higher(self, plan: Plan) -> tuple[Plan, ...]:
        """Plans ranked above ``plan``, by rank ascending (the next rung first)."""
        return tuple(p for p in self.plans if p.rank > plan.rank)

    def lower(self, plan: Plan) -> tuple[Plan, ...]:
        """Plans ranked below ``plan``, by rank ascending (the lowest rung first)."""
        return tuple(p for p in self.plans if p.rank < plan.rank)

    def unit(self, metric: str) -> str:
        """The display unit of ``metric`` (``"API calls"``), else its name with spaces."""
        unit = self.units.get(metric)
        return unit if unit is not None else metric.replace("_", " ")

    def aggregation(self, metric: str) -> Aggregation:
        """How ``metric``'s records aggregate: as declared in ``[metrics]``, else ``sum``."""
        return self.aggregations.get(metric, "sum")

    def meters_for(self, event_type: str) -> tuple[Meter, ...]:
        """The meters of CloudEvents of type ``event_type``, in catalog order (maybe none)."""
        return self._meters_by_type.get(event_type, ())

    def moments_for(self, metric: str) -> tuple[MomentRule, ...]:
        """The ``[[moments]]`` rules watching ``metric``, in catalog order (maybe none)."""
        return self._moments_by_metric.get(metric, ())


def load_catalog(path: str | PathLike[str]) -> Catalog:
    """Read and validate the catalog file at ``path``; :class:`CatalogError` if it is unusable."""
    text = read_toml_text(
        path, what="the plan catalog", setting="MOMENTS_PLANS_FILE", error=CatalogError
    )
    return parse_catalog(text, str(path))


def parse_catalog(text: str, source: str = "config/plans.toml") -> Catalog:
    """Validate the TOML catalog ``text``; ``source`` names it in error messages."""
    document = parse_toml(text, source, CatalogError)
    try:
        schema = _Document.model_validate(document)
    except ValidationError as exc:
        raise _catalog_error(exc, document, source) from None
    return schema.catalog()


# --- what each kind of value accepts -----------------------------------------------------------


class _Problem(ValueError):
    """A refused value: ``text`` says what is accepted; ``path`` goes below the field at fault
    (a metric of ``limits``, a plan of ``plans``); ``quoted`` shows that key as a name."""

    def __init__(self, text: str, *path: str | int, quoted: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.path = path
        self.quoted = quoted


def _number(value: object, *path: str) -> Decimal:
    # bool is an int subclass in Python, but `price = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"must be a number, got {_got(value)}", *path)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Problem(f"must be a finite number, got {value}", *path)
    return Decimal(str(value))


def _exact(value: Decimal, *path: str, name: str = "") -> Decimal:
    """Refuse an amount events could not carry exactly (see :mod:`domain.common.numbers`)."""
    if not exact_in_json(value):
        raise _Problem(
            f"{name}{value} cannot be carried exactly in events: use 0 or a number "
            f"between {MIN_AMOUNT:g} and {MAX_AMOUNT:g} with at most 15 significant digits",
            *path,
        )
    return value


def _metric_name(metric: str, *path: str, quoted: bool = False) -> str:
    if not METRIC_PATTERN.fullmatch(metric):
        raise _Problem("metric names must match [a-z0-9_.-]{1,64}", *path, quoted=quoted)
    return metric


def _amounts(accepted: str, refusal: Callable[[Decimal], str | None]) -> BeforeValidator:
    """A table of metric = amount (limits, overage prices), each amount checked by ``refusal``."""

    def check(value: object) -> dict[str, Decimal]:
        if not isinstance(value, dict):
            raise _Problem(f"must be a table of metric = {accepted}, got {_got(value)}")
        amounts: dict[str, Decimal] = {}
        for metric, raw in value.items():
            amount = _number(raw, _metric_name(metric, metric))
            if (problem := refusal(amount)) is not None:
                raise _Problem(problem, metric)
            amounts[metric] = _exact(amount, metric)
        return amounts

    return BeforeValidator(check)


def _price(value: object) -> Decimal:
    price = _number(value)
    if price < 0:
        raise _Problem(f"must be a finite number >= 0, got {price}")
    return _exact(price)


def _levels(
    value: object, accepted: str, outside: Callable[[Decimal], str | None]
) -> tuple[Decimal, ...]:
    """An increasing list of levels; ``outside`` says why a level is out of range, or None."""
    if not isinstance(value, list):
        raise _Problem(f"must be {accepted}, got {_got(value)}")
    levels: list[Decimal] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _Problem(f"must be {accepted}, got {_got(item)}")
        level = Decimal(str(item))
        if (problem := outside(level)) is not None:
            raise _Problem(problem)
        if levels and level <= levels[-1]:
            raise _Problem(
                f"must be strictly increasing, without repeats: {level} follows {levels[-1]}"
            )
        levels.append(level)
    return tuple(levels)


def _near_levels(value: object) -> tuple[Decimal, ...]:
    return _levels(
        value,
        "a list of fractions strictly between 0 and 1, increasing, like [0.5, 0.8]",
        lambda level: (
            None
            if level.is_finite() and 0 < level < 1
            else f"{level} is outside (0, 1): the level 1.0 (threshold-hit) is implicit"
        ),
    )


def _over_levels(value: object) -> tuple[Decimal, ...]:
    def outside(level: Decimal) -> str | None:
        if not level.is_finite() or level <= 1:
            return f"{level} is not above 1: over levels are past the limit"
        _exact(level, name="over level: ")
        return None

    return _levels(value, "a list of fractions above 1.0, increasing, like [1.5, 2.0]", outside)


def _milestone_steps(value: object) -> tuple[Decimal, ...]:
    if not isinstance(value, list) or not value:
        raise _Problem(f"must be a non-empty list of numbers, got {_got(value)}")
    steps: list[Decimal] = []
    for item in value:
        step = _number(item)
        if step <= 0:
            raise _Problem(f"milestones must be above 0, got {step}")
        if steps and step <= steps[-1]:
            raise _Problem(
                f"must be strictly increasing, without repeats: {step} follows {steps[-1]}"
            )
        steps.append(_exact(step))
    return tuple(steps)


def _fraction(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"must be a fraction between 0 and 1, got {_got(value)}")
    fraction = Decimal(str(value))
    if not 0 < fraction < 1:
        raise _Problem(f"must be a fraction between 0 and 1, got {fraction}")
    return fraction


def _string(accepted: str, pattern: re.Pattern[str] | None = None) -> BeforeValidator:
    """A string, matching ``pattern`` in full when given."""

    def check(value: object) -> str:
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise _Problem(f"must be {accepted}, got {_got(value)}")
        return value

    return BeforeValidator(check)


def _cldr_locale(value: str) -> str:
    # Messages are formatted in it: a locale CLDR lacks would fail at the first event.
    if not known_locale(value):
        raise _Problem(f"must be a locale CLDR knows (en_US, de, fr_CH...), got {_got(value)}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Problem(f"must be a non-empty string, got {_got(value)}")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(f"must be an integer, got {_got(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"must be true or false, got {_got(value)}")
    return value


def _period(value: object) -> object:
    if value not in PERIOD_LENGTHS:
        raise _Problem(f"must be one of {', '.join(map(repr, PERIOD_LENGTHS))}, got {_got(value)}")
    return value


def _metrics(value: object) -> dict[str, _MetricEntry]:
    """``[metrics]``: metric = "unit" (a sum), or metric = { unit, aggregation, unique }."""
    table = _table(value)
    entries: dict[str, _MetricEntry] = {}
    for metric, entry in table.items():
        _metric_name(metric, metric, quoted=True)
        if isinstance(entry, dict):
            entries[metric] = _metric_entry(metric, entry)
            continue
        if not isinstance(entry, str) or not entry.strip():
            raise _Problem(
                f'must be a non-empty display unit like "API calls", or a table like '
                f'{{ unit = "seats", aggregation = "latest" }}, got {_got(entry)}',
                metric,
            )
        entries[metric] = _MetricEntry(entry, "sum", None)
    return entries


def _metric_entry(metric: str, entry: dict[str, Any]) -> _MetricEntry:
    unknown = sorted(set(entry) - {"unit", "aggregation", "unique"})
    if unknown:
        raise _Problem(
            f"unknown key {', '.join(map(repr, unknown))}; accepted: 'unit', 'aggregation', "
            "'unique'",
            metric,
            quoted=True,
        )
    unit = entry.get("unit")
    if not isinstance(unit, str) or not unit.strip():
        raise _Problem(
            f'unit: must be a non-empty display unit like "seats", got {_got(unit)}'
            if "unit" in entry
            else 'unit: missing; a metric table needs a display unit like unit = "seats"',
            metric,
            quoted=True,
        )
    aggregation = entry.get("aggregation", "sum")
    if aggregation not in AGGREGATIONS:
        raise _Problem(
            f"aggregation: must be one of {', '.join(map(repr, AGGREGATIONS))}, "
            f"got {_got(aggregation)}",
            metric,
            quoted=True,
        )
    unique = entry.get("unique")
    if aggregation == "unique_count":
        if unique is None:
            raise _Problem(
                "unique: missing; a unique_count metric names the field whose distinct values "
                'it counts, like unique = "user_id"',
                metric,
                quoted=True,
            )
        if not isinstance(unique, str) or not FIELD_PATTERN.fullmatch(unique):
            raise _Problem(
                f'unique: must be a field name like "user_id" (dots for nesting), '
                f"got {_got(unique)}",
                metric,
                quoted=True,
            )
        return _MetricEntry(unit, aggregation, tuple(unique.split(".")))
    if unique is not None:
        raise _Problem(
            f"unique: only a unique_count metric names one; this metric is {aggregation!r}",
            metric,
            quoted=True,
        )
    return _MetricEntry(unit, aggregation, None)


@dataclass(frozen=True, slots=True)
class _MetricEntry:
    unit: str
    aggregation: Aggregation
    unique: tuple[str, ...] | None


def _field_path(value: object) -> tuple[str, ...]:
    if not isinstance(value, str) or not FIELD_PATTERN.fullmatch(value):
        raise _Problem(
            f'must be a field of data like "tokens" or "usage.tokens", got {_got(value)}'
        )
    return tuple(value.split("."))


def _where_table(value: object) -> dict[tuple[str, ...], str | int | float | bool]:
    table = _table(value)
    where: dict[tuple[str, ...], str | int | float | bool] = {}
    for name, wanted in table.items():
        if not FIELD_PATTERN.fullmatch(name):
            raise _Problem("must be a field of data like model or usage.model", name, quoted=True)
        if isinstance(wanted, float) and not math.isfinite(wanted):
            raise _Problem(f"must be a finite number, got {wanted}", name, quoted=True)
        if not isinstance(wanted, str | int | float | bool):
            raise _Problem(
                f"must be a string, number or boolean to compare with, got {_got(wanted)}",
                name,
                quoted=True,
            )
        where[tuple(name.split("."))] = wanted
    return where


def _table(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Problem(f"must be a table, got {_got(value)}")
    return value


def _entries(section: str, required: bool) -> BeforeValidator:
    """An array of tables, written as ``[[section]]``; ``required``: at least one."""

    def check(value: object) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise _Problem(f"must be an array of tables, written as [[{section}]] sections")
        if required and not value:
            raise _Problem(f"empty; add at least one [[{section}]] table")
        return value

    return BeforeValidator(check)


def _unique_plans(plans: list[_Plan]) -> list[_Plan]:
    ids: set[str] = set()
    by_rank: dict[int, _Plan] = {}
    for index, plan in enumerate(plans):
        if plan.id in ids:
            raise _Problem("appears twice; plan ids must be unique", index, "id")
        if (other := by_rank.get(plan.rank)) is not None:
            raise _Problem(
                f"{plan.rank} is also the rank of plan {other.id!r}; ranks must be unique",
                index,
                "rank",
            )
        ids.add(plan.id)
        by_rank[plan.rank] = plan
    return plans


def _distinct_meters(meters: list[_Meter]) -> list[_Meter]:
    seen: set[tuple[str, str, tuple[Any, ...]]] = set()
    for index, meter in enumerate(meters):
        same = (meter.event_type, meter.metric, tuple(sorted(meter.where.items())))
        if same in seen:
            raise _Problem(
                "repeats an earlier meter (same event_type, metric and where): an event would "
                "count twice",
                index,
                "metric",
            )
        seen.add(same)
    return meters


def _one_per_metric(entries: list[_Milestone]) -> list[_Milestone]:
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if entry.metric in seen:
            raise _Problem(f"{entry.metric!r} has milestones already; merge them", index, "metric")
        seen.add(entry.metric)
    return entries


_WINDOW_PATTERN: Final = re.compile(r"([1-9][0-9]?)d")
_COOLDOWN_PATTERN: Final = re.compile(r"([1-9][0-9]{0,3})d")
_PERIOD_WINDOW: Final = "period"


def _window(value: object) -> str:
    """A rule's window: ``"period"``, or ``"<N>d"`` rolling days, N 1..35."""
    accepted = f'"period" or "<N>d" with N from 1 to {MAX_WINDOW_DAYS}, like "7d"'
    if not isinstance(value, str):
        raise _Problem(f"must be {accepted}, got {_got(value)}")
    if value != _PERIOD_WINDOW:
        match = _WINDOW_PATTERN.fullmatch(value)
        if match is None or int(match[1]) > MAX_WINDOW_DAYS:
            raise _Problem(f"must be {accepted}, got {_got(value)}")
    return value


def window_days(window: str) -> int | None:
    """The days of a validated rule window (``"7d"`` -> 7), ``None`` for ``"period"``."""
    return None if window == _PERIOD_WINDOW else int(window[:-1])


def _cooldown(value: object) -> int:
    if not isinstance(value, str) or (match := _COOLDOWN_PATTERN.fullmatch(value)) is None:
        raise _Problem(f'must be whole days "<N>d" with N >= 1, like "30d", got {_got(value)}')
    return int(match[1])


def _threshold(value: object) -> Decimal:
    amount = _number(value)
    if amount <= 0:
        raise _Problem(f"must be a number > 0, got {amount}")
    return _exact(amount)


def _ceiling(value: object) -> Decimal:
    # at_most = 0: nothing at all in the window (a quiet week), the commonest such rule.
    amount = _number(value)
    if amount < 0:
        raise _Problem(f"must be a number >= 0, got {amount}")
    return _exact(amount)


def _plan_ids(value: object) -> tuple[str, ...]:
    accepted = 'a non-empty list of plan ids, like ["starter", "growth"]'
    if not isinstance(value, list) or not value:
        raise _Problem(f"must be {accepted}, got {_got(value)}")
    for item in value:
        if not isinstance(item, str):
            raise _Problem(f"must be {accepted}, got {_got(item)} in it")
    repeated = sorted({p for p in value if value.count(p) > 1})
    if repeated:
        raise _Problem(f"names {', '.join(map(repr, repeated))} twice")
    return tuple(value)


def _moment_template(value: object) -> str:
    """A rule's title or body: a non-empty template using only :data:`MOMENT_PLACEHOLDERS`."""
    text = _text(value)
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise _Problem(f"{exc}; write a literal brace as {{{{ or }}}}") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in MOMENT_PLACEHOLDERS:
            known = ", ".join(f"{{{p}}}" for p in sorted(MOMENT_PLACEHOLDERS))
            raise _Problem(f"unknown placeholder {{{name}}}; known here: {known}")
        if spec or conversion:
            raise _Problem(
                f"placeholder {{{name}}} has a format or conversion; values arrive formatted, "
                f"write it as a plain {{{name}}}"
            )
    return text


def _action(value: object) -> MomentAction:
    if value not in MOMENT_ACTIONS:
        raise _Problem(f"must be one of {', '.join(map(repr, MOMENT_ACTIONS))}, got {_got(value)}")
    return value


def _unique_moments(rules: list[_Moment]) -> list[_Moment]:
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.id in seen:
            raise _Problem("appears twice; rule ids must be unique", index, "id")
        seen.add(rule.id)
    return rules


# --- the schema: one model per TOML table ------------------------------------------------------


_Fraction = Annotated[Decimal, BeforeValidator(_fraction)]
_NearLevels = Annotated[tuple[Decimal, ...], BeforeValidator(_near_levels)]
_OverLevels = Annotated[tuple[Decimal, ...], BeforeValidator(_over_levels)]
_Text = Annotated[str, BeforeValidator(_text)]
_Stripped = Annotated[str, BeforeValidator(_text), AfterValidator(str.strip)]
_Limits = Annotated[
    dict[str, Decimal],
    _amounts(
        "number, like { api_calls = 10000 }",
        lambda v: (
            None
            if v > 0
            else f"must be a finite number > 0, got {v}; leave the metric out for no limit"
        ),
    ),
]
_Overage = Annotated[
    dict[str, Decimal],
    _amounts(
        "price per unit, like { api_calls = 0.002 }",
        lambda v: None if v > 0 else f"must be a price > 0, got {v}",
    ),
]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Defaults(_Schema):
    period: Annotated[PeriodLength, BeforeValidator(_period)] = DEFAULT_PERIOD
    currency: Annotated[
        str, _string("a three-letter ISO 4217 code like 'USD'", _CURRENCY_PATTERN)
    ] = DEFAULT_CURRENCY
    near_levels: _NearLevels = DEFAULT_NEAR_LEVELS
    over_levels: _OverLevels = ()
    underuse_level: _Fraction = DEFAULT_UNDERUSE_LEVEL


class _Plan(_Schema):
    id: Annotated[str, _string("a string matching [A-Za-z0-9_.-]{1,64}", PLAN_ID_PATTERN)]
    name: _Text
    rank: Annotated[int, BeforeValidator(_integer)]
    price: Annotated[Decimal, BeforeValidator(_price)]
    pausable: Annotated[bool, BeforeValidator(_boolean)] = False
    limits: _Limits
    near_levels: _NearLevels | None = None
    over_levels: _OverLevels | None = None
    overage: _Overage = {}

    def plan(self, defaults: _Defaults) -> Plan:
        """The plan, its levels defaulting to the catalog's."""
        return Plan(
            self.id,
            self.name,
            self.rank,
            self.price,
            self.pausable,
            MappingProxyType(self.limits),
            defaults.near_levels if self.near_levels is None else self.near_levels,
            defaults.over_levels if self.over_levels is None else self.over_levels,
            MappingProxyType(self.overage),
        )


class _Milestone(_Schema):
    metric: Annotated[str, _string("a metric name"), AfterValidator(lambda m: _metric_name(m))]
    at: Annotated[tuple[Decimal, ...], BeforeValidator(_milestone_steps)]
    reward: _Stripped


class _Meter(_Schema):
    event_type: Annotated[
        str, _string("a CloudEvents type like 'api-request' (1..256 chars)", _EVENT_TYPE_PATTERN)
    ]
    metric: Annotated[str, _string("a metric name"), AfterValidator(lambda m: _metric_name(m))]
    value: Annotated[tuple[str, ...], BeforeValidator(_field_path)] | None = None
    where: Annotated[
        dict[tuple[str, ...], str | int | float | bool], BeforeValidator(_where_table)
    ] = {}


class _Offers(_Schema):
    members_added: _Stripped | None = None
    region_changed: _Stripped | None = None
    birthday: _Stripped | None = None


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"must be true or false, got {_got(value)}")
    return value


class _Birthday(_Schema):
    show_age: Annotated[bool, BeforeValidator(_flag)] = False


class _Moment(_Schema):
    id: Annotated[str, _string("a string matching [a-z0-9-]{1,40}", MOMENT_ID_PATTERN)]
    metric: Annotated[str, _string("a metric name"), AfterValidator(lambda m: _metric_name(m))]
    window: Annotated[str, BeforeValidator(_window)]
    at_least: Annotated[Decimal, BeforeValidator(_threshold)] | None = None
    at_most: Annotated[Decimal, BeforeValidator(_ceiling)] | None = None
    of_limit: Annotated[bool, BeforeValidator(_boolean)] = False
    plans: Annotated[tuple[str, ...], BeforeValidator(_plan_ids)] | None = None
    cooldown: Annotated[int, BeforeValidator(_cooldown)] | None = None
    title: Annotated[str, BeforeValidator(_moment_template)]
    body: Annotated[str, BeforeValidator(_moment_template)]
    action: Annotated[MomentAction, BeforeValidator(_action)]
    offer: _Stripped | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _Moment:
        if (self.at_least is None) == (self.at_most is None):
            raise _Problem(
                "give exactly one of at_least (fires when the window's value reaches it) and "
                "at_most (fires at a day close when it is at or below it)",
                "at_least" if self.at_least is None else "at_most",
            )
        amount = self.at_least if self.at_least is not None else self.at_most
        which = "at_least" if self.at_least is not None else "at_most"
        if self.of_limit and amount is not None and amount > 1:
            raise _Problem(
                f"with of_limit, must be a fraction of the plan's limit, above 0 and at most 1, "
                f"got {amount}",
                which,
            )
        if self.at_most is not None and self.window == _PERIOD_WINDOW:
            raise _Problem(
                'at_most rules judge complete UTC days; use a rolling window like "7d"',
                "window",
            )
        uses_offer = any(
            name == "offer"
            for text in (self.title, self.body)
            for _, name, _, _ in string.Formatter().parse(text)
        )
        if self.offer is None and (self.action in ("offer", "reward") or uses_offer):
            why = f'action = "{self.action}"' if self.action in ("offer", "reward") else "{offer}"
            raise _Problem(f"missing; {why} needs the offer's text", "offer")
        return self

    def rule(self) -> MomentRule:
        days = window_days(self.window)
        at_least = self.at_least is not None
        amount = self.at_least if self.at_least is not None else self.at_most
        assert amount is not None  # noqa: S101  # _consistent: exactly one is given
        return MomentRule(
            self.id,
            self.metric,
            self.window,
            days,
            at_least,
            amount,
            self.of_limit,
            None if self.plans is None else frozenset(self.plans),
            self.cooldown if self.cooldown is not None else days,
            self.title,
            self.body,
            self.action,
            self.offer,
        )


class _Document(_Schema):
    defaults: Annotated[_Defaults, BeforeValidator(_table)] = _Defaults()
    metrics: Annotated[dict[str, _MetricEntry], BeforeValidator(_metrics)] = {}
    plans: Annotated[list[_Plan], _entries("plans", True), AfterValidator(_unique_plans)]
    milestones: Annotated[
        list[_Milestone],
        _entries("milestones", False),
        AfterValidator(_one_per_metric),
    ] = []
    meters: Annotated[
        list[_Meter], _entries("meters", False), AfterValidator(_distinct_meters)
    ] = []
    offers: Annotated[_Offers, BeforeValidator(_table)] = _Offers()
    birthday: Annotated[_Birthday, BeforeValidator(_table)] = _Birthday()
    moments: Annotated[
        list[_Moment], _entries("moments", False), AfterValidator(_unique_moments)
    ] = []
    locale: Annotated[
        str,
        _string('a locale like "en_US" or "de" (ll or ll_CC)', LOCALE_PATTERN),
        AfterValidator(_cldr_locale),
    ] = DEFAULT_LOCALE

    @model_validator(mode="after")
    def _milestones_add_up(self) -> _Document:
        # Contract 1.4: only sum and count metrics have a lifetime total to reach.
        for index, entry in enumerate(self.milestones):
            declared = self.metrics.get(entry.metric)
            if declared is not None and declared.aggregation not in LIFETIME_AGGREGATIONS:
                raise _Problem(
                    f"{entry.metric!r} is a {declared.aggregation} metric; milestones count "
                    "a lifetime total, so only sum and count metrics have them",
                    "milestones",
                    index,
                    "metric",
                )
        return self

    @model_validator(mode="after")
    def _moments_fit(self) -> _Document:
        # Contract 3.8: a rule watches a metric of [metrics] and names plans of the catalog.
        plan_ids = {plan.id for plan in self.plans}
        for index, rule in enumerate(self.moments):
            declared = self.metrics.get(rule.metric)
            if declared is None:
                raise _Problem(
                    f"{rule.metric!r} is not in [metrics]; a rule watches a metric declared there",
                    "moments",
                    index,
                    "metric",
                )
            if declared.aggregation == "unique_count" and rule.window not in ("period", "1d"):
                raise _Problem(
                    f'{rule.metric!r} is a unique_count metric: its window must be "period" '
                    'or "1d" (a rolling sum of daily distinct counts would count a value twice)',
                    "moments",
                    index,
                    "window",
                )
            unknown = [p for p in rule.plans or () if p not in plan_ids]
            if unknown:
                raise _Problem(
                    f"{', '.join(map(repr, unknown))} is not a plan of the catalog; "
                    f"plans: {', '.join(map(repr, sorted(plan_ids)))}",
                    "moments",
                    index,
                    "plans",
                )
        return self

    def catalog(self) -> Catalog:
        d = self.defaults
        return Catalog(
            d.period,
            d.currency,
            d.near_levels,
            MappingProxyType({metric: m.unit for metric, m in self.metrics.items()}),
            tuple(p.plan(d) for p in self.plans),
            over_levels=d.over_levels,
            underuse_level=d.underuse_level,
            milestones=MappingProxyType(
                {m.metric: Milestones(m.metric, m.at, m.reward) for m in self.milestones}
            ),
            offers=Offers(
                self.offers.members_added, self.offers.region_changed, self.offers.birthday
            ),
            locale=self.locale,
            birthday=Birthdays(self.birthday.show_age),
            aggregations=MappingProxyType(
                {metric: m.aggregation for metric, m in self.metrics.items()}
            ),
            unique_fields=MappingProxyType(
                {metric: m.unique for metric, m in self.metrics.items() if m.unique is not None}
            ),
            meters=tuple(
                Meter(m.event_type, m.metric, m.value, MappingProxyType(m.where))
                for m in self.meters
            ),
            moments=tuple(m.rule() for m in self.moments),
        )


# --- one validation error as today's one-line message ------------------------------------------

_NESTED: Final[Mapping[str, type[_Schema]]] = {
    "defaults": _Defaults,
    "plans": _Plan,
    "milestones": _Milestone,
    "meters": _Meter,
    "offers": _Offers,
    "birthday": _Birthday,
    "moments": _Moment,
}
_WHAT: Final = {_Document: "table", _Defaults: "key", _Offers: "key", _Birthday: "key"}


def _order(error: ErrorDetails) -> tuple[int, ...]:
    """Where an error comes in the order checks are read: the document's keys in order, an
    entry's unknown keys before its missing ones before its values, a plan's id first."""
    model: type[_Schema] | None = _Document
    key: list[int] = []
    for part in error["loc"]:
        if isinstance(part, int):
            key.append(part)
            continue
        if model is None:
            break
        fields = list(model.model_fields)
        if part not in fields:
            key += [1, 0]  # an unknown key
            break
        missing = error["type"] == "missing" and model is not _Document
        key += [0 if part == "id" else 2 if missing else 3, fields.index(part)]
        model = _NESTED.get(part)
    return tuple(key)


def _where(
    loc: tuple[str | int, ...], document: dict[str, Any], quoted: bool = False, value: bool = True
) -> str:
    """The place of ``loc`` as messages name it: ``[defaults] period``, ``plan 'pro': rank``.

    A milestone is named by its metric when one of its ``value``s is at fault, else by its
    position; a plan or a moment rule by its id, else by its position.
    """
    if not loc:
        return "top level"
    head, rest = str(loc[0]), [str(part) for part in loc[1:]]
    if head in ("plans", "milestones", "meters", "moments") and rest:
        index = int(loc[1])
        fields = rest[1:]
        entry = document[head][index]
        if (
            head == "plans"
            and isinstance(entry.get("id"), str)
            and PLAN_ID_PATTERN.fullmatch(entry["id"])
        ):
            label = f"plan {entry['id']!r}"
        elif (
            head == "moments"
            and isinstance(entry.get("id"), str)
            and MOMENT_ID_PATTERN.fullmatch(entry["id"])
        ):
            label = f"moment {entry['id']!r}"
        elif head == "milestones" and value and fields and fields[0] in ("at", "reward"):
            label = f"milestones for {entry['metric']!r}"
        else:
            label = f"{head}[{index}]"
        return f"{label}: {'.'.join(fields)}" if fields else label
    if head in ("defaults", "metrics", "offers", "birthday"):
        if not rest:
            return f"[{head}]"
        name = ".".join(rest)
        return f"[{head}] {name!r}" if quoted else f"[{head}] {name}"
    return head


def _catalog_error(exc: ValidationError, document: dict[str, Any], source: str) -> CatalogError:
    errors = sorted(exc.errors(), key=_order)
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] == "extra_forbidden":
        parent = loc[:-1]
        unknown = sorted(
            str(e["loc"][-1])
            for e in errors
            if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == parent
        )
        model = _Document if not parent else _NESTED[str(parent[0])]
        problem = (
            f"unknown {_WHAT.get(model, 'field')} {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(map(repr, model.model_fields))}"
        )
        return CatalogError(f"{source}: {_where(parent, document)}: {problem}")
    if first["type"] == "missing":
        problem = (
            "missing; add at least one [[plans]] table"
            if loc == ("plans",)
            else 'missing; every rule needs an id like "support-heavy"'
            if loc[-1] == "id" and loc[0] == "moments"
            else 'missing; every plan needs an id like "starter"'
            if loc[-1] == "id"
            else "missing; it is required"
        )
        return CatalogError(f"{source}: {_where(loc, document, value=False)}: {problem}")
    cause = first.get("ctx", {}).get("error")
    if not isinstance(cause, _Problem):  # a check of pydantic's own: none is expected
        return CatalogError(f"{source}: {_where(loc, document)}: {first['msg']}")
    place = _where((*loc, *cause.path), document, cause.quoted)
    return CatalogError(f"{source}: {place}: {cause.text}")


# Python types of decoded TOML values and their TOML names; bool before int (a subclass).
_TOML_TYPES: Final[tuple[tuple[type, str], ...]] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
)


def _toml_type(value: object) -> str:
    """The TOML name of a decoded value's type, for messages."""
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)), "date/time")


def _got(value: object) -> str:
    """A decoded value as it reads in TOML (``true``, ``"19"``), for messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return 'string "' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return f"{_toml_type(value)} {value}"
    return _toml_type(value)
