"""Timer that sends a tick when a UTC day has closed, or an hour's billing periods became
final, and a partition is ready for it.

Contract 3.2: a closed day (after MOMENTS_DROP_GRACE) is evaluated once the
partition has consumed the backlog it had at that moment, and a worker that starts
or takes over partitions evaluates the latest closed day if nobody did. On each
check, for every partition this worker owns whose last evaluated day is older than
the due day, we note the usage end offsets once, wait until the engine has
processed up to them, then send one tick to that partition of the ticks topic.

Billing anniversaries (contract 3.5) ride on the same ticks: a tick carries the due day
and the due *cut* (:func:`domain.rules.anniversaries.due_cut`, a whole hour at or before
``now - MOMENTS_LATE_GRACE``), and goes out when either is newer than what the partition has
started, after the same catch-up. Periods end at their anchor's time of day, so a period is
announced at worst an hour after it became final, plus the check interval, the catch-up and
the pass itself.

The tick is a plain send on purpose: the timer has no source record, and an idle
partition has no transaction to join. Exactly-once comes from the ticks handlers,
which mark the day (and the cut) started in the same transaction as the tick's offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from agents.anniversaries import start_pass
from agents.custom_close import CustomClose
from agents.drops import TicksHandler
from app.main import Runtime
from config.settings import to_ms
from domain.moments.evaluation import due_day
from domain.rules.anniversaries import due_cut
from engine.engine import Engine
from engine.step import Step
from state import jsonbytes
from tables.anniversary_passes import pass_of
from tables.evaluations import evaluation_of

logger = logging.getLogger(__name__)

# A tick whose day is not marked started after this long is sent again (a repeat is
# harmless: the handler ignores a day already started).
_RESEND_S = 60.0


@dataclass(slots=True)
class Pending:
    """A partition waiting to evaluate ``day`` and ``cut`` once usage reached ``targets``."""

    day: int
    cut: int
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
        now_ms = rt.clock.now_ms()
        due = due_day(now_ms, to_ms(s.drop_grace_s))
        cut = due_cut(now_ms, to_ms(s.late_grace_s))
        owned = {p: o for p, o in engine.owned.items() if o.ready and o.plans_caught_up}
        for partition in list(self.pending):
            if partition not in owned:
                del self.pending[partition]
        for partition, o in sorted(owned.items()):
            # Every await below lets the engine stop or a rebalance revoke the partition,
            # closing its store: a closed store raised KeyError here during a SIGTERM,
            # crashing the app and making the worker exit 1 instead of 0.
            if engine.owned.get(partition) is not o:
                continue
            held = evaluation_of(o.store, partition)
            passed = pass_of(o.store, partition)
            if (held is not None and held.day >= due) and (
                passed is not None and passed.cut_ms >= cut
            ):
                self.pending.pop(partition, None)
                continue
            item = self.pending.get(partition)
            if item is None or item.day != due or item.cut != cut:
                tps = [TopicPartition(t, partition) for t in (s.topic_usage, s.topic_rekey)]
                targets = await engine.reader.end_offsets(tps)
                item = self.pending[partition] = Pending(due, cut, targets)
            if item.sent_at is not None and time.monotonic() - item.sent_at < _RESEND_S:
                continue
            ready = True
            for tp, target in item.targets.items():
                ready = ready and await engine.caught_up(tp, target)
            if not ready or engine.owned.get(partition) is not o:
                continue
            await rt.app.producer.send(
                s.topic_ticks,
                b"tick",
                jsonbytes.dumps({"day": due, "cut": cut}),
                partition,
                None,
                None,
            )
            item.sent_at = time.monotonic()
            logger.info(
                "partition %d: day %d closed, cut %d due and backlog consumed (%s); tick sent",
                partition,
                due,
                cut,
                {f"{tp.topic}:{tp.partition}": end for tp, end in item.targets.items()},
            )


class TicksHandlers:
    """The ticks topic's handler: a tick starts the drop evaluation of its day and the
    anniversary pass of its cut (each does nothing when already started), and, with
    ``at_most`` rules, their day close (``custom_close``)."""

    def __init__(self, custom_close: CustomClose | None = None) -> None:
        self.drops = TicksHandler()
        self.custom_close = custom_close

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """A tick that cannot be processed is skipped (see :meth:`TicksHandler.reject`)."""
        self.drops.reject(step, topic, record, reason)

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Start the day's drop evaluation and the cut's anniversary pass."""
        self.drops.process(step, topic, records)
        start_pass(step, records)
        if self.custom_close is not None:
            self.custom_close.start(step, records)
