"""``moments tail``: follow the event topics and print each event readably.

Each event prints on two lines: the time, kind, account and metric with the key figures of its
kind (level and usage for thresholds, with the overage cost when there is one; drop figures,
and the drop a recovery ends; the milestone and lifetime total; the recap and years of an
anniversary; what an account change changed; and the suggestion), then the message title,
indented. ``--json`` prints each event as one raw JSON line instead.

The consumer reads ``read_committed`` (only events of committed transactions, as a notifier
would) without a consumer group, so it never disturbs anyone's offsets. It assigns partitions
itself and looks for new ones every few seconds: a topic the worker creates after ``tail``
started is read from its beginning, so no event of it is missed, while the topics that existed
at start are read from their end (or from the beginning with ``--from-beginning``).

The event schema (contract section 3) may still change, so formatting is defensive: a missing
or odd field prints as ``-``, and a value that is not a JSON object still prints a line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, Final, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.signals import install_stop_handlers
from app.topology import EVENT_KINDS
from domain.common.timeutil import ms_to_datetime, parse_rfc3339
from domain.wording.messages import format_money, format_number, format_percent

logger = logging.getLogger(__name__)

MISSING: Final = "-"
DISCOVER_EVERY_S: Final = 5.0
POLL_TIMEOUT_MS: Final = 500
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


# ---------------------------------------------------------------------------- formatting


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


# ---------------------------------------------------------------------------- Kafka side


class _Follower:
    """Keeps a group-less consumer assigned to every partition of the wanted topics."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        admin: AIOKafkaAdminClient,
        topics: Sequence[str],
        from_beginning: bool,
    ) -> None:
        self.consumer = consumer
        self.admin = admin
        self.topics = topics
        self.from_beginning = from_beginning
        self.assigned: set[TopicPartition] = set()
        self.first = True
        self.missing_reported: set[str] = set()

    async def _partitions(self) -> set[TopicPartition]:
        present = set(await self.admin.list_topics())
        # Describe only topics that exist: asking for a missing one can auto-create it.
        wanted = [t for t in self.topics if t in present]
        for topic in self.topics:
            if topic not in present and topic not in self.missing_reported:
                self.missing_reported.add(topic)
                print(
                    f"moments tail: topic {topic} does not exist yet (`moments worker` creates "
                    "it); waiting for it",
                    file=sys.stderr,
                    flush=True,
                )
        partitions: set[TopicPartition] = set()
        for info in await self.admin.describe_topics(wanted) if wanted else []:
            if info.get("error_code", 0) != 0:
                continue
            for part in info.get("partitions", []):
                partitions.add(TopicPartition(info["topic"], part["partition"]))
        return partitions

    async def refresh(self) -> None:
        """Assign new partitions, keeping the position of those already followed."""
        partitions = await self._partitions()
        if partitions == self.assigned and not self.first:
            return
        kept = partitions & self.assigned
        positions = {tp: await self.consumer.position(tp) for tp in kept}
        new = sorted(partitions - self.assigned)
        self.consumer.assign(sorted(partitions))
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        if new:
            if self.first and not self.from_beginning:
                await self.consumer.seek_to_end(*new)
            else:
                await self.consumer.seek_to_beginning(*new)
        self.assigned = partitions
        self.first = False


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


async def _tail(args: argparse.Namespace, kinds: tuple[str, ...], out: TextIO) -> int:
    from app.security import client_kwargs
    from config.settings import load_settings

    settings = load_settings(os.environ)
    kwargs = client_kwargs(settings)
    bootstrap = list(settings.kafka_bootstrap)
    kind_of = {settings.event_topic(kind): kind for kind in kinds}
    stop = asyncio.Event()
    install_stop_handlers(asyncio.get_running_loop(), stop)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="moments-tail",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **kwargs,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="moments-tail", **kwargs)
    try:
        await admin.start()
        await consumer.start()
        follower = _Follower(consumer, admin, list(kind_of), args.from_beginning)
        loop = asyncio.get_running_loop()
        next_discovery = 0.0
        while not stop.is_set():
            if loop.time() >= next_discovery:
                try:
                    await follower.refresh()
                except KafkaError as exc:  # a hiccup of the cluster: keep what we follow
                    logger.warning("could not refresh the event topics' partitions: %r", exc)
                next_discovery = loop.time() + DISCOVER_EVERY_S
            if not follower.assigned:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=DISCOVER_EVERY_S)
                continue
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            messages = sorted(
                (m for batch in batches.values() for m in batch), key=lambda m: m.timestamp
            )
            for message in messages:
                if message.value is None:
                    continue  # a tombstone: not an event
                kind = kind_of.get(message.topic, message.topic)
                if args.json:
                    line = json_line(message.value)
                    if line is None:
                        print(
                            f"moments tail: skipped a value that is not JSON at "
                            f"{message.topic}/{message.partition}@{message.offset}",
                            file=sys.stderr,
                            flush=True,
                        )
                        continue
                else:
                    line = format_event(kind, message.key, message.value, message.timestamp)
                _emit(out, line)
    except KafkaError as exc:
        print(
            f"moments tail: Kafka at {','.join(bootstrap)} failed: {exc!r}; "
            "check MOMENTS_KAFKA_BOOTSTRAP and that the brokers are up",
            file=sys.stderr,
        )
        return 1
    finally:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), timeout=10)
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(admin.close(), timeout=10)
    return 0


def run_tail(args: argparse.Namespace) -> int:
    """Entry point of ``moments tail``; returns the exit status."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # aiokafka logs every (re)assignment at INFO: noise between the events we print.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        kinds = parse_kinds(args.kinds)
    except ValueError as exc:
        print(f"moments tail: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_tail(args, kinds, sys.stdout))
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: nothing left to say. Point stdout at
        # devnull so that the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
