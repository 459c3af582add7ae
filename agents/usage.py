"""Usage agent: raw usage records in, period totals and dead letters out, in batches.

The agent only moves data: it groups a batch by partition, hands each group to
:func:`domain.intake.run_intake` with lookups into the tables, writes back each
touched key once, and sends what the intake decided.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import cast

import orjson
from faust import Stream
from faust.types import EventT, StreamT

from agents.batch import Writes, acting_as, by_partition, pinned
from app.commits import commit_guard
from app.gate import plans_gate
from app.main import app, catalog, clock, metrics, settings, templates, topics
from app.progress import usage_progress
from domain.detection import DetectionResult, Moment, detect_thresholds
from domain.intake import IntakeResult, IntakeRules, RawRecord, run_intake
from tables.accounts import plan_of
from tables.announced import announced, announced_of
from tables.daily import daily, daily_of
from tables.dedup import dedup
from tables.totals import period_totals, totals_of

logger = logging.getLogger(__name__)

RULES = IntakeRules(
    max_clock_skew_ms=int(settings.max_clock_skew_s * 1000),
    dedup_horizon_ms=int(settings.dedup_horizon_s * 1000),
    late_grace_ms=int(settings.late_grace_s * 1000),
    daily_retention_days=settings.daily_retention_days,
)


def _seen_at(key: str) -> int | None:
    held = dedup.get(key)
    return None if held is None else int(held)


def _raw(event: EventT[bytes]) -> RawRecord:
    message = event.message
    return RawRecord(
        key=message.key,
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        # Broker (or producer) time of the record: event latency is measured from here.
        arrived_ms=int(message.timestamp * 1000),
    )


async def _apply(
    result: IntakeResult, detected: DetectionResult, partition: int, writes: Writes
) -> None:
    """Write state and send what one partition group decided (current event is set).

    Events go to the source partition: it is where the account's state lives, so its
    events stay in order and inside that partition's transaction. All state is read
    and written before the first ``await``, so the drop agent (same event loop, same
    tables) never interleaves between our read and our write of an account.
    """
    for account_id, totals in result.totals.items():
        writes.put(period_totals, account_id, orjson.dumps(totals.to_json()), partition)
    for key, seen_ms in result.seen.items():
        writes.put(dedup, key, str(seen_ms).encode(), partition)
    for account_id, days in result.daily.items():
        writes.put(daily, account_id, orjson.dumps(days.to_json()), partition)
    for account_id, levels in detected.announced.items():
        writes.put(announced, account_id, orjson.dumps(levels.to_json()), partition)
    for moment in detected.moments:
        value = orjson.dumps(moment.payload)
        await writes.send(topics.events[moment.kind], moment.account_id.encode(), value, partition)
    for raw, letter in result.dead_letters:
        await writes.send(topics.usage_dlq, raw.key, orjson.dumps(letter), partition)
    for account_id, raw in result.rekey:
        # Plain (non-transactional) send: the account's partition may belong to another
        # worker, whose transaction we cannot join. A repeat after a crash is harmless:
        # the record is deduplicated by record_id when it comes back.
        writes.add(
            await app.producer.send(
                settings.topic_rekey, account_id.encode(), raw.value, None, None, None
            )
        )


async def process_batch(events: list[EventT[bytes]]) -> None:
    """Run the intake over one batch, partition by partition."""
    started = time.perf_counter()
    now_ms = clock.now_ms()
    writes = Writes()
    outcomes: Counter[str] = Counter()
    moments: list[Moment] = []
    for partition, group in by_partition(events).items():
        with acting_as(group[-1]):
            result = run_intake(
                (_raw(event) for event in group),
                now_ms=now_ms,
                rules=RULES,
                catalog=catalog,
                plan_of=plan_of,
                totals_of=totals_of,
                seen_at=_seen_at,
                daily_of=daily_of,
            )
            detected = detect_thresholds(
                result.accepted,
                now_ms=now_ms,
                prune_before_ms=now_ms - RULES.late_grace_ms - 1,
                catalog=catalog,
                templates=templates,
                announced_of=announced_of,
            )
            await _apply(result, detected, partition, writes)
        outcomes.update(result.outcomes)
        moments.extend(detected.moments)
    await writes.flush()
    for event in events:
        message = event.message
        usage_progress.processed(message.topic, message.partition, message.offset)
    for outcome, count in outcomes.items():
        metrics.records.labels(outcome=outcome).inc(count)
    emitted_s = clock.now_ms() / 1000
    for moment in moments:
        metrics.events.labels(kind=moment.kind).inc()
        metrics.event_latency.observe(max(0.0, emitted_s - moment.arrived_ms / 1000))
    metrics.batch_seconds.observe(time.perf_counter() - started)


@app.agent(topics.usage_in)
async def process_usage(stream: StreamT[bytes]) -> None:
    """Consume usage records (and re-keyed ones) in batches."""
    # take_events is on Stream but missing from faust's StreamT protocol.
    async for events in cast(Stream[bytes], stream).take_events(
        settings.batch_size, within=settings.batch_window_s
    ):
        batch = list(events)
        # Outside the commit guard: a rebalance commits, and may be what we wait for.
        for partition in sorted({event.message.partition for event in batch}):
            await plans_gate.wait_caught_up(partition)
        commit_guard.install(app.consumer)
        try:
            async with commit_guard.lock:
                with pinned(batch):
                    await process_batch(batch)
        except Exception as exc:
            # Unacked, the batch is redelivered after the restart; carrying on would
            # commit later offsets past it.
            logger.exception("usage batch failed; stopping the worker")
            await app.crash(exc)
            raise
