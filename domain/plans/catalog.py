"""The plan catalog (contract 1.3): plans, their ranks, prices and allotments.

The catalog is read once at start-up from ``config/plans.toml`` (``MOMENTS_PLANS_FILE``). An
invalid file stops the worker, so every check here produces a :class:`CatalogError` whose message
names the file, the plan (its id, or its position when the id is missing), the field, and what
is accepted. Numbers become ``Decimal`` through their TOML text form, so ``0.8`` is exactly 0.8
and a total of exactly 80 % of a limit compares equal to it.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from domain.common.numbers import MAX_AMOUNT, MIN_AMOUNT, exact_in_json
from domain.errors import CatalogError
from domain.plans.periods import PERIOD_LENGTHS, PeriodLength

METRIC_PATTERN: Final = re.compile(r"[a-z0-9_.-]{1,64}")
"""What a metric name looks like (contract 1.1), matched in full."""

PLAN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What a plan id looks like, matched in full: it appears in event ids joined by ``|``."""

_CURRENCY_PATTERN: Final = re.compile(r"[A-Z]{3}")

_TOP_LEVEL_KEYS: Final = ("defaults", "metrics", "plans", "milestones", "offers")
_DEFAULTS_KEYS: Final = ("period", "currency", "near_levels", "over_levels", "underuse_level")
_PLAN_KEYS: Final = (
    "id",
    "name",
    "rank",
    "price",
    "pausable",
    "limits",
    "near_levels",
    "over_levels",
    "overage",
)
_MILESTONE_KEYS: Final = ("metric", "at", "reward")
_OFFER_KEYS: Final = ("members_added", "region_changed")

DEFAULT_PERIOD: Final[PeriodLength] = "month"
DEFAULT_CURRENCY: Final = "USD"
DEFAULT_NEAR_LEVELS: Final[tuple[Decimal, ...]] = (Decimal("0.8"),)
DEFAULT_UNDERUSE_LEVEL: Final = Decimal("0.3")
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
class Offers:
    """Offers attached to account changes (contract 3.6); ``None`` when the catalog has none."""

    members_added: str | None = None
    region_changed: str | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every plan on offer, ordered by rank (cheapest rung first), with catalog-wide settings."""

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
    locale: str = "en_US"  # CLDR locale of messages' numbers, money and dates
    _by_id: Mapping[str, Plan] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.plans, key=lambda p: p.rank))
        # Frozen dataclass: fields can only be set through object.__setattr__.
        object.__setattr__(self, "plans", ordered)
        object.__setattr__(self, "_by_id", MappingProxyType({p.id: p for p in ordered}))

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


def load_catalog(path: str | PathLike[str]) -> Catalog:
    """Read and validate the catalog file at ``path``; :class:`CatalogError` if it is unusable."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(
            f"{source}: cannot read the plan catalog ({exc.strerror or exc}); "
            "set MOMENTS_PLANS_FILE to the path of a readable TOML file"
        ) from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_catalog(text, source)


def parse_catalog(text: str, source: str = "config/plans.toml") -> Catalog:
    """Validate the TOML catalog ``text``; ``source`` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: not valid TOML: {exc}") from None
    return _Parser(source).catalog(document)


class _Parser:
    """Turns the decoded TOML document into a :class:`Catalog`, naming ``source`` in errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> CatalogError:
        return CatalogError(f"{self.source}: {where}: {problem}")

    def catalog(self, document: dict[str, Any]) -> Catalog:
        self.no_unknown_keys(document, _TOP_LEVEL_KEYS, "top level", "table")
        defaults = self.table(document, "defaults", "[defaults]")
        self.no_unknown_keys(defaults, _DEFAULTS_KEYS, "[defaults]", "key")

        period = defaults.get("period", DEFAULT_PERIOD)
        if period not in PERIOD_LENGTHS:
            raise self.fail(
                "[defaults] period",
                f"must be one of {', '.join(map(repr, PERIOD_LENGTHS))}, got {_got(period)}",
            )
        currency = defaults.get("currency", DEFAULT_CURRENCY)
        if not isinstance(currency, str) or not _CURRENCY_PATTERN.fullmatch(currency):
            raise self.fail(
                "[defaults] currency",
                f"must be a three-letter ISO 4217 code like 'USD', got {_got(currency)}",
            )
        near_levels = DEFAULT_NEAR_LEVELS
        if "near_levels" in defaults:
            near_levels = self.levels(defaults["near_levels"], "[defaults] near_levels")
        over_levels: tuple[Decimal, ...] = ()
        if "over_levels" in defaults:
            over_levels = self.over_levels(defaults["over_levels"], "[defaults] over_levels")
        underuse = DEFAULT_UNDERUSE_LEVEL
        if "underuse_level" in defaults:
            underuse = self.fraction(defaults["underuse_level"], "[defaults] underuse_level")

        units = self.units(self.table(document, "metrics", "[metrics]"))
        plans = self.plans(document.get("plans"), near_levels, over_levels)
        return Catalog(
            period,
            currency,
            near_levels,
            MappingProxyType(units),
            plans,
            over_levels=over_levels,
            underuse_level=underuse,
            milestones=MappingProxyType(self.milestones(document.get("milestones", []))),
            offers=self.offers(self.table(document, "offers", "[offers]")),
        )

    def fraction(self, value: object, where: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"must be a fraction between 0 and 1, got {_got(value)}")
        fraction = Decimal(str(value))
        if not 0 < fraction < 1:
            raise self.fail(where, f"must be a fraction between 0 and 1, got {fraction}")
        return fraction

    def over_levels(self, value: object, where: str) -> tuple[Decimal, ...]:
        accepted = "a list of fractions above 1.0, increasing, like [1.5, 2.0]"
        if not isinstance(value, list):
            raise self.fail(where, f"must be {accepted}, got {_got(value)}")
        levels: list[Decimal] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail(where, f"must be {accepted}, got {_got(item)}")
            level = Decimal(str(item))
            if not level.is_finite() or level <= 1:
                raise self.fail(where, f"{level} is not above 1: over levels are past the limit")
            if levels and level <= levels[-1]:
                raise self.fail(
                    where,
                    f"must be strictly increasing, without repeats: {level} follows {levels[-1]}",
                )
            self.exact(level, where, "over level")
            levels.append(level)
        return tuple(levels)

    def milestones(self, entries: object) -> dict[str, Milestones]:
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail(
                "milestones", "must be an array of tables, written as [[milestones]] sections"
            )
        found: dict[str, Milestones] = {}
        for index, entry in enumerate(entries):
            where = f"milestones[{index}]"
            self.no_unknown_keys(entry, _MILESTONE_KEYS, where, "field")
            for required in _MILESTONE_KEYS:
                if required not in entry:
                    raise self.fail(where, f"{required}: missing; it is required")
            metric = entry["metric"]
            if not isinstance(metric, str):
                raise self.fail(where, f"metric: must be a metric name, got {_got(metric)}")
            self.metric_name(metric, f"{where} metric")
            if metric in found:
                raise self.fail(where, f"metric: {metric!r} has milestones already; merge them")
            where = f"milestones for {metric!r}"
            at = entry["at"]
            if not isinstance(at, list) or not at:
                raise self.fail(where, f"at: must be a non-empty list of numbers, got {_got(at)}")
            values: list[Decimal] = []
            for item in at:
                value = self.number(item, where, "at")
                if value <= 0:
                    raise self.fail(where, f"at: milestones must be above 0, got {value}")
                if values and value <= values[-1]:
                    raise self.fail(
                        where,
                        f"at: must be strictly increasing, without repeats: "
                        f"{value} follows {values[-1]}",
                    )
                self.exact(value, where, "at")
                values.append(value)
            reward = entry["reward"]
            if not isinstance(reward, str) or not reward.strip():
                raise self.fail(where, f"reward: must be a non-empty string, got {_got(reward)}")
            found[metric] = Milestones(metric, tuple(values), reward.strip())
        return found

    def offers(self, table: dict[str, Any]) -> Offers:
        self.no_unknown_keys(table, _OFFER_KEYS, "[offers]", "key")
        texts: dict[str, str] = {}
        for key, text in table.items():
            if not isinstance(text, str) or not text.strip():
                raise self.fail(f"[offers] {key}", f"must be a non-empty string, got {_got(text)}")
            texts[key] = text.strip()
        return Offers(**texts)

    def table(self, document: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, got {_got(value)}")
        return value

    def no_unknown_keys(
        self, table: dict[str, Any], known: tuple[str, ...], where: str, what: str
    ) -> None:
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise self.fail(
                where,
                f"unknown {what} {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(map(repr, known))}",
            )

    def units(self, metrics: dict[str, Any]) -> dict[str, str]:
        for metric, unit in metrics.items():
            self.metric_name(metric, f"[metrics] {metric!r}")
            if not isinstance(unit, str) or not unit.strip():
                raise self.fail(
                    f"[metrics] {metric}",
                    f'must be a non-empty display unit like "API calls", got {_got(unit)}',
                )
        return dict(metrics)

    def metric_name(self, metric: str, where: str) -> None:
        if not METRIC_PATTERN.fullmatch(metric):
            raise self.fail(where, "metric names must match [a-z0-9_.-]{1,64}")

    def plans(
        self,
        entries: object,
        default_levels: tuple[Decimal, ...],
        default_over: tuple[Decimal, ...] = (),
    ) -> tuple[Plan, ...]:
        if entries is None:
            raise self.fail("plans", "missing; add at least one [[plans]] table")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail("plans", "must be an array of tables, written as [[plans]] sections")
        if not entries:
            raise self.fail("plans", "empty; add at least one [[plans]] table")
        plans = [
            self.plan(index, entry, default_levels, default_over)
            for index, entry in enumerate(entries)
        ]

        by_id: dict[str, Plan] = {}
        by_rank: dict[int, Plan] = {}
        for plan in plans:
            if plan.id in by_id:
                raise self.fail(f"plan {plan.id!r}", "id: appears twice; plan ids must be unique")
            other = by_rank.get(plan.rank)
            if other is not None:
                raise self.fail(
                    f"plan {plan.id!r}",
                    f"rank: {plan.rank} is also the rank of plan {other.id!r}; "
                    "ranks must be unique",
                )
            by_id[plan.id] = plan
            by_rank[plan.rank] = plan
        return tuple(sorted(plans, key=lambda p: p.rank))

    def plan(
        self,
        index: int,
        entry: dict[str, Any],
        default_levels: tuple[Decimal, ...],
        default_over: tuple[Decimal, ...] = (),
    ) -> Plan:
        where = f"plans[{index}]"
        plan_id = entry.get("id")
        if plan_id is None:
            raise self.fail(where, 'id: missing; every plan needs an id like "starter"')
        if not isinstance(plan_id, str) or not PLAN_ID_PATTERN.fullmatch(plan_id):
            raise self.fail(
                where, f"id: must be a string matching [A-Za-z0-9_.-]{{1,64}}, got {_got(plan_id)}"
            )
        where = f"plan {plan_id!r}"
        self.no_unknown_keys(entry, _PLAN_KEYS, where, "field")

        for required in ("name", "rank", "price", "limits"):
            if required not in entry:
                raise self.fail(where, f"{required}: missing; it is required")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise self.fail(where, f"name: must be a non-empty string, got {_got(name)}")
        rank = entry["rank"]
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise self.fail(where, f"rank: must be an integer, got {_got(rank)}")
        price = self.number(entry["price"], where, "price")
        if price < 0:
            raise self.fail(where, f"price: must be a finite number >= 0, got {price}")
        self.exact(price, where, "price")
        pausable = entry.get("pausable", False)
        if not isinstance(pausable, bool):
            raise self.fail(where, f"pausable: must be true or false, got {_got(pausable)}")
        limits = self.limits(entry["limits"], where)
        levels = default_levels
        if "near_levels" in entry:
            levels = self.levels(entry["near_levels"], f"{where}: near_levels")
        over = default_over
        if "over_levels" in entry:
            over = self.over_levels(entry["over_levels"], f"{where}: over_levels")
        overage: dict[str, Decimal] = {}
        if "overage" in entry:
            raw = entry["overage"]
            if not isinstance(raw, dict):
                raise self.fail(
                    where,
                    "overage: must be a table of metric = price per unit, like "
                    f"{{ api_calls = 0.002 }}, got {_got(raw)}",
                )
            for metric, value in raw.items():
                self.metric_name(metric, f"{where}: overage.{metric}")
                price_per_unit = self.number(value, where, f"overage.{metric}")
                if price_per_unit <= 0:
                    raise self.fail(
                        where, f"overage.{metric}: must be a price > 0, got {price_per_unit}"
                    )
                self.exact(price_per_unit, where, f"overage.{metric}")
                overage[metric] = price_per_unit
        return Plan(
            plan_id,
            name,
            rank,
            price,
            pausable,
            MappingProxyType(limits),
            levels,
            over,
            MappingProxyType(overage),
        )

    def limits(self, value: object, where: str) -> dict[str, Decimal]:
        if not isinstance(value, dict):
            raise self.fail(
                where,
                "limits: must be a table of metric = number, like "
                f"{{ api_calls = 10000 }}, got {_got(value)}",
            )
        limits: dict[str, Decimal] = {}
        for metric, raw in value.items():
            self.metric_name(metric, f"{where}: limits.{metric}")
            limit = self.number(raw, where, f"limits.{metric}")
            if limit <= 0:
                raise self.fail(
                    where,
                    f"limits.{metric}: must be a finite number > 0, got {limit}; "
                    "leave the metric out for no limit",
                )
            self.exact(limit, where, f"limits.{metric}")
            limits[metric] = limit
        return limits

    def exact(self, value: Decimal, where: str, name: str) -> None:
        """Refuse an amount events could not carry exactly (see :mod:`domain.common.numbers`)."""
        if not exact_in_json(value):
            raise self.fail(
                where,
                f"{name}: {value} cannot be carried exactly in events: use 0 or a number "
                f"between {MIN_AMOUNT:g} and {MAX_AMOUNT:g} with at most 15 significant digits",
            )

    def number(self, value: object, where: str, name: str) -> Decimal:
        # bool is an int subclass in Python, but `price = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{name}: must be a number, got {_got(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(where, f"{name}: must be a finite number, got {value}")
        return Decimal(str(value))

    def levels(self, value: object, where: str) -> tuple[Decimal, ...]:
        accepted = "a list of fractions strictly between 0 and 1, increasing, like [0.5, 0.8]"
        if not isinstance(value, list):
            raise self.fail(where, f"must be {accepted}, got {_got(value)}")
        levels: list[Decimal] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail(where, f"must be {accepted}, got {_got(item)}")
            level = Decimal(str(item))
            if not level.is_finite() or not 0 < level < 1:
                raise self.fail(
                    where, f"{level} is outside (0, 1): the level 1.0 (threshold-hit) is implicit"
                )
            if levels and level <= levels[-1]:
                raise self.fail(
                    where,
                    f"must be strictly increasing, without repeats: {level} follows {levels[-1]}",
                )
            levels.append(level)
        return tuple(levels)


def _toml_type(value: object) -> str:
    """The TOML name of a decoded value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


def _got(value: object) -> str:
    """A decoded value as it reads in TOML (``true``, ``"19"``), for messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return 'string "' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return f"{_toml_type(value)} {value}"
    return _toml_type(value)
