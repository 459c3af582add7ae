"""Timer that sends a tick when a UTC day has closed and a partition is ready for it.

Contract 3.2: a closed day (after MOMENTS_DROP_GRACE) is evaluated once the
partition has consumed the backlog it had at that moment, and a worker that starts
or takes over partitions evaluates the latest closed day if nobody did. On each
check, for every partition this worker owns whose last evaluated day is older than
the due day, we note the usage end offsets once, wait until the engine has
processed up to them, then send one tick to that partition of the ticks topic.

The tick is a plain send on purpose: the timer has no source record, and an idle
partition has no transaction to join. Exactly-once comes from the ticks handler,
which marks the day started in the same transaction as the tick's offset.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from app.main import Runtime
from domain.evaluation import due_day
from engine.engine import Engine
from tables.evaluations import evaluation_of

logger = logging.getLogger(__name__)

# A tick whose day is not marked started after this long is sent again (a repeat is
# harmless: the handler ignores a day already started).
_RESEND_S = 60.0


@dataclass(slots=True)
class Pending:
    """A partition waiting to evaluate ``day`` once usage reached ``targets``."""

    day: int
    targets: dict[TopicPartition, int]
    sent_at: float | None = None


class TickScheduler:
    """Decides when each owned partition gets the tick of a closed day."""

    def __init__(self, runtime: Runtime, engine: Engine) -> None:
        self.runtime = runtime
        self.engine = engine
        self.pending: dict[int, Pending] = {}

    async def check(self) -> None:
        """One check: schedule, and send when ready, the due day's tick per partition."""
        rt, engine = self.runtime, self.engine
        s = rt.settings
        due = due_day(rt.clock.now_ms(), int(s.drop_grace_s * 1000))
        owned = {p: o for p, o in engine.owned.items() if o.ready and o.plans_caught_up}
        for partition in list(self.pending):
            if partition not in owned:
                del self.pending[partition]
        for partition, o in sorted(owned.items()):
            held = evaluation_of(o.store, partition)
            if held is not None and held.day >= due:
                self.pending.pop(partition, None)
                continue
            item = self.pending.get(partition)
            if item is None or item.day != due:
                tps = [TopicPartition(t, partition) for t in (s.topic_usage, s.topic_rekey)]
                item = self.pending[partition] = Pending(due, await engine.reader.end_offsets(tps))
            if item.sent_at is not None and time.monotonic() - item.sent_at < _RESEND_S:
                continue
            ready = True
            for tp, target in item.targets.items():
                ready = ready and await engine.caught_up(tp, target)
            if not ready:
                continue
            await rt.app.producer.send(
                s.topic_ticks, b"tick", orjson.dumps({"day": due}), partition, None, None
            )
            item.sent_at = time.monotonic()
            logger.info(
                "partition %d: day %d closed and backlog consumed (%s); tick sent",
                partition,
                due,
                {f"{tp.topic}:{tp.partition}": end for tp, end in item.targets.items()},
            )
