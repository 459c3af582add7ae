"""One line of key figures per event, read through the kind models: what ``moments tail`` prints.

:func:`event_facts` picks the renderer of the event's kind (:data:`RENDERERS` has one per kind
of :data:`~domain.wording.kinds.KINDS`) and each renderer reads its kind's payload model of
:mod:`domain.wording.payloads`, so a field it names that the model lacks fails ``mypy``. Events
come off a topic, so reading is defensive: :func:`_part` gives an absent or malformed object
as an empty one, every value goes through a formatter that takes any JSON value, and a
missing or odd value prints as :data:`MISSING`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, Final, TypeVar, cast

from domain.common.formatting import format_money, format_number, format_percent
from domain.common.timeutil import ms_to_datetime, parse_rfc3339
from domain.wording.kinds import KINDS, Kind
from domain.wording.payloads import (
    AccountChangeEvent,
    AnniversaryEvent,
    BirthdayEvent,
    CustomEvent,
    DropEvent,
    MilestoneEvent,
    MomentEvent,
    RecoveredEvent,
    ThresholdEvent,
)

MISSING: Final = "-"
FACTS_MAX_CHARS: Final = 300
_RECAP_METRICS_SHOWN: Final = 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

_T = TypeVar("_T")


def one_line(text: str, limit: int = 60) -> str:
    """One line of printable text: control characters, newlines and any other character that
    does not print (unassigned, format, separator, surrogate) become spaces."""
    text = _CONTROL.sub(" ", text).strip()
    if not text.isprintable():
        text = "".join(char if char.isprintable() else " " for char in text).strip()
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text or MISSING


def text_of(value: object, limit: int = 60) -> str:
    """A string or number as one line; ``-`` for anything else."""
    if isinstance(value, str):
        return one_line(value, limit)
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return MISSING
    return one_line(str(value), limit)


def instant_of(value: object) -> datetime | None:
    """An aware datetime from an RFC 3339 string or epoch milliseconds, else None."""
    try:
        if isinstance(value, str):
            return parse_rfc3339(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return ms_to_datetime(value)
    except (ValueError, OverflowError):
        return None
    return None


def format_level(value: object) -> str:
    """A level such as ``0.8`` as ``80%``; ``-`` when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return MISSING
    try:
        number = Decimal(str(value)) * 100
        if not number.is_finite():
            return MISSING
        number = number.quantize(Decimal("0.1")).normalize()
    except InvalidOperation:  # not a number, or too large to show to a tenth
        return MISSING
    return f"{number:f}%"


def _part(value: _T | None) -> _T:
    """An object of an event as its model types it, or an empty one when it is absent or not
    a JSON object (its fields then read as absent)."""
    return value if isinstance(value, Mapping) else cast(_T, {})


def _decimal(value: object) -> Decimal | None:
    """A finite number from a JSON number (or numeric text), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number.adjusted()) > 30:  # absurd: not worth a figure
        return None
    return number


def _num(value: object) -> str:
    """``15,000``, ``3.5``; ``-`` when not a number."""
    number = _decimal(value)
    if number is None:
        return MISSING
    with localcontext() as ctx:
        ctx.prec = 64  # room for 30 digits and the decimals, whatever the thread's context
        return format_number(number)


def _percent(value: object) -> str:
    """A ratio as a whole percentage rounded down: ``66%``."""
    number = _decimal(value)
    if number is None:
        return MISSING
    with localcontext() as ctx:
        ctx.prec = 64
        return format_percent(number)


def _money(value: object, currency: str) -> str:
    number = _decimal(value)
    if number is None:
        return MISSING
    with localcontext() as ctx:
        ctx.prec = 64
        return format_money(number, currency)


def _date(value: object) -> str:
    """The UTC date of an instant (``2026-11-21``), or a date as written; else ``-``."""
    moment = instant_of(value)
    if moment is not None:
        return moment.date().isoformat()
    return text_of(value, 10) if isinstance(value, str) else MISSING


def _currency(event: MomentEvent) -> str:
    currency = _part(event.get("plan")).get("currency")
    return currency if isinstance(currency, str) and re.fullmatch("[A-Z]{3}", currency) else "USD"


def _unit(unit: object) -> str:
    return text_of(unit, 30) if isinstance(unit, str) else ""


def _of(total: object, limit: object, unit: str) -> str:
    """``15,000 of 10,000 API calls``, or ``17 purchases`` without a limit."""
    amount = _num(total) if limit is None else f"{_num(total)} of {_num(limit)}"
    return f"{amount} {unit}".rstrip()


def _level(event: ThresholdEvent) -> str:
    if event.get("level") is not None:
        return format_level(event.get("level"))
    crossed: object = event.get("crossed_levels")
    if isinstance(crossed, list) and crossed:
        return format_level(crossed[-1])
    return MISSING


def _threshold_facts(event: ThresholdEvent) -> str:
    usage = _part(event.get("usage"))
    facts = (
        f"{_level(event)} {_of(usage.get('total'), usage.get('limit'), _unit(usage.get('unit')))}"
    )
    overage = _part(event.get("overage"))
    if overage:
        currency = _currency(cast(MomentEvent, event))
        facts += (
            f"; overage {_money(overage.get('cost'), currency)} so far, "
            f"{_money(overage.get('projected_cost'), currency)} projected"
        )
    return facts


def _drop_facts(event: DropEvent | RecoveredEvent) -> str:
    drop = _part(event.get("drop"))
    unit = _unit(_part(event.get("usage")).get("unit"))
    facts = (
        f"last {_num(drop.get('recent_days'))} days: {_num(drop.get('recent_total'))} {unit} "
        f"vs {_num(drop.get('expected_total'))} expected ({_percent(drop.get('ratio'))})"
    )
    if event.get("kind") == "usage-recovered":
        facts += (
            f"; ends the drop of {_date(drop.get('dropped_on'))}, "
            f"drop_event_id {text_of(drop.get('drop_event_id'), 64)}"
        )
    return facts


def _milestone_facts(event: MilestoneEvent) -> str:
    milestone = _part(event.get("milestone"))
    unit = _unit(_part(event.get("usage")).get("unit")) or text_of(event.get("metric"))
    facts = f"milestone {_num(milestone.get('value'))} {unit}, lifetime total "
    facts += _num(milestone.get("lifetime_total"))
    reached: object = milestone.get("reached")
    if isinstance(reached, list) and len(reached) > 1:
        facts += f" (reached {', '.join(_num(m) for m in reached)})"
    return facts


def _anniversary_facts(event: AnniversaryEvent) -> str:
    recap = _part(event.get("recap"))
    anniversary = _part(recap.get("anniversary"))
    period = _part(event.get("period"))
    facts = f"{_date(period.get('start'))}..{_date(period.get('end'))}"
    facts += f", {_num(anniversary.get('periods_completed'))} periods"
    years = anniversary.get("years")
    if years is not None:
        facts += f", {_num(years)} {'year' if years == 1 else 'years'}"
    metrics: object = recap.get("metrics")
    used = [
        m
        for m in (metrics if isinstance(metrics, list) else [])
        if isinstance(m, Mapping) and _decimal(m.get("total")) not in (None, Decimal(0))
    ]
    shown = []
    for m in used[:_RECAP_METRICS_SHOWN]:
        unit = _unit(m.get("unit")) or text_of(m.get("metric"))
        figure = _of(m.get("total"), m.get("limit"), unit)
        if m.get("limit") is not None:
            figure += f" ({_percent(m.get('ratio'))})"
        shown.append(figure)
    if len(used) > _RECAP_METRICS_SHOWN:
        shown.append(f"{len(used) - _RECAP_METRICS_SHOWN} more")
    return f"{facts}: {', '.join(shown) if shown else 'no usage'}"


def _change_facts(event: AccountChangeEvent) -> str:
    change = _part(event.get("change"))
    old, new = change.get("from"), change.get("to")
    return f"{text_of(change.get('type'))}: {text_of(old)} -> {text_of(new)}"


def _birthday_facts(event: BirthdayEvent) -> str:
    birthday = _part(event.get("birthday"))
    facts = f"birthday {text_of(birthday.get('day'))}"
    age = birthday.get("age")
    return facts if age is None else f"{facts}, {_num(age)} years"


def _custom_facts(event: CustomEvent) -> str:
    """``3 support calls over 7d (threshold 3); 3 of 10 this period``."""
    custom = _part(event.get("custom"))
    usage = _part(event.get("usage"))
    unit = _unit(usage.get("unit"))
    return (
        f"{_num(custom.get('value'))} {unit} over {text_of(custom.get('window'), 8)} "
        f"(threshold {_num(custom.get('threshold'))}); "
        f"{_of(usage.get('total'), usage.get('limit'), unit)} this period"
    )


RENDERERS: Final[Mapping[Kind, Callable[[Any], str]]] = {
    "threshold-near": _threshold_facts,
    "threshold-hit": _threshold_facts,
    "sudden-drop": _drop_facts,
    "usage-recovered": _drop_facts,
    "milestone": _milestone_facts,
    "billing-anniversary": _anniversary_facts,
    "account-change": _change_facts,
    "birthday": _birthday_facts,
}
"""The key figures of each kind, from its payload model."""


def _suggestion(event: MomentEvent) -> str:
    """``; suggests upgrade to Growth``, ``; suggests reward: 15% off your next order``; empty
    for ``none`` or no suggestion."""
    suggestion = _part(event.get("suggestion"))
    action: object = suggestion.get("action")
    if not isinstance(action, str) or action in ("", "none"):
        return ""
    text = f"; suggests {text_of(action, 20)}"
    if action in ("upgrade", "downgrade"):
        text += f" to {text_of(suggestion.get('plan_name'))}"
    offer: object = suggestion.get("offer")
    if isinstance(offer, str) and offer.strip():
        text += f": {text_of(offer, 80)}"
    return text


def event_facts(kind: str, event: Mapping[str, Any]) -> str:
    """The key figures of an event of ``kind`` and its suggestion, on one printable line of at
    most :data:`FACTS_MAX_CHARS`. A ``custom.<rule id>`` kind reads its ``custom`` block; an
    unknown kind is read as a threshold."""
    render: Callable[[Any], str] = (
        _custom_facts
        if kind.startswith("custom.")
        else RENDERERS.get(cast(Kind, kind), _threshold_facts)
    )
    typed = cast(MomentEvent, event)
    return one_line(render(typed) + _suggestion(typed), FACTS_MAX_CHARS)


assert set(RENDERERS) == set(KINDS)  # noqa: S101  # one renderer per kind, checked on import
