"""Drop agent: evaluates every tracked account of a partition when a tick arrives.

Ticks are records of the co-partitioned ticks topic (sent by ``agents.ticks``), so
the evaluation runs as ordinary stream processing of partition p: its episode
updates, drop events, the "day evaluated" mark and the tick's offset commit in
one Kafka transaction under exactly-once. A repeated tick finds the day marked
and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from faust.types import EventT, StreamT

from agents.batch import Writes
from app.commits import commit_guard
from app.main import app, catalog, clock, metrics, settings, templates, topics
from domain.detection import Moment
from domain.drops import DropRules
from domain.evaluation import evaluate_account
from domain.periods import utc_day
from tables.accounts import plan_of
from tables.daily import daily, daily_of
from tables.evaluations import evaluations
from tables.totals import totals_of

logger = logging.getLogger(__name__)

RULES = DropRules(
    recent_days=settings.drop_recent_days,
    baseline_weeks=settings.drop_baseline_weeks,
    min_expected=settings.drop_min_expected,
    fraction=settings.drop_fraction,
)
# Yield to the event loop between accounts now and then, so a large partition does
# not stall the other agents (never inside one account's read-modify-write).
_YIELD_EVERY = 500


def evaluation_key(partition: int) -> str:
    """Key of a partition's "last evaluated day" in the evaluations table."""
    return f"p{partition}"


async def evaluate_partition(event: EventT[bytes]) -> int:
    """Evaluate the tick's day for every account of its partition; returns events sent."""
    message = event.message
    partition = message.partition
    try:
        day = int(orjson.loads(message.value or b"")["day"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        logger.warning(
            "partition %d: ignoring malformed tick at offset %d", partition, message.offset
        )
        return 0
    held = evaluations.get(evaluation_key(partition))
    if held is not None and int(held) >= day:
        return 0
    started = time.perf_counter()
    now_ms = clock.now_ms()
    oldest_day = utc_day(now_ms) - settings.daily_retention_days + 1
    arrived_ms = int(message.timestamp * 1000)
    writes = Writes()
    moments: list[Moment] = []
    store = daily.data._db_for_partition(partition)  # type: ignore[attr-defined]  # RocksDB store
    # Faust keeps its own bookkeeping (the persisted changelog offset) in the same
    # database, under a key no account id can have.
    keys = [bytes(k) for k in store.keys() if not bytes(k).startswith(b"__faust\x00")]
    for n, raw_key in enumerate(keys, 1):
        account_id = raw_key.decode()
        if daily.get(account_id) is None:
            continue
        state = daily_of(account_id)
        pruned = state.prune(oldest_day)
        plan = plan_of(account_id)
        totals = totals_of(account_id)
        found, changed = evaluate_account(
            account_id,
            state,
            plan,
            totals,
            day,
            rules=RULES,
            catalog=catalog,
            templates=templates,
            now_ms=now_ms,
            arrived_ms=arrived_ms,
        )
        if state.is_empty():
            writes.delete(daily, account_id, partition)
        elif changed or pruned:
            writes.put(daily, account_id, orjson.dumps(state.to_json()), partition)
        moments.extend(found)
        if n % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    for moment in moments:
        value = orjson.dumps(moment.payload)
        await writes.send(topics.events[moment.kind], moment.account_id.encode(), value, partition)
    writes.put(evaluations, evaluation_key(partition), str(day).encode(), partition)
    await writes.flush()
    emitted_s = clock.now_ms() / 1000
    for moment in moments:
        metrics.events.labels(kind=moment.kind).inc()
        metrics.event_latency.observe(max(0.0, emitted_s - moment.arrived_ms / 1000))
    logger.info(
        "partition %d: evaluated day %d for %d accounts in %.3fs, %d drop events",
        partition,
        day,
        len(keys),
        time.perf_counter() - started,
        len(moments),
    )
    return len(moments)


@app.agent(topics.ticks)
async def evaluate_drops(stream: StreamT[bytes]) -> None:
    """Consume ticks: one closed day of one partition each."""
    async for event in stream.events():
        commit_guard.install(app.consumer)
        async with commit_guard.lock:  # the whole evaluation and its tick: one transaction
            await evaluate_partition(event)
            event.ack()
