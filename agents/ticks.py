"""Timer that sends a tick when a UTC day has closed, or a timer of the due index is due, and
a partition is ready for it.

Contract 3.2: a closed day (after MOMENTS_DROP_GRACE) is evaluated once the
partition has consumed the backlog it had at that moment, and a worker that starts
or takes over partitions evaluates the latest closed day if nobody did. On each
check (every MOMENTS_EVALUATION_CHECK), for every partition this worker owns, we look at what
is due, note the usage end offsets once, wait until the engine has processed up to them, then
send one tick to that partition of the ticks topic.

Billing anniversaries (contract 3.5) and birthdays (3.7) ride on the same ticks: a partition
needs a timer pass when its first anniversary timer (:mod:`tables.due`) is due at the cut
(:func:`domain.rules.anniversaries.due_cut`: ``now - MOMENTS_LATE_GRACE - 1 ms``), or its first
birthday timer at ``now``, and its last pass is complete; or when it never completed the full
pass that builds the index. The tick then carries ``"cut"`` and ``"at"`` (now) besides
``"day"``. So a period is announced within a check interval of becoming final (plus the
catch-up and the pass), whatever the anchor's time of day, and a partition with nothing due
gets no tick. A tick's values are kept until the partition has started them, so a check
interval shorter than the catch-up sends one tick, not one per check.

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
from domain.common.timeutil import DAY_MS
from domain.moments.evaluation import due_day
from domain.rules.anniversaries import due_cut
from engine.engine import Engine
from engine.step import Step
from state import jsonbytes
from state.store import PartitionStore
from tables.anniversary_passes import Pass, pass_of
from tables.due import ANNIVERSARY, BIRTHDAY, first_due_ms
from tables.evaluations import Evaluation, evaluation_of

logger = logging.getLogger(__name__)

# A tick whose day is not marked started after this long is sent again (a repeat is
# harmless: the handler ignores a day already started).
_RESEND_S = 60.0


@dataclass(slots=True)
class Pending:
    """A partition waiting to evaluate ``day`` (and to pass its timers at ``cut`` and ``at``,
    when ``cut`` is set) once usage reached ``targets``."""

    day: int
    cut: int | None
    at: int
    targets: dict[TopicPartition, int]
    sent_at: float | None = None

    def started(self, held: Evaluation | None, passed: Pass | None) -> bool:
        """Whether the partition has started what this tick asks (its handler ran)."""
        if held is None or held.day < self.day:
            return False
        return self.cut is None or (passed is not None and passed.cut_ms >= self.cut)

    def value(self) -> bytes:
        """The tick record's value."""
        tick: dict[str, int] = {"day": self.day}
        if self.cut is not None:
            tick |= {"cut": self.cut, "at": self.at}
        return jsonbytes.dumps(tick)


def pass_due(
    store: PartitionStore, passed: Pass | None, cut: int, now_ms: int, period: str
) -> bool:
    """Whether the partition needs a timer pass at ``cut`` (birthdays at ``now_ms``): its last
    pass is complete and older, and it never built its index for the catalog's ``period`` or a
    timer is due."""
    if passed is None:
        return True
    if not passed.complete or passed.cut_ms >= cut:
        return False
    if not passed.indexed_for(period):
        return True
    # A complete pass left no timer due at its cut or time, and every timer scheduled since
    # is after its cut (an anniversary: an end after the last complete cut) or on or after the
    # day before its cut's (a birthday not long past: a plan record that arrived on the day
    # and was handled after midnight schedules yesterday's), so the seeks start there.
    first = first_due_ms(store, ANNIVERSARY, passed.cut_ms + 1)
    if first is not None and first <= cut:
        return True
    since = min(passed.birthdays_until_ms, passed.cut_ms - DAY_MS)
    first = first_due_ms(store, BIRTHDAY, since - since % DAY_MS)
    return first is not None and first <= now_ms


class TickScheduler:
    """Decides when each owned partition gets a tick: a closed day, or timers due."""

    def __init__(self, runtime: Runtime, engine: Engine) -> None:
        self.runtime = runtime
        self.engine = engine
        self.pending: dict[int, Pending] = {}

    async def check(self) -> None:
        """One check: schedule, and send when ready, each partition's tick."""
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
            item = self.pending.get(partition)
            if item is not None and item.started(held, passed):
                del self.pending[partition]
                item = None
            day_due = held is None or held.day < due
            timers_due = pass_due(o.store, passed, cut, now_ms, rt.catalog.period)
            if item is None and not day_due and not timers_due:
                continue
            if item is None or item.day != due or (timers_due and item.cut is None):
                tps = [TopicPartition(t, partition) for t in (s.topic_usage, s.topic_rekey)]
                targets = await engine.reader.end_offsets(tps)
                item = Pending(due, cut if timers_due else None, now_ms, targets)
                self.pending[partition] = item
            if item.sent_at is not None and time.monotonic() - item.sent_at < _RESEND_S:
                continue
            ready = True
            for tp, target in item.targets.items():
                ready = ready and await engine.caught_up(tp, target)
            if not ready or engine.owned.get(partition) is not o:
                continue
            await rt.app.producer.send(s.topic_ticks, b"tick", item.value(), partition, None, None)
            item.sent_at = time.monotonic()
            logger.info(
                "partition %d: day %d closed, cut %s due and backlog consumed (%s); tick sent",
                partition,
                item.day,
                item.cut,
                {f"{tp.topic}:{tp.partition}": end for tp, end in item.targets.items()},
            )


class TicksHandlers:
    """The ticks topic's handler: a tick starts the drop evaluation of its day and the
    timer pass of its cut (each does nothing when already started), and, with ``at_most``
    rules, their day close (``custom_close``)."""

    def __init__(self, custom_close: CustomClose | None = None) -> None:
        self.drops = TicksHandler()
        self.custom_close = custom_close

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """A tick that cannot be processed is skipped (see :meth:`TicksHandler.reject`)."""
        self.drops.reject(step, topic, record, reason)

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Start the day's drop evaluation and the cut's timer pass."""
        self.drops.process(step, topic, records)
        start_pass(step, records)
        if self.custom_close is not None:
            self.custom_close.start(step, records)
