"""``moments deliver --replay``: dead-lettered deliveries back onto their endpoint's first
retry tier, due now.

The running deliverers then send them as they send any retry (signed anew, with the whole
schedule ahead of them again), so a replay needs no HTTP of its own and cannot race them.
The dead-letter topic is read from its beginning to its end at the start; each (endpoint,
event) is put back once, the last dead letter written for it winning. Each dead letter put
back is marked in ``<prefix>.deliver.replayed`` (its DLQ position as key), written after its
retry record: a later ``--replay`` leaves it, unless the delivery died again (a new dead
letter) or ``--event-id`` names it. A replay stopped between the two writes sends that one
letter again next time; receivers deduplicate by ``webhook-id``: a replayed event that had
arrived after all is harmless.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from commands.deliver.topics import ensure_deliver_topics, replayed_topic
from config.settings import Settings
from domain.delivery.endpoints import Endpoint
from domain.delivery.records import (
    DeadLetter,
    Position,
    RetryState,
    parse_dead_letter,
    replay_selected,
)
from domain.delivery.schedule import RetrySchedule

logger = logging.getLogger(__name__)


async def read_dead_letters(
    settings: Settings, client_kwargs: Mapping[str, object]
) -> list[tuple[Position, DeadLetter]]:
    """Every dead letter in the topic now with its position, in the order written per
    partition."""
    letters: list[tuple[Position, DeadLetter]] = []
    for position, value in await _read_all(settings, client_kwargs, settings.topic_deliver_dlq):
        try:
            letters.append((position, parse_dead_letter(value)))
        except ValueError as exc:
            logger.warning("%s@%s skipped: %s", settings.topic_deliver_dlq, position, exc)
    return letters


async def read_replayed(settings: Settings, client_kwargs: Mapping[str, object]) -> set[Position]:
    """The positions of the dead letters replayed before (and still kept)."""
    topic = settings.topic_deliver_replayed
    return {value.decode() for _, value in await _read_all(settings, client_kwargs, topic)}


async def _read_all(
    settings: Settings, client_kwargs: Mapping[str, object], topic: str
) -> list[tuple[Position, bytes]]:
    """``(partition:offset, value)`` of every record of ``topic`` now, ordered by timestamp
    (stable: a partition's records stay in offset order on equal timestamps)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=list(settings.kafka_bootstrap),
        group_id=None,
        enable_auto_commit=False,
        # Not only seek_to_beginning: a reset to the end (the default) started by assign()
        # can win the race and read nothing.
        auto_offset_reset="earliest",
        client_id="moments-deliver-replay",
        **client_kwargs,
    )
    await consumer.start()
    found: list[tuple[int, Position, bytes]] = []
    try:
        tps = await _partitions(settings, client_kwargs, topic)
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=1000)
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset < ends[tp] and message.value is not None:
                        position = f"{tp.partition}:{message.offset}"
                        found.append((message.timestamp, position, message.value))
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    found.sort(key=lambda item: item[0])
    return [(position, value) for _, position, value in found]


async def _partitions(
    settings: Settings, client_kwargs: Mapping[str, object], topic: str
) -> list[TopicPartition]:
    """The partitions of ``topic`` (none when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=list(settings.kafka_bootstrap), **client_kwargs)
    await admin.start()
    try:
        # Describe only a topic that exists: asking for a missing one can auto-create it.
        if topic not in await admin.list_topics():
            return []
        (info,) = await admin.describe_topics([topic])
        return [TopicPartition(topic, p["partition"]) for p in info.get("partitions", [])]
    finally:
        await admin.close()


async def replay(
    settings: Settings,
    client_kwargs: Mapping[str, object],
    endpoints: Sequence[Endpoint],
    schedule: RetrySchedule,
    *,
    endpoint: str | None,
    event_id: str | None,
    now_ms: int,
    out: TextIO = sys.stdout,
) -> int:
    """Put the chosen dead letters back; print one line each and a total. Exit status 0, or 1
    when nothing matched."""
    letters = replay_selected(
        await read_dead_letters(settings, client_kwargs),
        endpoint,
        event_id,
        await read_replayed(settings, client_kwargs),
    )
    if letters:
        await ensure_deliver_topics(settings, client_kwargs, [replayed_topic(settings)])
    known = {e.name for e in endpoints}
    first_tier = schedule.labels()[0]
    producer = AIOKafkaProducer(
        bootstrap_servers=list(settings.kafka_bootstrap),
        acks="all",
        enable_idempotence=True,
        client_id="moments-deliver-replay",
        **client_kwargs,
    )
    await producer.start()
    sent = 0
    try:
        for position, letter in letters:
            name = letter["endpoint"]
            if name not in known:
                print(
                    f"skipped {letter.get('event_id')}: endpoint {name!r} is not configured",
                    file=out,
                )
                continue
            state = RetryState(attempts=0, due_ms=now_ms, first_attempt_ms=now_ms)
            account = letter.get("account_id")
            await producer.send_and_wait(
                settings.deliver_retry_topic(name, first_tier),
                letter["event"].encode(),
                key=account.encode() if isinstance(account, str) else None,
                headers=state.headers(),
            )
            await producer.send_and_wait(
                settings.topic_deliver_replayed, position.encode(), key=position.encode()
            )
            sent += 1
            print(f"replayed {letter.get('event_id')} to {name}", file=out)
    finally:
        await producer.stop()
    print(f"{sent} dead-lettered deliveries replayed", file=out, flush=True)
    return 0 if sent else 1
