"""Validation of the two input records: usage (contract 1.1) and account plans (contract 1.2).

Each parser turns a raw Kafka value into a frozen record or raises a ``RecordError`` whose
message is a short reason that starts with the field at fault (``"quantity: must be a finite
number >= 0, got -3"``). The reason goes to the dead-letter topic, where the producer's team
reads it, so it says what was expected and shows what arrived.

:func:`parse_usage` runs for every usage record: it checks types with ``type(x) is ...``, matches
a metric name against its pattern once (then remembers it), and builds no intermediate objects.
The metric's aggregation (contract 1.4) comes from a :class:`Metering` built once from the
catalog, which also remembers the metrics already matched: a ``sum``, ``max`` or ``latest``
metric (the common case) is found there by the one set lookup that found it before; a
``count`` or ``unique_count`` metric takes no quantity, and a ``unique_count`` one takes the
distinct value of its ``unique`` field.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import orjson

from domain.common.numbers import MAX_AMOUNT, MIN_AMOUNT, exact_in_json
from domain.common.timeutil import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    datetime_to_ms,
    parse_rfc3339,
    parse_rfc3339_ms,
    to_rfc3339,
)
from domain.errors import InvalidPlanRecord, InvalidUsageRecord, StructuredCloudEvent
from domain.intake.birthdates import parse_birth_date
from domain.plans.catalog import METRIC_PATTERN, Catalog, Plan
from domain.plans.periods import PeriodLength, default_anchor

PlanStatus = Literal["active", "paused", "cancelled"]
"""An account's status; only ``active`` accounts get events."""

PLAN_STATUSES: Final[tuple[PlanStatus, ...]] = get_args(PlanStatus)

ID_MAX_CHARS: Final = 128
"""Longest ``record_id`` or ``account_id`` accepted (contract 1.1)."""

_SHOW_MAX_CHARS: Final = 60
#: Epoch milliseconds of 0001-01-01T00:00:00Z, the first instant of ``datetime``.
_FIRST_MS: Final = -62_135_596_800_000
# Integers up to 2**53 are exact in JSON (domain.common.numbers) and far below its ceiling; a
# float's repr is always exact, so floats need only the bounds.
_INT53: Final = 2**53
# Members are counted in events and messages as integers: keep them in int64 and plausible.
_MEMBERS_MAX: Final = 10**9
_INT64: Final = 2.0**64
_MIN_FLOAT: Final = float(MIN_AMOUNT)
_MAX_FLOAT: Final = float(MAX_AMOUNT)
_ZERO: Final = Decimal(0)
_INFINITY: Final = math.inf
_METRIC_RULE: Final = "must match [a-z0-9_.-]{1,64}"
_TIMESTAMP_RULE: Final = (
    "must be an RFC 3339 string with an offset, like 2026-01-31T09:30:00Z, "
    "or integer epoch milliseconds"
)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One valid usage record: ``quantity`` of ``metric`` used by an account at ``timestamp_ms``.

    ``timestamp_ms`` is the event time in epoch milliseconds (UTC); ``record_id`` is the
    producer's idempotency key.
    """

    record_id: str
    account_id: str
    metric: str
    quantity: Decimal
    timestamp_ms: int
    #: ``unique_count`` metrics only: the distinct value counted, as JSON text (``"42"`` for
    #: the number, ``'"42"'`` for the string), the value key of
    #: :func:`domain.intake.distinct.distinct_key`; ``None`` for other aggregations.
    unique: str | None = None


class _UsageRecordBuilder:
    """:class:`UsageRecord`'s slots, in its order, without its frozen ``__setattr__``.

    One is built per usage record with plain attribute stores (about 10 ns a field), then
    becomes a ``UsageRecord`` by ``__class__`` assignment, which CPython allows between
    classes of the same slots. It takes ~170 ns where six slot setters
    (:mod:`domain.common.slots`) take ~290 ns: it pays for the ``unique`` field on the sum
    path, which must not get slower (issue 18).
    """

    __slots__ = ("record_id", "account_id", "metric", "quantity", "timestamp_ms", "unique")

    def __init__(
        self,
        record_id: str,
        account_id: str,
        metric: str,
        quantity: Decimal,
        timestamp_ms: int,
        unique: str | None,
    ) -> None:
        self.record_id = record_id
        self.account_id = account_id
        self.metric = metric
        self.quantity = quantity
        self.timestamp_ms = timestamp_ms
        self.unique = unique


if _UsageRecordBuilder.__slots__ != UsageRecord.__slots__:  # pragma: no cover
    raise TypeError("_UsageRecordBuilder must have UsageRecord's slots, in its order")


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """An account's plan as last published by billing.

    ``billing_anchor`` is ``None`` when billing sent none: see :meth:`anchor`. ``limits`` holds
    the account's overrides of its plan's allotments. ``updated_at_ms`` orders records of one
    account: an older one than the one held is ignored.
    """

    account_id: str
    plan_id: str
    billing_anchor: datetime | None
    status: PlanStatus
    limits: Mapping[str, Decimal] = field(hash=False)
    updated_at_ms: int
    #: Why each invalid optional entry (a limit <= 0, say) was left out; the rest applies.
    left_out: tuple[str, ...] = ()
    #: People (seats) on the account, when billing sent a valid count (contract 1.2).
    members: int | None = None
    #: Where the account is served, when billing sent a valid one (contract 1.2).
    region: str | None = None
    #: The account holder's date of birth, ``YYYY-MM-DD`` or ``--MM-DD``, when valid (3.7).
    birth_date: str | None = None

    @property
    def active(self) -> bool:
        """Whether the account gets events (only ``active`` accounts do)."""
        return self.status == "active"

    def anchor(self, length: PeriodLength) -> datetime:
        """The start of the account's billing periods: its ``billing_anchor``, else the default
        (1st of the month at 00:00 UTC; a Monday for weekly periods; midnight for daily ones)."""
        return self.billing_anchor if self.billing_anchor is not None else default_anchor(length)

    def limit(self, plan: Plan, metric: str) -> Decimal | None:
        """The account's allotment of ``metric``: its own override, else ``plan``'s, else
        ``None`` (unlimited)."""
        override = self.limits.get(metric)
        return override if override is not None else plan.limit(metric)


_KNOWN_METRICS_MAX: Final = 1024


@dataclass(frozen=True, slots=True)
class Metering:
    """What :func:`parse_usage` needs of the catalog, built once (:meth:`of`).

    ``counted`` holds only the metrics that parse differently from a sum: ``count`` ones map
    to ``()`` (no field), ``unique_count`` ones to the path of their ``unique`` field. Every
    other metric (undeclared, ``sum``, ``max``, ``latest``) is absent: its records take a
    quantity as today. ``sums`` remembers those other metrics once their name was matched
    against its pattern: a few names make up nearly every record, and a set lookup is much
    cheaper than a regex match (bounded, like the other caches).
    """

    counted: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    sums: set[str] = field(default_factory=set, hash=False, compare=False, repr=False)

    @classmethod
    def of(cls, catalog: Catalog) -> Metering:
        """The metering of ``catalog``, made once per catalog object and then reused."""
        held = _meterings.get(id(catalog))
        if held is not None and held[0] is catalog:
            return held[1]
        counted: dict[str, tuple[str, ...]] = {}
        for metric, aggregation in catalog.aggregations.items():
            if aggregation == "count":
                counted[metric] = ()
            elif aggregation == "unique_count":
                counted[metric] = tuple(catalog.unique_fields[metric])
        metering = cls(counted)
        if len(_meterings) >= _METERINGS_MAX:
            _meterings.clear()
        _meterings[id(catalog)] = (catalog, metering)
        return metering


SUMS: Final = Metering()
"""Every metric a sum: the metering of a catalog that declares no aggregation."""

# Catalog id -> (catalog, its metering): a catalog is loaded once per process; tests make more.
_METERINGS_MAX: Final = 64
_meterings: dict[int, tuple[Catalog, Metering]] = {}

UNIQUE_MAX_CHARS: Final = 256
"""Longest string accepted as a distinct value of a ``unique_count`` metric (contract 1.4)."""

_ONE: Final = Decimal(1)
_UNIQUE_RULE: Final = (
    f"must be a string of 1..{UNIQUE_MAX_CHARS} characters, an integer, a finite number or a "
    "boolean"
)


def _usage_record(
    record_id: str,
    account_id: str,
    metric: str,
    quantity: Decimal,
    timestamp_ms: int,
    unique: str | None,
) -> UsageRecord:
    """``UsageRecord(...)``, built as a :class:`_UsageRecordBuilder` (faster)."""
    record: Any = _UsageRecordBuilder(record_id, account_id, metric, quantity, timestamp_ms, unique)
    record.__class__ = UsageRecord
    result: UsageRecord = record
    return result


def parse_usage(
    raw: bytes | None, now_ms: int, max_skew_ms: int, metering: Metering
) -> UsageRecord:
    """Validate a raw ``usage-records`` value against contract 1.1 and 1.4.

    ``now_ms`` is the worker's clock; a timestamp later than ``now_ms + max_skew_ms`` is
    refused, because it would open billing periods that have not started. Fields other than the
    five required ones (``attributes`` among them) are ignored whatever they hold, except the
    ``unique`` field of a ``unique_count`` metric. A ``count`` or ``unique_count`` record's
    ``quantity`` is optional and ignored: its quantity is 1. Raises :class:`InvalidUsageRecord`
    with a reason that names the field.
    """
    # _load_object's usual case inline (a call less per record); it judges every other one.
    try:
        value = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        value = None
    if type(value) is not dict:
        value = _load_object(raw, InvalidUsageRecord)
    get = value.get
    record_id = get("record_id")
    if type(record_id) is not str or not 0 < len(record_id) <= ID_MAX_CHARS:
        if "specversion" in value:
            raise StructuredCloudEvent(value)
        record_id = _identifier(value, "record_id", InvalidUsageRecord)
    account_id = get("account_id")
    if type(account_id) is not str or not 0 < len(account_id) <= ID_MAX_CHARS:
        account_id = _identifier(value, "account_id", InvalidUsageRecord)

    metric = get("metric")
    if type(metric) is str and metric in metering.sums:
        path = None
    else:
        metric, path = _metric_path(value, metric, metering)
    if path is None:
        unique = None
        number = get("quantity")
        # The common case inline (a whole number); the rest, and every refusal, in parse_quantity.
        if type(number) is int and 0 <= number <= _INT53:
            quantity = Decimal(number)
        elif number is None and "quantity" not in value:
            raise InvalidUsageRecord("quantity: missing")
        else:
            quantity = parse_quantity(number, "quantity", raw)
    else:
        quantity = _ONE
        unique = _unique(value, metric, path) if path else None
    stamp = get("timestamp")
    # event_time_ms's usual case inline (epoch ms in range, not ahead of the clock); it judges
    # every other one.
    if type(stamp) is int and MIN_TIMESTAMP_MS <= stamp <= MAX_TIMESTAMP_MS:
        if stamp > now_ms + max_skew_ms:
            stamp = event_time_ms(stamp, "timestamp", now_ms, max_skew_ms)  # raises
    elif stamp is None and "timestamp" not in value:
        raise InvalidUsageRecord("timestamp: missing")
    else:
        stamp = event_time_ms(stamp, "timestamp", now_ms, max_skew_ms)
    # _usage_record(...) inline: a UsageRecord built as its slotted twin (faster).
    record: Any = _UsageRecordBuilder(record_id, account_id, metric, quantity, stamp, unique)
    record.__class__ = UsageRecord
    result: UsageRecord = record
    return result


def parse_quantity(number: object, name: str, raw: bytes | None) -> Decimal:
    """``number``, read from the JSON text ``raw``, as an exact quantity (contract 1.1).

    ``name`` is the field as reasons name it (``quantity``, ``data.usage.tokens``); its last
    part is looked for in ``raw`` to refuse integers past 64 bits, which orjson rounds.
    Raises :class:`InvalidUsageRecord` unless ``number`` is a finite number >= 0 that events
    can carry exactly.
    """
    # The common cases first: a whole number, or a finite float (orjson never yields NaN or
    # infinity, but a caller's JSON may), each checked for sign before it becomes a Decimal.
    if type(number) is int and 0 <= number <= _INT53:
        return Decimal(number)
    if type(number) is float and number >= 0.0 and number != _INFINITY:
        # -0.0 would otherwise stay a negative zero and print as "-0.0" in events.
        quantity = Decimal(repr(number)) if number else _ZERO
        if number and not _MIN_FLOAT <= number <= _MAX_FLOAT:
            raise InvalidUsageRecord(_amount_reason(name, number))
        if number >= _INT64:
            literal = _big_literal(name.rpartition(".")[2]).search(raw or b"")
            if literal is not None and Decimal(literal[1].decode()) != quantity:
                # orjson reads integers past 64 bits as the nearest double: refuse, not round.
                raise InvalidUsageRecord(_amount_reason(name, int(literal[1])))
        return quantity
    if type(number) is int and number > 0:
        quantity = Decimal(number)
        if not exact_in_json(quantity):
            raise InvalidUsageRecord(_amount_reason(name, number))
        return quantity
    raise InvalidUsageRecord(f"{name}: must be a finite number >= 0, got {_show(number)}")


def event_time_ms(stamp: object, name: str, now_ms: int, max_skew_ms: int) -> int:
    """The event time ``stamp`` (RFC 3339 text or epoch ms) of field ``name`` in epoch ms.

    Refused (:class:`InvalidUsageRecord`) when it is not one, falls outside years 1970..9999,
    or is more than ``max_skew_ms`` after ``now_ms`` (the worker's clock): it would open
    billing periods that have not started.
    """
    if type(stamp) is int:
        timestamp_ms = stamp
    elif type(stamp) is str:
        try:
            timestamp_ms = parse_rfc3339_ms(stamp)
        except ValueError as exc:
            raise InvalidUsageRecord(f"{name}: {exc}, got {_show(stamp)}") from None
    else:
        raise InvalidUsageRecord(f"{name}: {_TIMESTAMP_RULE}, got {_show(stamp)}")
    if not MIN_TIMESTAMP_MS <= timestamp_ms <= MAX_TIMESTAMP_MS:
        raise InvalidUsageRecord(
            f"{name}: {_show(stamp)} is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z"
        )
    if timestamp_ms > now_ms + max_skew_ms:
        raise InvalidUsageRecord(
            f"{name}: {_timestamp_text(stamp)} is more than {max_skew_ms / 1000:g} s in the "
            f"future (worker clock {to_rfc3339(now_ms)})"
        )
    return timestamp_ms


def _metric_path(
    value: dict[str, Any], metric: object, metering: Metering
) -> tuple[str, tuple[str, ...] | None]:
    """``(metric, None)`` for a metric whose records take a quantity (then remembered in
    ``metering.sums``), else ``(metric, the path of its unique field)`` (``()`` for
    ``count``); refuses a metric that is not a valid name."""
    if type(metric) is str:
        path = metering.counted.get(metric)
        if path is not None:
            return metric, path  # a catalog metric: its name was matched when read
    if type(metric) is not str or not METRIC_PATTERN.fullmatch(metric):
        raise InvalidUsageRecord(_reason(value, "metric", metric, _METRIC_RULE))
    sums = metering.sums
    if len(sums) >= _KNOWN_METRICS_MAX:
        sums.clear()
    sums.add(metric)
    return metric, None


def _unique(value: dict[str, Any], metric: str, path: tuple[str, ...]) -> str:
    """The distinct value of a ``unique_count`` record as JSON text (its value key).

    The field is looked up at the top level, else under ``attributes``: the first place where
    the whole path exists is the one read. Numbers are keyed by value (``7`` and ``7.0`` are
    one value); a string is never the number it spells (``"7"`` and ``7`` are two).
    """
    name = ".".join(path)
    found, got = _lookup(value, path)
    if not found:
        attributes = value.get("attributes")
        if type(attributes) is dict:
            found, got = _lookup(attributes, path)
            name = "attributes." + name
    if not found:
        raise InvalidUsageRecord(
            f"{'.'.join(path)}: missing; the unique_count metric {metric} counts its "
            "distinct values"
        )
    return unique_key(got, name, metric)


def unique_key(got: object, name: str, metric: str) -> str:
    """The value key of ``got``, the distinct value of a ``unique_count`` ``metric`` read from
    field ``name``: its JSON text, numbers keyed by value (``7`` and ``7.0`` are one value); a
    string is never the number it spells (``"7"`` and ``7`` are two). Refused (naming
    ``name``) unless a string of 1..256 characters, a number below 2**53 or a boolean."""
    kind = type(got)
    if kind is str:
        if 0 < len(got) <= UNIQUE_MAX_CHARS:  # type: ignore[arg-type]
            return orjson.dumps(got).decode()
    elif kind is int or kind is bool:
        return orjson.dumps(got).decode()
    elif isinstance(got, float) and math.isfinite(got):
        if not got.is_integer():
            return repr(got)
        if abs(got) < _INT53:
            return str(int(got))  # 7.0 is the number 7 (and -0.0 is 0)
        # Past 2**53 a double no longer tells neighbouring integers apart (and orjson reads
        # integers past 64 bits as doubles): two ids would count as one.
        raise InvalidUsageRecord(
            f"{name}: {_show(got)} is too large to tell apart from its neighbours; send "
            f"an id this large as a string; the unique_count metric {metric} counts its "
            "distinct values"
        )
    raise InvalidUsageRecord(
        f"{name}: {_UNIQUE_RULE}, got {_show(got)}; the unique_count metric {metric} counts "
        "its distinct values"
    )


def _lookup(value: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    """``(True, value at path)`` when every step of ``path`` exists, else ``(False, None)``."""
    got: Any = value
    for step in path:
        if type(got) is not dict or step not in got:
            return False, None
        got = got[step]
    return True, got


@functools.lru_cache(maxsize=64)
def _big_literal(name: str) -> re.Pattern[bytes]:
    """Finds an integer literal of 20 digits or more given to field ``name`` in JSON text."""
    return re.compile(rb'"' + re.escape(name.encode()) + rb'"\s*:\s*(\d{20,})(?![.eE\d])')


def parse_plan(raw: bytes, catalog: Catalog) -> PlanRecord:
    """Validate a raw ``account-plans`` value against contract 1.2 and ``catalog``.

    Tombstones (a null Kafka value) mean "forget the account" and are the caller's to handle
    before calling this. JSON ``null`` in an optional field counts as absent. Raises
    :class:`InvalidPlanRecord` with a reason that names the field.
    """
    value = _load_object(raw, InvalidPlanRecord)
    account_id = _identifier(value, "account_id", InvalidPlanRecord)

    plan_id = value.get("plan_id")
    # The known ids only go into a refusal's reason: joined there, not for every record (a
    # worker reads every plan record at start, issue 20).
    if type(plan_id) is not str:
        rule = f"must be the id of a catalog plan ({', '.join(catalog.plan_ids)})"
        raise InvalidPlanRecord(_reason(value, "plan_id", plan_id, rule))
    if catalog.plan(plan_id) is None:
        known = ", ".join(catalog.plan_ids)
        raise InvalidPlanRecord(f"plan_id: {plan_id!r} is not in the plan catalog (known: {known})")

    anchor = value.get("billing_anchor")
    billing_anchor = None if anchor is None else _datetime(anchor, "billing_anchor")

    status: PlanStatus = "active"
    raw_status = value.get("status")
    if raw_status is not None:
        if raw_status not in PLAN_STATUSES:
            raise InvalidPlanRecord(
                f"status: must be one of {', '.join(PLAN_STATUSES)}, got {_show(raw_status)}"
            )
        status = raw_status

    limits: dict[str, Decimal] = {}
    left_out: list[str] = []
    raw_limits = value.get("limits")
    if raw_limits is not None:
        if type(raw_limits) is not dict:
            rule = "must be an object of metric -> number"
            left_out.append(f"limits: {rule}, got {_show(raw_limits)}")
        else:
            for metric, raw_limit in raw_limits.items():
                if not METRIC_PATTERN.fullmatch(metric):
                    left_out.append(f"limits: metric {_show(metric)} {_METRIC_RULE}")
                    continue
                limit = _decimal(raw_limit)
                if limit is None or limit <= _ZERO:
                    left_out.append(
                        f"limits.{metric}: must be a finite number > 0, got {_show(raw_limit)}"
                    )
                elif not exact_in_json(limit):
                    left_out.append(_amount_reason(f"limits.{metric}", raw_limit))
                else:
                    limits[metric] = limit

    members = value.get("members")
    if members is not None and (type(members) is not int or not 0 <= members <= _MEMBERS_MAX):
        left_out.append(
            f"members: must be an integer from 0 to {_MEMBERS_MAX}, got {_show(members)}"
        )
        members = None
    region = value.get("region")
    if region is not None and (type(region) is not str or not 0 < len(region) <= 64):
        left_out.append(f"region: must be a string of 1..64 characters, got {_show(region)}")
        region = None
    birth_date = value.get("birth_date")
    if birth_date is not None:
        try:
            birth_date = str(parse_birth_date(birth_date))
        except ValueError as exc:
            left_out.append(f"birth_date: {exc}, got {_show(birth_date)}")
            birth_date = None

    if "updated_at" not in value or value["updated_at"] is None:
        raise InvalidPlanRecord("updated_at: missing")
    updated_at_ms = _instant_ms(value["updated_at"], "updated_at")
    return PlanRecord(
        account_id=account_id,
        plan_id=plan_id,
        billing_anchor=billing_anchor,
        status=status,
        limits=MappingProxyType(limits),
        updated_at_ms=updated_at_ms,
        left_out=tuple(left_out),
        members=members,
        region=region,
        birth_date=birth_date,
    )


def _load_object(
    raw: bytes | None, error: type[InvalidUsageRecord] | type[InvalidPlanRecord]
) -> dict[str, Any]:
    if not raw:
        raise error("empty value")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error(f"invalid JSON: {exc}") from None
    if type(value) is not dict:
        raise error(f"value: must be a JSON object, got {_show(value)}")
    return value


def _identifier(
    value: dict[str, Any], name: str, error: type[InvalidUsageRecord] | type[InvalidPlanRecord]
) -> str:
    text = value.get(name)
    if type(text) is not str or not 0 < len(text) <= ID_MAX_CHARS:
        raise error(_reason(value, name, text, f"must be a string of 1..{ID_MAX_CHARS} characters"))
    return text


def _decimal(number: object) -> Decimal | None:
    """``number`` as an exact Decimal when it is a finite JSON number (not a boolean), else
    ``None``. Floats go through their shortest repr, so 0.1 becomes Decimal("0.1")."""
    if type(number) is int:
        return Decimal(number)
    if type(number) is float and math.isfinite(number):
        # -0.0 would otherwise stay a negative zero and print as "-0.0" in events.
        return Decimal(repr(number)) if number else _ZERO
    return None


def _datetime(text: object, name: str) -> datetime:
    if type(text) is not str:
        raise InvalidPlanRecord(
            f"{name}: must be an RFC 3339 string with an offset, got {_show(text)}"
        )
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise InvalidPlanRecord(f"{name}: {exc}, got {_show(text)}") from None


def _instant_ms(text: object, name: str) -> int:
    """``datetime_to_ms(_datetime(text, name))``: a valid date-time by integer arithmetic
    (:func:`parse_rfc3339_ms`; a worker reads every plan record at start, issue 20), and
    anything else, whose refusal this words, the ``datetime`` way."""
    if type(text) is str:
        try:
            ms = parse_rfc3339_ms(text)
        except ValueError:
            pass
        else:
            # The instants a UTC datetime holds: parse_rfc3339 refuses the others.
            if _FIRST_MS <= ms <= MAX_TIMESTAMP_MS:
                return ms
    return datetime_to_ms(_datetime(text, name))


def _reason(value: dict[str, Any], name: str, got: object, rule: str) -> str:
    """``name: missing`` when the field is absent, else ``name: <rule>, got <value>``."""
    if name not in value:
        return f"{name}: missing"
    return f"{name}: {rule}, got {_show(got)}"


def _show(got: object) -> str:
    """``got`` as the JSON it arrived as, cut short: producers read JSON, not Python reprs."""
    try:
        text = orjson.dumps(got).decode()
    except TypeError:
        text = repr(got)
    if len(text) > _SHOW_MAX_CHARS:
        return text[: _SHOW_MAX_CHARS - 3] + "..."
    return text


def _amount_reason(name: str, got: object) -> str:
    """Why an amount was refused: events could not carry it, or its totals, exactly."""
    return (
        f"{name}: {_show(got)} cannot be carried exactly in events: amounts must be 0 or "
        f"between {MIN_AMOUNT:g} and {MAX_AMOUNT:g}, whole numbers below 2**63 exactly "
        f"representable as a double, or a double's shortest decimal text"
    )


def _timestamp_text(stamp: object) -> str:
    """A timestamp as its sender wrote it, with the UTC time spelled out for epoch ms."""
    if type(stamp) is int:
        return f"{stamp} ({to_rfc3339(stamp)})"
    return str(stamp)
