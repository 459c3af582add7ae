"""``moments tail``'s lines: each event read from an event topic, printed readably (pure).

Each event prints on two lines: the time, kind, account and metric with the key figures of its
kind (level and usage for thresholds, with the overage cost when there is one; drop figures,
and the drop a recovery ends; the milestone and lifetime total; the recap and years of an
anniversary; what an account change changed; and the suggestion), then the message title,
indented. ``--json`` prints each event as one raw JSON line instead (:func:`json_line`).
Numbers, percentages and money are formatted by the domain's wording, as in the messages.
The Kafka side is :mod:`commands.tail.follow`.

The event schema (contract section 3) may still change, so formatting is defensive: a missing
or odd field prints as ``-``, and a value that is not a JSON object still prints a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, Final

import orjson

from domain.common.timeutil import ms_to_datetime, parse_rfc3339
from domain.wording.kinds import KINDS as EVENT_KINDS
from domain.wording.messages import format_money, format_number, format_percent

MISSING: Final = "-"
_TITLE_MAX_CHARS: Final = 200
_FACTS_MAX_CHARS: Final = 300
_RECAP_METRICS_SHOWN: Final = 4
TITLE_INDENT: Final = " " * 10
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def parse_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The kinds to follow, in the canonical order, without repeats; all of them when none.

    Raises ``ValueError`` naming the accepted kinds when one is unknown.
    """
    wanted = list(kinds)
    unknown = [k for k in wanted if k not in EVENT_KINDS]
    if unknown:
        raise ValueError(
            f"unknown event kind {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(EVENT_KINDS)}"
        )
    return tuple(k for k in EVENT_KINDS if k in wanted) if wanted else EVENT_KINDS


def _clean(text: str, limit: int = 60) -> str:
    """One line of printable text: control characters and newlines become spaces."""
    text = _CONTROL.sub(" ", text).strip()
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text or MISSING


def _text(value: object, limit: int = 60) -> str:
    if isinstance(value, str):
        return _clean(value, limit)
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return MISSING
    return _clean(str(value), limit)


def _instant(value: object) -> datetime | None:
    """An aware datetime from an RFC 3339 string or epoch milliseconds, else None."""
    try:
        if isinstance(value, str):
            return parse_rfc3339(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return ms_to_datetime(value)
    except (ValueError, OverflowError):
        return None
    return None


def format_time(moment: datetime | None, today: date | None = None) -> str:
    """``HH:MM:SS`` in local time; with the date in front when it is not today."""
    if moment is None:
        return MISSING.ljust(8)
    try:
        local = moment.astimezone()
    except (OverflowError, ValueError):  # at the edge of datetime's range
        return MISSING.ljust(8)
    if local.date() == (today if today is not None else datetime.now().astimezone().date()):
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


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
    text = f"{number:f}"
    return f"{text}%"


def _level(event: Mapping[str, Any]) -> str:
    if "level" in event and event["level"] is not None:
        return format_level(event["level"])
    crossed = event.get("crossed_levels")
    if isinstance(crossed, list) and crossed:
        return format_level(crossed[-1])
    return MISSING


def _title(event: Mapping[str, Any]) -> str:
    message = event.get("message")
    if isinstance(message, Mapping):
        return _text(message.get("title"), _TITLE_MAX_CHARS)
    if isinstance(message, str):
        return _text(message, _TITLE_MAX_CHARS)
    return MISSING


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


def _mapping(event: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = event.get(name)
    return value if isinstance(value, Mapping) else {}


def _date(value: object) -> str:
    """The UTC date of an instant (``2026-11-21``), or a date as written; else ``-``."""
    moment = _instant(value)
    if moment is not None:
        return moment.date().isoformat()
    return _text(value, 10) if isinstance(value, str) else MISSING


def _currency(event: Mapping[str, Any]) -> str:
    currency = _mapping(event, "plan").get("currency")
    return currency if isinstance(currency, str) and re.fullmatch("[A-Z]{3}", currency) else "USD"


def _unit(usage: Mapping[str, Any]) -> str:
    unit = usage.get("unit")
    return _text(unit, 30) if isinstance(unit, str) else ""


def _of(total: object, limit: object, unit: str) -> str:
    """``15,000 of 10,000 API calls``, or ``17 purchases`` without a limit."""
    amount = _num(total) if limit is None else f"{_num(total)} of {_num(limit)}"
    return f"{amount} {unit}".rstrip()


def _threshold_facts(event: Mapping[str, Any]) -> str:
    usage = _mapping(event, "usage")
    facts = f"{_level(event)} {_of(usage.get('total'), usage.get('limit'), _unit(usage))}"
    overage = _mapping(event, "overage")
    if overage:
        currency = _currency(event)
        facts += (
            f"; overage {_money(overage.get('cost'), currency)} so far, "
            f"{_money(overage.get('projected_cost'), currency)} projected"
        )
    return facts


def _drop_facts(event: Mapping[str, Any]) -> str:
    drop = _mapping(event, "drop")
    unit = _unit(_mapping(event, "usage"))
    facts = (
        f"last {_num(drop.get('recent_days'))} days: {_num(drop.get('recent_total'))} {unit} "
        f"vs {_num(drop.get('expected_total'))} expected ({_percent(drop.get('ratio'))})"
    )
    if event.get("kind") == "usage-recovered":
        facts += (
            f"; ends the drop of {_date(drop.get('dropped_on'))}, "
            f"drop_event_id {_text(drop.get('drop_event_id'), 64)}"
        )
    return facts


def _milestone_facts(event: Mapping[str, Any]) -> str:
    milestone = _mapping(event, "milestone")
    unit = _unit(_mapping(event, "usage")) or _text(event.get("metric"))
    facts = f"milestone {_num(milestone.get('value'))} {unit}, lifetime total "
    facts += _num(milestone.get("lifetime_total"))
    reached = milestone.get("reached")
    if isinstance(reached, list) and len(reached) > 1:
        facts += f" (reached {', '.join(_num(m) for m in reached)})"
    return facts


def _anniversary_facts(event: Mapping[str, Any]) -> str:
    recap = _mapping(event, "recap")
    anniversary = _mapping(recap, "anniversary")
    period = _mapping(event, "period")
    facts = f"{_date(period.get('start'))}..{_date(period.get('end'))}"
    facts += f", {_num(anniversary.get('periods_completed'))} periods"
    years = anniversary.get("years")
    if years is not None:
        facts += f", {_num(years)} {'year' if years == 1 else 'years'}"
    metrics = recap.get("metrics")
    used = [
        m
        for m in (metrics if isinstance(metrics, list) else [])
        if isinstance(m, Mapping) and _decimal(m.get("total")) not in (None, Decimal(0))
    ]
    shown = []
    for m in used[:_RECAP_METRICS_SHOWN]:
        figure = _of(m.get("total"), m.get("limit"), _unit(m) or _text(m.get("metric")))
        if m.get("limit") is not None:
            figure += f" ({_percent(m.get('ratio'))})"
        shown.append(figure)
    if len(used) > _RECAP_METRICS_SHOWN:
        shown.append(f"{len(used) - _RECAP_METRICS_SHOWN} more")
    return f"{facts}: {', '.join(shown) if shown else 'no usage'}"


def _change_facts(event: Mapping[str, Any]) -> str:
    change = _mapping(event, "change")
    return f"{_text(change.get('type'))}: {_text(change.get('from'))} -> {_text(change.get('to'))}"


_FACTS = {
    "threshold-near": _threshold_facts,
    "threshold-hit": _threshold_facts,
    "sudden-drop": _drop_facts,
    "usage-recovered": _drop_facts,
    "milestone": _milestone_facts,
    "billing-anniversary": _anniversary_facts,
    "account-change": _change_facts,
}


def _suggestion(event: Mapping[str, Any]) -> str:
    """``; suggests upgrade to Growth``, ``; suggests reward: 15% off your next order``; empty
    for ``none`` or no suggestion."""
    suggestion = _mapping(event, "suggestion")
    action = suggestion.get("action")
    if not isinstance(action, str) or action in ("", "none"):
        return ""
    text = f"; suggests {_text(action, 20)}"
    if action in ("upgrade", "downgrade"):
        text += f" to {_text(suggestion.get('plan_name'))}"
    offer = suggestion.get("offer")
    if isinstance(offer, str) and offer.strip():
        text += f": {_text(offer, 80)}"
    return text


def event_facts(kind: str, event: Mapping[str, Any]) -> str:
    """The key figures of an event of ``kind``, and its suggestion, on one line."""
    facts = _FACTS.get(kind, _threshold_facts)(event) + _suggestion(event)
    return _clean(facts, _FACTS_MAX_CHARS)


def _line(when: str, kind: str, account: str, metric: str, facts: str) -> str:
    return f"{when}  {kind:<19} {account:<10} {metric:<10} {facts}"


def format_event(
    kind: str,
    key: bytes | None,
    value: bytes,
    timestamp_ms: int | None,
    today: date | None = None,
) -> str:
    """Two readable lines for an event read from the topic of ``kind``: what and who with the
    key figures of the kind, then the message title, indented. One line for a value that is
    not a JSON object.

    Fields come from the event itself when present and sane, else from the Kafka record (the
    key for the account, the record timestamp for the time), else print as ``-``.
    """
    key_text = _clean(key.decode("utf-8", "replace")) if key else MISSING
    fallback_time = None if timestamp_ms is None else _instant(timestamp_ms)
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        raw = _clean(value.decode("utf-8", "replace"))
        when = format_time(fallback_time, today)
        return _line(when, kind, key_text, MISSING, f"(not a JSON object: {raw})")

    moment = _instant(event.get("triggered_at")) or _instant(event.get("emitted_at"))
    event_kind = event.get("kind")
    shown_kind = event_kind if isinstance(event_kind, str) and event_kind in EVENT_KINDS else kind
    account = _text(event.get("account_id"))
    head = _line(
        format_time(moment or fallback_time, today),
        shown_kind,
        account if account != MISSING else key_text,
        _text(event.get("metric")),
        event_facts(shown_kind, event),
    )
    return f"{head}\n{TITLE_INDENT}{_title(event)}"


def json_line(value: bytes) -> str | None:
    """The event as one JSON line (the raw value when it already is one), or None if the value
    is not JSON."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    text = value.decode("utf-8", "replace").strip()
    if "\n" not in text and "\r" not in text:
        return text
    return orjson.dumps(parsed).decode()
