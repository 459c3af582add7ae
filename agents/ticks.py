"""Timer that sends a tick when a UTC day has closed and a partition is ready for it.

Contract 3.2: a closed day (after MOMENTS_DROP_GRACE) is evaluated once the
partition has consumed the backlog it had at that moment, and a worker that starts
or takes over partitions evaluates the latest closed day if nobody did. On each
check, for every ticks partition this worker actively owns whose last evaluated
day is older than the due day, we note the usage end offsets once, wait until the
usage agent has processed up to them, then send one tick to that partition.

The tick is sent outside any transaction on purpose: the timer has no source
event, and an idle partition has no open transaction to join. Exactly-once comes
from the drop agent, which processes the tick like any record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from agents.drops import evaluation_key
from app.gate import caught_up, plans_gate
from app.main import app, clock, settings
from app.offsets import end_offsets, position
from app.progress import usage_progress
from domain.evaluation import due_day
from tables.evaluations import evaluations

logger = logging.getLogger(__name__)

# A tick whose evaluation is not recorded after this long is sent again (it is
# idempotent: the drop agent skips a day already evaluated).
_RESEND_S = 60.0


@dataclass(slots=True)
class Pending:
    """A partition waiting to evaluate ``day`` once usage reached ``targets``."""

    day: int
    targets: dict[Any, int]
    sent_at: float | None = None


pending: dict[int, Pending] = {}


def _evaluated_day(partition: int) -> int | None:
    held = evaluations.get(evaluation_key(partition))
    return None if held is None else int(held)


async def check_evaluations() -> None:
    """One check: schedule, and send when ready, the due day's tick per partition."""
    consumer: Any = app.consumer
    if app.rebalancing or consumer is None:
        return
    due = due_day(clock.now_ms(), int(settings.drop_grace_s * 1000))
    owned = {tp.partition for tp in consumer.assignment() if tp.topic == settings.topic_ticks}
    for partition in list(pending):
        if partition not in owned:
            del pending[partition]
    usage_topics = (settings.topic_usage, settings.topic_rekey)
    inputs = [tp for tp in consumer.assignment() if tp.topic in usage_topics]
    for partition in sorted(owned):
        last = _evaluated_day(partition)
        if (last is not None and last >= due) or not plans_gate.is_open(partition):
            pending.pop(partition, None)
            continue
        item = pending.get(partition)
        if item is None or item.day != due:
            tps = [tp for tp in inputs if tp.partition == partition]
            item = pending[partition] = Pending(due, await end_offsets(consumer, tps))
        if item.sent_at is not None and time.monotonic() - item.sent_at < _RESEND_S:
            continue
        ready = True
        for tp, target in item.targets.items():
            ready = ready and caught_up(
                target=target,
                processed_next=usage_progress.processed_next(tp),
                committed=consumer._committed_offset.get(tp),
                position=await position(consumer, tp),
                last_read=consumer._read_offset.get(tp),
            )
        if not ready:
            continue
        await app.producer.send(
            settings.topic_ticks,
            b"tick",
            orjson.dumps({"day": due}),
            partition,
            None,
            None,
        )
        item.sent_at = time.monotonic()
        logger.info(
            "partition %d: day %d closed and backlog consumed (%s); tick sent",
            partition,
            due,
            {f"{tp.topic}:{tp.partition}": end for tp, end in item.targets.items()},
        )


@app.timer(settings.evaluation_check_s)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
async def evaluation_timer() -> None:
    """Check for closed days awaiting evaluation."""
    await check_evaluations()
