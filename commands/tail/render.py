"""``moments tail``'s lines: each event read from an event topic, printed readably (pure).

Each event prints on two lines: the time, kind, account and metric with the key figures of its
kind (level and usage for thresholds, with the overage cost when there is one; drop figures,
and the drop a recovery ends; the milestone and lifetime total; the recap and years of an
anniversary; what an account change changed; and the suggestion), then the message title,
indented. ``--json`` prints each event as one raw JSON line instead (:func:`json_line`).
The key figures of each kind are read through its payload model
(:func:`domain.wording.rendering.event_facts`), formatted by the domain's wording.
The Kafka side is :mod:`commands.tail.follow`.

The event schema (contract section 3) may still change, so formatting is defensive: a missing
or odd field prints as ``-``, and a value that is not a JSON object still prints a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Final

import orjson

from domain.wording.kinds import KINDS as EVENT_KINDS
from domain.wording.rendering import (
    MISSING,
    event_facts,
    instant_of,
    one_line,
    text_of,
)

_TITLE_MAX_CHARS: Final = 200
CUSTOM_KIND: Final = re.compile(r"custom\.[a-z0-9-]{1,40}")
TITLE_INDENT: Final = " " * 10


CUSTOM: Final = "custom"
"""Stands for every ``custom.<rule id>`` kind of the catalog (contract 3.8)."""


def parse_kinds(kinds: Iterable[str], known: tuple[str, ...] = EVENT_KINDS) -> tuple[str, ...]:
    """The kinds to follow, in the canonical order of ``known`` (the worker's kinds, its
    rules' ``custom.<id>`` included), without repeats; all of them when none. ``custom``
    stands for every rule's kind.

    Raises ``ValueError`` naming the accepted kinds when one is unknown.
    """
    wanted = list(kinds)
    unknown = [k for k in wanted if k not in known and k != CUSTOM]
    if unknown:
        raise ValueError(
            f"unknown event kind {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(known)}, or {CUSTOM} (every rule of [[moments]])"
        )
    if not wanted:
        return known
    every_rule = CUSTOM in wanted
    return tuple(k for k in known if k in wanted or (every_rule and k.startswith(CUSTOM + ".")))


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


def _title(event: Mapping[str, Any]) -> str:
    message = event.get("message")
    if isinstance(message, Mapping):
        return text_of(message.get("title"), _TITLE_MAX_CHARS)
    if isinstance(message, str):
        return text_of(message, _TITLE_MAX_CHARS)
    return MISSING


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
    key_text = one_line(key.decode("utf-8", "replace")) if key else MISSING
    fallback_time = None if timestamp_ms is None else instant_of(timestamp_ms)
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        raw = one_line(value.decode("utf-8", "replace"))
        when = format_time(fallback_time, today)
        return _line(when, kind, key_text, MISSING, f"(not a JSON object: {raw})")

    moment = instant_of(event.get("triggered_at")) or instant_of(event.get("emitted_at"))
    event_kind = event.get("kind")
    shown_kind = (
        event_kind
        if isinstance(event_kind, str)
        and (event_kind in EVENT_KINDS or CUSTOM_KIND.fullmatch(event_kind))
        else kind
    )
    account = text_of(event.get("account_id"))
    head = _line(
        format_time(moment or fallback_time, today),
        shown_kind,
        account if account != MISSING else key_text,
        text_of(event.get("metric")),
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
