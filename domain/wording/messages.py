"""Message wording: number, money and date formatting, and the operators' templates.

Every event carries a ``message {title, body}`` ready to send (contract 3). The words live in
``config/messages.toml`` (``MOMENTS_MESSAGES_FILE``) so that operators can edit them without a
release: one ``title`` and ``body`` per kind and suggestion action, plus the two ``[pace]``
sentences a threshold-near body can include. Templates are rendered with ``str.format_map``
over already formatted strings, so a template decides wording, never number formats.

:func:`load_templates` checks at start-up that every template exists and uses only the
placeholders its kind and action provide (:data:`PLACEHOLDERS`); a mistake stops the worker
with a :class:`~domain.errors.ConfigError` naming the file, the template and the placeholder.

Prose formats (the ``format_*`` functions) are chosen for people: ``12,345`` and ``1,234.5``
with no float noise, ``80%``, ``$79`` or ``$19.50``, ``December 1, 2026`` rather than an ISO
timestamp. They are locale-independent: a worker's locale never changes a message.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, getcontext, localcontext
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from domain.common.timeutil import ms_to_datetime
from domain.errors import ConfigError
from domain.plans.periods import Period, date_to_day, day_start_ms

if TYPE_CHECKING:  # suggestions imports the formatters below; only the types are needed here.
    from domain.plans.catalog import Catalog, Plan
    from domain.rules.overage import Overage
    from domain.rules.projection import Projection
    from domain.rules.suggestions import Suggestion

Kind = Literal["threshold-near", "threshold-hit", "sudden-drop"]
"""The three kinds of moment, as in event ``kind`` and topic names."""

KINDS: Final[tuple[Kind, ...]] = ("threshold-near", "threshold-hit", "sudden-drop")

# ---------------------------------------------------------------------------------------------
# Prose formats
# ---------------------------------------------------------------------------------------------

_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_CURRENCY_SYMBOLS: Final = MappingProxyType({"USD": "$", "EUR": "€", "GBP": "£"})
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_HUNDRED: Final = Decimal(100)


_QUANTA: Final = tuple(_ONE.scaleb(-places) for places in range(8))
"""``1E-places`` for the numbers of decimals messages use: quantize only reads its exponent."""


def _quantize(value: Decimal, places: int, rounding: str) -> Decimal:
    """``value`` rounded to ``places`` decimals, with enough precision never to fail."""
    quantum = _QUANTA[places] if 0 <= places < len(_QUANTA) else _ONE.scaleb(-places)
    needed = value.adjusted() + places + 4
    if needed <= getcontext().prec:  # the context has the digits already (the usual case)
        return value.quantize(quantum, rounding=rounding)
    with localcontext() as ctx:
        ctx.prec = needed
        return value.quantize(quantum, rounding=rounding)


def format_number(value: Decimal | int, places: int = 2) -> str:
    """``value`` with thousands separators, at most ``places`` decimals, no trailing zeros.

    ``Decimal("12345")`` -> ``12,345``; ``Decimal("1234.50")`` -> ``1,234.5``;
    ``Decimal("0.1") + Decimal("0.2")`` -> ``0.3``. Rounds half to even; never prints ``-0``.
    """
    if type(value) is int:
        return f"{value:,}"
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        # Whole already: what the roundings below come to, without them.
        return f"{int(value):,}"
    number = _quantize(Decimal(value), places, ROUND_HALF_EVEN)
    if number == number.to_integral_value():
        number = _quantize(number, 0, ROUND_HALF_EVEN)
    else:
        number = number.normalize()
    if number.is_zero():
        number = abs(number)
    return format(number, ",f")


def format_approx(value: Decimal | int) -> str:
    """``value`` rounded the way people say "about": whole from 100 up, one decimal from 1 up,
    two below (``about 1,200 a day``, ``about 13.3 a day``, ``about 0.25 GB``)."""
    number = abs(Decimal(value))
    places = 0 if number >= _HUNDRED else 1 if number >= _ONE else 2
    return format_number(value, places)


def format_percent(ratio: Decimal) -> str:
    """``ratio`` as a whole percentage rounded down: ``Decimal("0.8")`` -> ``80%``.

    Rounding down means a message never claims 100 % of a limit that is not reached yet.
    A ratio strictly between 0 and 1 % reads ``under 1%`` rather than a misleading ``0%``.
    """
    percent = ratio * _HUNDRED
    if _ZERO < percent < _ONE:
        return "under 1%"
    return f"{format_number(_quantize(percent, 0, ROUND_FLOOR), 0)}%"


def format_level(level: Decimal) -> str:
    """A threshold level as an exact percentage: ``0.8`` -> ``80%``, ``0.125`` -> ``12.5%``."""
    return f"{format_number(level * _HUNDRED, 2)}%"


def format_money(amount: Decimal, currency: str) -> str:
    """``amount`` of ``currency``: ``$79``, ``$19.50``, ``€1,499``, ``CHF 20``, ``-$60``.

    A symbol for USD, EUR and GBP, else the ISO code and a space; cents only when the amount
    is not whole.
    """
    if (
        amount.is_finite()
        and amount == amount.to_integral_value()
        and amount.adjusted() + 6 <= getcontext().prec  # abs() below would round past this
    ):
        # Whole already: what the roundings below come to, without them.
        whole = int(amount)
        text = f"{abs(whole):,}"
        symbol = _CURRENCY_SYMBOLS.get(currency)
        money = f"{symbol}{text}" if symbol is not None else f"{currency} {text}"
        return f"-{money}" if whole < 0 else money
    cents = _quantize(amount, 2, ROUND_HALF_EVEN)
    places = 0 if cents == cents.to_integral_value() else 2
    text = format(_quantize(abs(cents), places, ROUND_HALF_EVEN), ",f")
    symbol = _CURRENCY_SYMBOLS.get(currency)
    money = f"{symbol}{text}" if symbol is not None else f"{currency} {text}"
    return f"-{money}" if cents < _ZERO else money


def format_unit_price(amount: Decimal, currency: str) -> str:
    """A price per unit, which may be a fraction of a cent: ``$0.002``, ``$1.50``, ``€0.0125``.

    Whole cents read as :func:`format_money`; a smaller price keeps up to 6 decimals (rounded),
    so ``$0.002`` never reads ``$0``.
    """
    if amount == _quantize(amount, 2, ROUND_HALF_EVEN):
        return format_money(amount, currency)
    text = format_number(amount, 6)
    symbol = _CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol is not None else f"{currency} {text}"


def format_date(ms: int) -> str:
    """The UTC calendar date of instant ``ms`` in prose: ``December 1, 2026``."""
    return format_calendar_date(ms_to_datetime(ms).date())


def format_calendar_date(day: date) -> str:
    """A calendar date in prose: ``December 1, 2026``."""
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def format_days(days: int) -> str:
    """A span of recent days in prose: ``the last day``, ``the last 3 days``."""
    return "the last day" if days == 1 else f"the last {days} days"


def format_ordinal(number: int) -> str:
    """``number`` as an English ordinal with thousands separators: ``1st``, ``2nd``, ``3rd``,
    ``11th``, ``12th``, ``13th``, ``21st``, ``101st``, ``111th``, ``10,000th``."""
    if number % 100 in (11, 12, 13):
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number:,}{suffix}"


def format_series(values: Sequence[str]) -> str:
    """Items in prose: ``10``, ``10 and 50``, ``10, 50 and 100``."""
    if len(values) <= 1:
        return "".join(values)
    return f"{', '.join(values[:-1])} and {values[-1]}"


def singular_unit(unit: str) -> str | None:
    """The singular of a plural display unit, for ordinals (``API calls`` -> ``API call``,
    ``purchases`` -> ``purchase``, ``searches`` -> ``search``, ``queries`` -> ``query``), or
    ``None`` when the unit is not a plain plural count (``GB of storage``, ``kWh``, ``bus``),
    where an ordinal would not read naturally."""
    head, _, last = unit.rpartition(" ")
    if not last.isascii() or not last.isalpha() or not last.islower() or len(last) < 3:
        return None
    if last.endswith(("ss", "us", "is")) or not last.endswith("s"):
        return None
    if last.endswith("ies") and len(last) > 4:
        one = last[:-3] + "y"
    elif last.endswith(("ches", "shes", "sses", "xes")):
        one = last[:-2]
    else:
        one = last[:-1]
    return f"{head} {one}" if head else one


def format_milestone(value: Decimal, unit: str) -> str:
    """A milestone in prose: ``your 50th purchase`` when it is a whole count of a plural
    unit, else the amount with its unit (``2.5 GB of storage``, ``1,000 kWh``)."""
    one = singular_unit(unit) if value == value.to_integral_value() else None
    if one is None:
        return f"{format_number(value)} {unit}"
    return f"your {format_ordinal(int(value))} {one}"


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------

_COMMON: Final = frozenset(
    {
        "account_id",  # acct-42
        "metric",  # api_calls
        "unit",  # API calls (catalog [metrics])
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "period_start_date",  # November 1, 2026
        "reset_date",  # December 1, 2026: the period end, when usage starts again from zero
        "total",  # 8,000: usage so far this period
        "projected_total",  # about-rounded period total at the current pace
        "rationale",  # the suggestion's rationale sentence
    }
)
_SUGGESTED: Final = frozenset(
    {
        "suggested_plan",  # Growth
        "suggested_price",  # $79
        "suggested_limit",  # 100,000, or "unlimited"
        "price_delta",  # $60: the price difference, without sign (wording says more or less)
    }
)
_THRESHOLD: Final = frozenset(
    {
        "limit",  # 10,000
        "percent",  # 80%: usage / limit, rounded down
        "level_percent",  # 80%: the level crossed
        "remaining",  # 2,000: limit - usage, at least 0
    }
)
_DROP: Final = frozenset(
    {
        "recent_days",  # 3
        "recent_span",  # the last 3 days
        "recent_total",  # 40
        "recent_daily",  # 13.3: recent usage per day
        "usual_daily",  # 1,200: expected usage per day
        "expected_total",  # 3,600: expected usage over the recent days
        "drop_percent",  # 97%: how far below expected
        "last_active_date",  # November 27, 2026
    }
)

_CHANGE: Final = frozenset(
    {
        "account_id",  # acct-42
        "plan_name",  # Growth: the plan after the change
        "plan_price",  # $79
        "period_word",  # month | week | day
        "change_date",  # November 3, 2026: the plan record's updated_at
        "rationale",  # the suggestion's rationale sentence
    }
)
_CHANGE_PLAN: Final = _CHANGE | {
    "old_plan_name",  # Starter
    "old_plan_price",  # $19
    "period_start_date",  # November 1, 2026: start of the current period
    "reset_date",  # December 1, 2026: its end
    "usage",  # 9,000 of 100,000 API calls (9%), 2 of 10 seats (20%); or "nothing used yet"
}
_CHANGE_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "plan_upgraded": _CHANGE_PLAN,
    "plan_downgraded": _CHANGE_PLAN,
    # Either way, when some metric is already past the new plan's limit this period.
    "plan_past_limit": _CHANGE_PLAN | {"past"},  # 500 API calls and 2 GB of storage
    "paused": _CHANGE | {"old_status"},  # active
    "resumed": _CHANGE | {"old_status"},
    "cancelled": _CHANGE | {"old_status"},
    "members_added": _CHANGE | {"old_members", "members", "added"},  # 3 members, 5 members
    "region_changed": _CHANGE | {"old_region", "region"},  # as published: CA, NY
}
_OVER: Final = frozenset(
    {
        "limit_date",  # November 20, 2026: the day the limit was reached
        "over",  # 6,000: usage past the limit
        "over_percent",  # 60%: usage past the limit as a share of it, rounded down
    }
)
_OVERAGE_MONEY: Final = frozenset(
    {
        "unit_price",  # $0.002: the plan's price per unit past the limit
        "overage_cost",  # $12: the overage so far at that price
        "projected_overage_cost",  # $45: the overage the period is heading for
    }
)
_RECOVERED: Final = frozenset(
    {
        "recent_days",  # 3
        "recent_span",  # the last 3 days
        "recent_total",  # 2,900
        "recent_daily",  # 966.7: recent usage per day
        "usual_daily",  # 1,000: expected usage per day
        "expected_total",  # 3,000
        "recovered_percent",  # 96%: recent usage as a share of the usual, rounded down
        "dropped_on_date",  # November 1, 2026: the first day of the drop
    }
)
_ANNIVERSARY: Final = frozenset(
    {
        "account_id",  # acct-42
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "period_start_date",  # November 1, 2026: the closed period's start
        "period_end_date",  # December 1, 2026: its end
        "periods_completed",  # 12
        "periods_text",  # 12 months
        "recap",  # 9,500 of 10,000 API calls (95%) and 2 GB of storage
        "rationale",  # the suggestion's rationale sentence
    }
)
_ANNIVERSARY_YEARS: Final = _ANNIVERSARY | {"years", "years_text"}  # 2, 2 years
_ANNIVERSARY_SUGGESTED: Final = frozenset({"suggested_plan", "suggested_price", "price_delta"})
_MILESTONE: Final = frozenset(
    {
        "account_id",  # acct-42
        "metric",  # purchases
        "unit",  # purchases (catalog [metrics])
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "milestone",  # 50: the highest milestone reached
        "celebration",  # your 50th purchase (an ordinal when it reads naturally), 2.5 GB of storage
        "reached",  # 10 and 50: every milestone this record reached
        "lifetime_total",  # 52: the lifetime total after the record
        "reward",  # 15% off your next order (the catalog's [[milestones]] reward)
        "rationale",  # the suggestion's rationale sentence
    }
)

PLACEHOLDERS: Final[Mapping[tuple[str, str], frozenset[str]]] = MappingProxyType(
    {
        ("billing-anniversary", "upgrade"): _ANNIVERSARY | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary", "downgrade"): _ANNIVERSARY | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary", "none"): _ANNIVERSARY,
        # Whole years completed: the same actions, celebrating the years.
        ("billing-anniversary-years", "upgrade"): _ANNIVERSARY_YEARS | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary-years", "downgrade"): _ANNIVERSARY_YEARS | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary-years", "none"): _ANNIVERSARY_YEARS,
        ("threshold-near", "upgrade"): _COMMON | _THRESHOLD | _SUGGESTED | {"pace"},
        ("threshold-near", "none"): _COMMON | _THRESHOLD | {"pace"},
        ("threshold-hit", "upgrade"): _COMMON | _THRESHOLD | _SUGGESTED | {"limit_date", "over"},
        ("threshold-hit", "none"): _COMMON | _THRESHOLD | {"limit_date", "over"},
        ("sudden-drop", "pause"): _COMMON | _DROP,
        ("sudden-drop", "downgrade"): _COMMON | _DROP | _SUGGESTED,
        ("sudden-drop", "none"): _COMMON | _DROP,
        ("milestone", "reward"): _MILESTONE,
        # The two sentences a threshold-near body gets as {pace}.
        ("pace", "reaches_limit"): (_COMMON - {"rationale"}) | _THRESHOLD | {"limit_date"},
        ("pace", "within_limit"): (_COMMON - {"rationale"}) | _THRESHOLD,
        **{("account-change", key): names for key, names in _CHANGE_KEYS.items()},
        # threshold-hit above level 1.0 (contract 3.1); {overage} is one [overage] sentence.
        ("threshold-over", "upgrade"): _COMMON | _THRESHOLD | _SUGGESTED | _OVER | {"overage"},
        ("threshold-over", "none"): _COMMON | _THRESHOLD | _OVER | {"overage"},
        ("overage", "priced"): (_COMMON - {"rationale"}) | _THRESHOLD | _OVER | _OVERAGE_MONEY,
        ("overage", "unpriced"): (_COMMON - {"rationale"}) | _THRESHOLD | _OVER,
        ("usage-recovered", "resume"): _COMMON | _RECOVERED,
        ("usage-recovered", "none"): _COMMON | _RECOVERED,
    }
)
"""Placeholders each template may use, by ``(table, key)`` of ``messages.toml``: the kind and
suggestion action for messages, ``("pace", ...)`` and ``("overage", ...)`` for the sentences
that other templates include as ``{pace}`` and ``{overage}``."""

_SENTENCES: Final = ("pace", "overage")
"""Tables of sentences (one string per key) rather than of ``{title, body}`` messages."""

_FIELDS: Final = ("title", "body")


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message: a short title and a body of a few sentences."""

    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Templates:
    """The validated templates of one file.

    ``messages[(kind, action)]`` is a ``{"title": ..., "body": ...}`` pair; ``pace`` holds the
    ``reaches_limit`` and ``within_limit`` sentences, ``overage`` the ``priced`` and
    ``unpriced`` sentences of an overage message.
    """

    source: str
    messages: Mapping[tuple[str, str], Mapping[str, str]]
    pace: Mapping[str, str]
    overage: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def render(self, kind: str, action: str, values: Mapping[str, str]) -> Message:
        """The message of ``kind`` for a suggestion ``action``, filled with ``values``."""
        template = self.messages[(kind, action)]
        return Message(
            _fill(template["title"], values).strip(), _fill(template["body"], values).strip()
        )


def _fill(template: str, values: Mapping[str, str]) -> str:
    # Validation guarantees that every placeholder is one the caller supplies.
    return template.format_map(values)


def load_templates(path: str | PathLike[str]) -> Templates:
    """Read and validate the message templates at ``path`` (:class:`ConfigError` if unusable)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{source}: cannot read the message templates ({exc.strerror or exc}); "
            "set MOMENTS_MESSAGES_FILE to the path of a readable TOML file"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_templates(text, source)


def parse_templates(text: str, source: str = "config/messages.toml") -> Templates:
    """Validate the TOML templates ``text``; ``source`` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None

    tables = sorted({table for table, _ in PLACEHOLDERS})
    unknown = sorted(set(document) - set(tables))
    if unknown:
        raise ConfigError(
            f"{source}: unknown table {', '.join(f'[{u}]' for u in unknown)}; "
            f"accepted: {', '.join(f'[{t}]' for t in tables)}"
        )
    messages: dict[tuple[str, str], Mapping[str, str]] = {}
    sentences: dict[str, dict[str, str]] = {table: {} for table in _SENTENCES}
    for table in tables:
        section = document.get(table)
        keys = sorted(key for t, key in PLACEHOLDERS if t == table)
        if not isinstance(section, dict):
            raise ConfigError(
                f"{source}: [{table}] missing; it needs {', '.join(keys)} "
                f"({'sentences' if table in _SENTENCES else 'tables with a title and a body'})"
            )
        extra = sorted(set(section) - set(keys))
        if extra:
            raise ConfigError(
                f"{source}: [{table}] unknown key {', '.join(map(repr, extra))}; "
                f"accepted: {', '.join(map(repr, keys))}"
            )
        for key in keys:
            allowed = PLACEHOLDERS[(table, key)]
            if table in _SENTENCES:
                sentences[table][key] = _template(
                    section.get(key), f"[{table}] {key}", allowed, source
                )
                continue
            where = f"[{table}.{key}]"
            entry = section.get(key)
            if not isinstance(entry, dict):
                raise ConfigError(f"{source}: {where} missing; it needs a title and a body")
            extra = sorted(set(entry) - set(_FIELDS))
            if extra:
                raise ConfigError(
                    f"{source}: {where} unknown key {', '.join(map(repr, extra))}; "
                    "accepted: 'title', 'body'"
                )
            messages[(table, key)] = MappingProxyType(
                {f: _template(entry.get(f), f"{where} {f}", allowed, source) for f in _FIELDS}
            )
    return Templates(
        source,
        MappingProxyType(messages),
        MappingProxyType(sentences["pace"]),
        MappingProxyType(sentences["overage"]),
    )


def _template(value: object, where: str, allowed: frozenset[str], source: str) -> str:
    """``value`` if it is a non-empty template using only ``allowed`` plain placeholders."""
    if value is None:
        raise ConfigError(f"{source}: {where}: missing")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {where}: must be a non-empty string")
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {where}: {exc}; write a literal brace as {{{{ or }}}}"
        ) from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in allowed:
            raise ConfigError(
                f"{source}: {where}: unknown placeholder {{{name}}}; "
                f"known here: {', '.join(f'{{{p}}}' for p in sorted(allowed))}"
            )
        if spec or conversion:
            raise ConfigError(
                f"{source}: {where}: placeholder {{{name}}} has a format or conversion; "
                "values arrive formatted, write it as a plain {name}"
            )
    return value


# ---------------------------------------------------------------------------------------------
# Messages of the three kinds
# ---------------------------------------------------------------------------------------------


def _common(
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    projection: Projection,
    suggestion: Suggestion,
) -> dict[str, str]:
    values = {
        "account_id": account_id,
        "metric": metric,
        "unit": catalog.unit(metric),
        "plan_name": plan.name,
        "plan_price": format_money(plan.price, catalog.currency),
        "period_word": catalog.period,
        "period_start_date": format_date(period.start_ms),
        "reset_date": format_date(period.end_ms),
        "total": format_number(total),
        "projected_total": format_approx(projection.period_total),
        "rationale": suggestion.rationale,
    }
    suggested = None if suggestion.plan_id is None else catalog.plan(suggestion.plan_id)
    if suggested is not None and suggestion.price is not None:
        limit = suggested.limit(metric)
        values["suggested_plan"] = suggested.name
        values["suggested_price"] = format_money(suggestion.price, catalog.currency)
        values["suggested_limit"] = "unlimited" if limit is None else format_number(limit)
        values["price_delta"] = format_money(abs(suggestion.price_delta or _ZERO), catalog.currency)
    return values


def threshold_message(
    templates: Templates,
    *,
    kind: Literal["threshold-near", "threshold-hit"],
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    limit: Decimal,
    level: Decimal,
    projection: Projection,
    suggestion: Suggestion,
    overage: Overage | None = None,
) -> Message:
    """The message of a threshold moment: ``total`` of ``limit`` used, crossing ``level``.

    ``limit`` is the account's allotment (its override, else the plan's). For threshold-near
    the ``{pace}`` sentence says when the limit will be reached at this pace, or that it will
    not be before ``reset_date``; for threshold-hit ``{limit_date}`` is the day it was reached.
    A threshold-hit above level 1.0 renders the ``threshold-over`` templates, whose
    ``{overage}`` sentence speaks of the ``overage`` cost when the plan prices it.
    """
    values = _common(catalog, plan, account_id, metric, period, total, projection, suggestion)
    values.update(
        limit=format_number(limit),
        percent=format_percent(total / limit),
        level_percent=format_level(level),
        remaining=format_number(max(limit - total, _ZERO)),
    )
    reached = projection.limit_reached_at_ms
    if kind == "threshold-hit":
        values["over"] = format_number(max(total - limit, _ZERO))
        if reached is None:
            # domain.wording.events passes the announcing record's time; a hit without one is a bug.
            raise ValueError("a threshold-hit projection needs limit_reached_at_ms")
        values["limit_date"] = format_date(reached)
        if level > _ONE:
            _overage_values(templates, values, catalog.currency, total, limit, overage)
            return templates.render("threshold-over", suggestion.action, values)
    else:
        pace_values = {k: v for k, v in values.items() if k != "rationale"}
        if reached is not None:
            pace_values["limit_date"] = format_date(reached)
            values["pace"] = _fill(templates.pace["reaches_limit"], pace_values).strip()
        else:
            values["pace"] = _fill(templates.pace["within_limit"], pace_values).strip()
    return templates.render(kind, suggestion.action, values)


def _overage_values(
    templates: Templates,
    values: dict[str, str],
    currency: str,
    total: Decimal,
    limit: Decimal,
    overage: Overage | None,
) -> None:
    """Add ``{over_percent}`` and the ``{overage}`` sentence of an overage message to
    ``values`` (which already hold the threshold-hit ones)."""
    values["over_percent"] = format_percent(max(total - limit, _ZERO) / limit)
    sentence = {k: v for k, v in values.items() if k != "rationale"}
    if overage is None:
        values["overage"] = _fill(templates.overage["unpriced"], sentence).strip()
        return
    sentence.update(
        unit_price=format_unit_price(overage.unit_price, currency),
        overage_cost=format_money(overage.cost, currency),
        projected_overage_cost=format_money(overage.projected_cost, currency),
    )
    values["overage"] = _fill(templates.overage["priced"], sentence).strip()


def drop_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    projection: Projection,
    suggestion: Suggestion,
    recent_days: int,
    recent_total: Decimal,
    expected_total: Decimal,
    ratio: Decimal,
    last_active_at_ms: int | None,
    first_recent_day: date,
) -> Message:
    """The message of a sudden drop: ``recent_total`` over ``recent_days`` against the
    ``expected_total``, with the period-to-date ``total`` and the ``projection`` at the new
    pace. Without a known ``last_active_at_ms`` the last activity reads as the day before the
    recent days began, which is right in the silent case that has no activity since."""
    values = _common(catalog, plan, account_id, metric, period, total, projection, suggestion)
    last_active = last_active_at_ms
    if last_active is None:
        last_active = day_start_ms(date_to_day(first_recent_day)) - 1
    values.update(
        recent_days=str(recent_days),
        recent_span=format_days(recent_days),
        recent_total=format_number(recent_total),
        recent_daily=format_approx(recent_total / recent_days),
        usual_daily=format_approx(expected_total / recent_days),
        expected_total=format_approx(expected_total),
        drop_percent=format_percent(max(_ONE - ratio, _ZERO)),
        last_active_date=format_date(last_active),
    )
    return templates.render("sudden-drop", suggestion.action, values)


def _and_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def account_change_message(
    templates: Templates,
    *,
    key: str,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    changed_at_ms: int,
    period: Period,
    figures: Sequence[tuple[str, Decimal, Decimal | None]],
    past: Sequence[tuple[str, Decimal]],
    rationale: str,
    extra: Mapping[str, str],
) -> Message:
    """The message of an account change (contract 3.6), template ``[account-change.<key>]``.

    ``plan`` is the account's plan after the change. Plan changes describe the current
    ``period``: ``figures`` are its (metric, total, limit) with usage (limit ``None``:
    unlimited), ``past`` the metrics already over the new limits and by how much. ``extra``
    holds the values only this key has (old plan, statuses, member counts, regions), already
    formatted.
    """
    values = {
        "account_id": account_id,
        "plan_name": plan.name,
        "plan_price": format_money(plan.price, catalog.currency),
        "period_word": catalog.period,
        "change_date": format_date(changed_at_ms),
        "rationale": rationale,
        **extra,
    }
    if key in ("plan_upgraded", "plan_downgraded", "plan_past_limit"):
        usage = [
            f"{format_number(total)} {catalog.unit(metric)} (no limit)"
            if limit is None
            else f"{format_number(total)} of {format_number(limit)} {catalog.unit(metric)} "
            f"({format_percent(total / limit)})"
            for metric, total, limit in figures
        ]
        values.update(
            period_start_date=format_date(period.start_ms),
            reset_date=format_date(period.end_ms),
            usage=", ".join(usage) if usage else "nothing used yet",
        )
        if past:
            values["past"] = _and_list(
                [f"{format_number(over)} {catalog.unit(metric)}" for metric, over in past]
            )
    return templates.render("account-change", key, values)


def recovered_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    period: Period,
    total: Decimal,
    projection: Projection,
    suggestion: Suggestion,
    recent_days: int,
    recent_total: Decimal,
    expected_total: Decimal,
    dropped_on: date,
) -> Message:
    """The welcome-back message of a usage-recovered moment (contract 3.3): ``recent_total``
    over ``recent_days`` is back near the ``expected_total``, after the drop that began on
    ``dropped_on``."""
    values = _common(catalog, plan, account_id, metric, period, total, projection, suggestion)
    share = recent_total / expected_total if expected_total > _ZERO else _ONE
    values.update(
        recent_days=str(recent_days),
        recent_span=format_days(recent_days),
        recent_total=format_number(recent_total),
        recent_daily=format_approx(recent_total / recent_days),
        usual_daily=format_approx(expected_total / recent_days),
        expected_total=format_approx(expected_total),
        recovered_percent=format_percent(share),
        dropped_on_date=format_calendar_date(dropped_on),
    )
    return templates.render("usage-recovered", suggestion.action, values)


def _count(n: int, word: str) -> str:
    return f"{format_number(n)} {word}" if n == 1 else f"{format_number(n)} {word}s"


def anniversary_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    period: Period,
    periods_completed: int,
    years: int | None,
    recap: str,
    suggestion: Suggestion,
) -> Message:
    """The message of a billing anniversary: the closed ``period``'s ``recap`` (prose), the
    periods completed, and the whole ``years`` when the period completes some (then the
    ``billing-anniversary-years`` templates celebrate them)."""
    values = {
        "account_id": account_id,
        "plan_name": plan.name,
        "plan_price": format_money(plan.price, catalog.currency),
        "period_word": catalog.period,
        "period_start_date": format_date(period.start_ms),
        "period_end_date": format_date(period.end_ms),
        "periods_completed": format_number(periods_completed),
        "periods_text": _count(periods_completed, catalog.period),
        "recap": recap,
        "rationale": suggestion.rationale,
    }
    if suggestion.plan_name is not None and suggestion.price is not None:
        values["suggested_plan"] = suggestion.plan_name
        values["suggested_price"] = format_money(suggestion.price, catalog.currency)
        values["price_delta"] = format_money(abs(suggestion.price_delta or _ZERO), catalog.currency)
    table = "billing-anniversary"
    if years is not None:
        table = "billing-anniversary-years"
        values["years"] = format_number(years)
        values["years_text"] = _count(years, "year")
    return templates.render(table, suggestion.action, values)


def milestone_message(
    templates: Templates,
    *,
    catalog: Catalog,
    plan: Plan,
    account_id: str,
    metric: str,
    value: Decimal,
    reached: Sequence[Decimal],
    lifetime_total: Decimal,
    reward: str,
    rationale: str,
) -> Message:
    """The message of a lifetime milestone (contract 3.4): ``value`` (the highest of
    ``reached``) of ``metric`` reached, ``lifetime_total`` in all, with the catalog's
    ``reward``."""
    unit = catalog.unit(metric)
    values = {
        "account_id": account_id,
        "metric": metric,
        "unit": unit,
        "plan_name": plan.name,
        "plan_price": format_money(plan.price, catalog.currency),
        "period_word": catalog.period,
        "milestone": format_number(value),
        "celebration": format_milestone(value, unit),
        "reached": format_series([format_number(m) for m in reached]),
        "lifetime_total": format_number(lifetime_total),
        "reward": reward,
        "rationale": rationale,
    }
    return templates.render("milestone", "reward", values)
