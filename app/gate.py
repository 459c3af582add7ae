"""Plans before usage: hold a partition's usage until its account plans are read.

Contract 1.2: a worker reads ``account-plans`` up to its end before it processes
usage on the same partitions, so a backlog of usage is judged under the plans
that were already published. On every assignment we note the end offset of each
assigned plans partition; until the plans agent has got there, the usage (and
re-keyed usage) partitions of the same number stay paused, and the usage agent
waits at :meth:`PlansGate.wait_caught_up` for anything fetched before the pause.

Faust pauses every assigned partition during a rebalance and resumes them all
when recovery ends; :func:`install` makes that resume skip held partitions, and
:func:`monitor` resumes them once their plans are read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from app.offsets import end_offsets, position

logger = logging.getLogger(__name__)

TICK_S = 0.1


class PlansGate:
    """Per-partition "plans caught up" state shared by the agents and /readyz."""

    def __init__(self) -> None:
        self.plans_topic = ""
        self.usage_topics: tuple[str, ...] = ()
        self._target: dict[int, int] = {}
        self._processed_next: dict[int, int] = {}
        self._open: dict[int, asyncio.Event] = {}

    def configure(self, plans_topic: str, usage_topics: Iterable[str]) -> None:
        """Name the topics the gate watches and holds."""
        self.plans_topic = plans_topic
        self.usage_topics = tuple(usage_topics)

    def _event(self, partition: int) -> asyncio.Event:
        event = self._open.get(partition)
        if event is None:
            event = self._open[partition] = asyncio.Event()
        return event

    def close(self, partitions: dict[int, None]) -> None:
        """A new assignment: hold every assigned partition until its target is known and met."""
        self._target.clear()
        for partition in list(self._open):
            if partition not in partitions:
                del self._open[partition]
        for partition in partitions:
            self._event(partition).clear()

    def set_targets(self, targets: dict[int, int]) -> None:
        """End offsets each plans partition must be read up to."""
        for partition, target in targets.items():
            self._target[partition] = target
            if self._processed_next.get(partition, -1) >= target:
                self._event(partition).set()

    def holds(self, tp: Any) -> bool:
        """Whether ``tp`` is a usage partition that must stay paused."""
        return tp.topic in self.usage_topics and not self.is_open(tp.partition)

    def processed_next(self, partition: int) -> int:
        """Offset after the last plans record processed on ``partition``."""
        return self._processed_next.get(partition, -1)

    def processed(self, partition: int, offset: int) -> None:
        """The plans agent finished the record at ``offset`` of ``partition``."""
        self._processed_next[partition] = offset + 1
        target = self._target.get(partition)
        if target is not None and offset + 1 >= target and not self.is_open(partition):
            self._event(partition).set()

    def open(self, partition: int) -> None:
        """Declare ``partition`` caught up (nothing left below its target)."""
        self._event(partition).set()

    def is_open(self, partition: int) -> bool:
        """Whether usage of ``partition`` may be judged."""
        event = self._open.get(partition)
        return event is None or event.is_set()

    def closed_partitions(self) -> list[int]:
        """Partitions still waiting for their plans."""
        return [p for p, e in self._open.items() if not e.is_set()]

    def all_caught_up(self) -> bool:
        """True when no partition waits for plans."""
        return not self.closed_partitions()

    def target(self, partition: int) -> int | None:
        """End offset the plans partition must reach."""
        return self._target.get(partition)

    async def wait_caught_up(self, partition: int) -> None:
        """Return once usage of ``partition`` may be judged."""
        event = self._open.get(partition)
        if event is not None and not event.is_set():
            logger.info("partition %d: waiting for account plans to be read", partition)
            await event.wait()


def install(gate: PlansGate, app: Any) -> None:
    """Make Faust's own resume skip held partitions (it resumes everything after recovery)."""
    consumer = app.consumer
    if getattr(consumer, "_moments_gate_installed", False):
        return
    original = consumer.resume_partitions

    def resume_unless_held(tps: Iterable[Any]) -> None:
        original({tp for tp in tps if not gate.holds(tp)})

    consumer.resume_partitions = resume_unless_held
    consumer._moments_original_resume = original
    consumer._moments_gate_installed = True


async def on_assigned(gate: PlansGate, app: Any, assigned: set[Any]) -> None:
    """Rebalance hook: hold usage of every assigned partition until its plans are read.

    Runs before recovery; the end offsets are taken once recovery is done, by a
    task, so the rebalance itself is not delayed.
    """
    install(gate, app)
    plans = sorted(
        (tp for tp in assigned if tp.topic == gate.plans_topic), key=lambda tp: tp.partition
    )
    gate.close({tp.partition: None for tp in plans})
    generation = app.consumer_generation_id
    app.add_future(_capture_targets(gate, app, plans, generation))


async def _capture_targets(gate: PlansGate, app: Any, plans: list[Any], generation: int) -> None:
    recovery = app.tables.recovery
    while not recovery.completed.is_set() or app.rebalancing:
        if app.consumer_generation_id != generation:
            return
        await asyncio.sleep(TICK_S)
    if app.consumer_generation_id != generation:
        return
    ends = await end_offsets(app.consumer, plans)
    gate.set_targets({tp.partition: end for tp, end in ends.items()})
    logger.info(
        "plans gate: read account plans up to %s", {tp.partition: e for tp, e in ends.items()}
    )


def caught_up(
    *,
    target: int,
    processed_next: int,
    committed: int | None,
    position: int | None,
    last_read: int | None,
) -> bool:
    """Whether a plans partition has been read up to ``target`` (its end at assignment).

    Any of: the plans agent processed up to the target; the group's committed offset
    is there (nothing left since the last run); or the fetch position is past it and
    the last record handed to the agent is processed. The last case matters because
    transaction markers take offsets no record has, so "processed offset + 1 reaches
    the end" need not ever happen.
    """
    if target <= 0 or processed_next >= target:
        return True
    if committed is not None and committed >= target:
        return True
    return (
        position is not None
        and position >= target
        and processed_next >= 0
        and last_read is not None
        and last_read < processed_next
    )


async def monitor(gate: PlansGate, app: Any) -> None:
    """One tick: open partitions whose plans are read, and resume their usage."""
    consumer = app.consumer
    if consumer is None:
        return
    for tp in list(consumer.assignment()):
        if tp.topic != gate.plans_topic or gate.is_open(tp.partition):
            continue
        target = gate.target(tp.partition)
        if target is None:
            continue
        if caught_up(
            target=target,
            processed_next=gate.processed_next(tp.partition),
            committed=consumer._committed_offset.get(tp),
            position=await position(consumer, tp),
            last_read=consumer._read_offset.get(tp),
        ):
            gate.open(tp.partition)
    release = [tp for tp in consumer.assignment() if tp in consumer._paused_partitions]
    release = [tp for tp in release if tp.topic in gate.usage_topics and not gate.holds(tp)]
    if release:
        consumer._moments_original_resume(release)
        logger.info(
            "account plans read: resumed usage of partitions %s",
            sorted(tp.partition for tp in release),
        )


plans_gate = PlansGate()
