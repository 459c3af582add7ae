"""Scheduling and back-pressure: fetched records become steps, one at a time per partition.

Records reach the engine in bulk from Faust's fetch path (:meth:`Scheduler.submit`) and
wait in a small queue (two fetches) for the step loop, which sorts them per partition.
One partition never has two steps at once (the next decides on the state the previous
one applied), but steps of different partitions overlap, and records arriving for a
busy partition wait to become its next (bigger) step. Back-pressure is per partition:
a partition with its next step's worth of records waiting is fetched no more until its
steps take them, and the loop never waits for a step under its lock, so a partition
whose step fails for ever (retrying) stops only itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from engine.checkpoint import StepStats
from engine.ownership import Holdings

logger = logging.getLogger(__name__)

#: A stop cancels the steps still in flight this many times, waiting this long after each.
_ABANDON_TRIES = 3
_ABANDON_WAIT_S = 1.0
#: Records fetched but waiting for their steps, beyond which the partitions holding them
#: are fetched no more until their steps take them.
_MAX_PENDING_RECORDS = 50_000
#: Most records in one step: bounds a transaction's size and time (and its messages).
_MAX_STEP_RECORDS = 20_000
#: Records waiting for one partition's step beyond which that partition is fetched no
#: more (its next step's worth). Back-pressure is per partition: a partition whose step
#: fails for ever (retrying) holds only its own fetch, never the loop or the others.
_MAX_PENDING_PER_PARTITION = _MAX_STEP_RECORDS

#: Records of one step, per topic, in offset order.
ByTopic = dict[str, list[Any]]


def take(waiting: ByTopic, limit: int) -> ByTopic:
    """Up to ``limit`` records from ``waiting`` (topic -> records), oldest first per topic.

    Whole topics go first; the topic that crosses the limit is split, its tail left
    in ``waiting`` (so records of one topic stay in order across steps).
    """
    taken: ByTopic = {}
    room = limit
    for topic in list(waiting):
        items = waiting[topic]
        if len(items) <= room:
            taken[topic] = waiting.pop(topic)
            room -= len(items)
        else:
            if room > 0:
                taken[topic] = items[:room]
                waiting[topic] = items[room:]
            break
    return taken


@dataclass(slots=True)
class _Snapshot:
    position: int
    fetches: int


class Scheduler:
    """The queue of fetched records, the steps in flight, and back-pressure."""

    def __init__(
        self,
        holdings: Holdings,
        *,
        run_step: Callable[[int, ByTopic], Coroutine[Any, Any, None]],
        topic_order: tuple[str, ...],
        usage_topics: tuple[str, ...],
        stats: StepStats,
    ) -> None:
        self.holdings = holdings
        self.run_step = run_step
        self.topic_order = topic_order
        self.usage_topics = usage_topics
        self.stats = stats
        self._queue: asyncio.Queue[tuple[int, dict[Any, list[Any]]]] = asyncio.Queue(maxsize=2)
        #: Offset after the last record of each input handed to a step or waiting for one
        #: (this generation): a fetch overlapping them (a seek back, e.g. after the fence's
        #: seek) must not hand them over again while their step is still in flight.
        self._handed: dict[TopicPartition, int] = {}
        self._fetches = 0
        self._snapshots: dict[tuple[TopicPartition, int], _Snapshot] = {}
        self._in_hand = False
        self.inflight: dict[int, asyncio.Task[None]] = {}
        self.pending: dict[int, ByTopic] = {}
        self._pending_records = 0
        #: Partitions whose fetch is held because too many of their records wait.
        self._held_back: set[int] = set()

    # -- records in -----------------------------------------------------------------

    def fetch_returned(self) -> None:
        """A fetch of the consumer returned (with or without records of ours)."""
        self._fetches += 1

    async def submit(self, records: dict[Any, list[Any]], generation: int) -> None:
        """Queue fetched records (topic-partition -> records) for the step loop."""
        await self._queue.put((generation, records))

    async def caught_up(self, tp: TopicPartition, target: int) -> bool:
        """Whether every record of ``tp`` below ``target`` has been processed.

        Either a processed record reached it, or the consumer's position passed it
        (transaction markers take offsets no record has) *and* a fetch has returned
        and been processed since that position was read: records below a position
        have left the fetch buffer, but may still be on their way to :meth:`submit`.
        """
        if target <= 0 or self.holdings.next_offset.get(tp, -1) >= target:
            return True
        key = (tp, target)
        snap = self._snapshots.get(key)
        if snap is not None and snap.position >= target:
            if (
                self._fetches > snap.fetches
                and self._queue.empty()
                and not self._in_hand
                and self.idle(tp.partition)
            ):
                self._snapshots.pop(key, None)
                return True
            return False
        fetches = self._fetches
        position = await self.holdings.hooks.position(tp)
        if position is not None:
            self._snapshots[key] = _Snapshot(position, fetches)
        return False

    def forget_snapshots(self) -> None:
        """Forget the positions read for :meth:`caught_up` (a new generation)."""
        self._snapshots.clear()

    # -- the loop ---------------------------------------------------------------------

    async def run(
        self, housekeeping: Callable[[], Awaitable[None]], eager: Callable[[], bool]
    ) -> None:
        """The step loop; stops the worker if it fails. ``housekeeping`` runs after each
        turn; ``eager``: whether to turn quickly (housekeeping is due soon)."""
        try:
            await self._loop(housekeeping, eager)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine cannot go on: stop the worker
            logger.exception("engine loop failed; stopping the worker")
            await self.holdings.crash(exc)

    async def _loop(
        self, housekeeping: Callable[[], Awaitable[None]], eager: Callable[[], bool]
    ) -> None:
        held = self.holdings
        while True:
            timeout = 0.02 if eager() else 0.5
            try:
                generation, records = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                generation, records = -1, {}
            # Out of the queue but not yet waiting for a step: caught_up() must not
            # take this moment for "nothing left".
            self._in_hand = bool(records)
            try:
                async with held.lock:
                    if held.stopping:
                        return
                    if records and generation == held.generation and held.accepting:
                        await self._process(records)
            finally:
                self._in_hand = False
            async with held.lock:
                if held.accepting and not held.stopping:
                    await housekeeping()

    async def _process(self, records: dict[Any, list[Any]]) -> None:
        held = self.holdings
        by_partition: dict[int, ByTopic] = {}
        for tp, items in records.items():
            owned = held.owned.get(tp.partition)
            if (
                owned is None
                or not owned.ready
                or not items
                # Usage before its partition's plans are read: judged without them, its
                # accounts would count as unknown (ownership.check_gates releases it).
                or (tp.topic in self.usage_topics and not owned.plans_caught_up)
            ):
                if items and owned is not None:
                    # Fetched before the hold took effect: fetch them again later.
                    await held.hooks.seek(TopicPartition(tp.topic, tp.partition), items[0].offset)
                continue
            key = TopicPartition(tp.topic, tp.partition)
            # Re-fetched after a seek: skip what is done, or handed to a step already.
            start = max(held.next_offset.get(key, -1), self._handed.get(key, -1))
            if start > items[0].offset:
                items = [r for r in items if r.offset >= start]
                if not items:
                    continue
            self._handed[key] = items[-1].offset + 1
            by_partition.setdefault(tp.partition, {})[tp.topic] = items
        if by_partition:
            self.stats.records += sum(len(i) for t in by_partition.values() for i in t.values())
            for partition, by_topic in by_partition.items():
                pending = self.pending.setdefault(partition, {})
                for topic, items in by_topic.items():
                    pending.setdefault(topic, []).extend(items)
                self._pending_records += sum(len(i) for i in by_topic.values())
                self.kick(partition)
            self._hold_back()
            self.stats.maybe_log()

    # -- back-pressure ------------------------------------------------------------------

    def _waiting(self, partition: int) -> int:
        return sum(len(i) for i in self.pending.get(partition, {}).values())

    def _hold_back(self) -> None:
        """Back-pressure, per partition: stop fetching a partition with its next step's
        worth of records waiting (or any waiting, while too many wait in all).

        Never a wait in the loop: it holds the engine's lock, and a partition whose step
        fails for ever (retrying) would stop every other partition of the worker.
        """
        over = self._pending_records > _MAX_PENDING_RECORDS
        for partition in list(self.pending):
            if partition in self._held_back:
                continue
            waiting = self._waiting(partition)
            if waiting >= _MAX_PENDING_PER_PARTITION or (over and waiting):
                self._held_back.add(partition)
                self.holdings.hold(partition, self.topic_order)

    def _release_back_pressure(self) -> None:
        """Fetch again the partitions held back whose records have gone to their steps.

        One with none waiting is released even while too many wait in all: those are
        then other partitions' (a stalled one's, say), which must not hold this one.
        """
        over = self._pending_records > _MAX_PENDING_RECORDS
        for partition in sorted(self._held_back):
            waiting = self._waiting(partition)
            if waiting >= _MAX_PENDING_PER_PARTITION or (over and waiting):
                continue
            self._held_back.discard(partition)
            owned = self.holdings.owned.get(partition)
            if owned is None or not owned.ready or owned.latched is not None:
                continue  # held for another reason (fenced, latched): stays held
            self.holdings.hooks.release(
                TopicPartition(t, partition)
                for t in self.topic_order
                if t not in self.usage_topics or owned.plans_caught_up
            )

    # -- steps ------------------------------------------------------------------------

    def kick(self, partition: int) -> None:
        """Start the partition's next step if none is in flight.

        One step at a time per partition (the next decides on the state the previous
        one applied), but steps of different partitions overlap, and records that
        arrive for a busy partition wait to become its next (bigger) step while the
        loop goes on with the other partitions.
        """
        held = self.holdings
        if self.busy(partition) or not held.accepting or held.stopping:
            return
        waiting = self.pending.pop(partition, None)
        if not waiting:
            return
        owned = held.owned.get(partition)
        if owned is None or not owned.ready or owned.latched is not None:
            # The partition's last step was abandoned (fenced): these records come after
            # it, and committing them would commit past it. They are fetched again from
            # the committed offsets when the partition is assigned again.
            self._pending_records -= sum(len(i) for i in waiting.values())
            return
        by_topic = take(waiting, _MAX_STEP_RECORDS)
        if waiting:
            self.pending[partition] = waiting  # the rest makes the step after
        self._pending_records -= sum(len(i) for i in by_topic.values())
        self.launch(partition, self.run_step(partition, by_topic))

    def launch(self, partition: int, step: Coroutine[Any, Any, None]) -> None:
        """Run ``step`` as ``partition``'s step in flight."""
        task = asyncio.ensure_future(step)
        self.inflight[partition] = task
        task.add_done_callback(functools.partial(self._step_done, partition))

    def _step_done(self, partition: int, task: asyncio.Future[None]) -> None:
        if self.inflight.get(partition) is task:
            del self.inflight[partition]
        self.kick(partition)
        self._release_back_pressure()

    def busy(self, partition: int) -> bool:
        """Whether ``partition`` has a step in flight."""
        task = self.inflight.get(partition)
        return task is not None and not task.done()

    def idle(self, partition: int) -> bool:
        """No step in flight and no records waiting for one."""
        return not self.busy(partition) and partition not in self.pending

    def drop_waiting(self, partition: int) -> None:
        """Drop ``partition``'s records waiting for a step (its last step was abandoned)."""
        waiting = self.pending.pop(partition, None) or {}
        self._pending_records -= sum(len(i) for i in waiting.values())

    def drop_offsets(self, partition: int) -> None:
        """Forget how far ``partition``'s inputs were processed and handed over."""
        next_offset = self.holdings.next_offset
        for tp in [tp for tp in next_offset if tp.partition == partition]:
            del next_offset[tp]
        for tp in [tp for tp in self._handed if tp.partition == partition]:
            del self._handed[tp]

    # -- draining -----------------------------------------------------------------------

    async def drain(self) -> None:
        """Drop the queued fetches, then :meth:`drain_inflight`."""
        while not self._queue.empty():
            self._queue.get_nowait()
        await self.drain_inflight()

    async def drain_inflight(self) -> None:
        """Drop records waiting for a step (they are fetched again from the committed
        offsets after the rebalance or restart) and wait for the steps in flight."""
        self.pending.clear()
        self._pending_records = 0
        self._handed.clear()  # what waited is fetched again: it must not be skipped
        self._held_back.clear()  # the assignment holds, then releases, every input anew
        while self.inflight:
            await asyncio.gather(*list(self.inflight.values()), return_exceptions=True)

    async def drain_or_abandon(self, grace_s: float) -> None:
        """Let the steps in flight end, for at most ``grace_s``; then cancel them.

        A commit waiting on a broker that is away has its own deadline (the transaction
        timeout, 60 s by default), longer than the worker's shutdown timeout (30 s): the
        contract wants a stop within the latter, abandoning the batch if need be. A step
        cancelled before its commit is answered changed nothing here (RocksDB is written
        only after the commit returns, with no await in between), and its transaction is
        aborted by the next owner's InitProducerId; if the broker committed it after all,
        the store is behind Kafka, which restore brings level.
        """
        drained = asyncio.ensure_future(self.drain_inflight())
        try:
            await asyncio.wait_for(asyncio.shield(drained), grace_s)
            return
        except TimeoutError:
            logger.warning(
                "partitions %s: steps still in flight %.0fs after the stop began; abandoned "
                "(the next owner redoes them from the committed offsets)",
                sorted(self.inflight),
                grace_s,
            )
        # A cancelled commit may await its abort (a broker away): cancel again, a few times.
        for _ in range(_ABANDON_TRIES):
            for step in list(self.inflight.values()):
                step.cancel()
            done, _ = await asyncio.wait({drained}, timeout=_ABANDON_WAIT_S)
            if done:
                return
        drained.cancel()
        await asyncio.gather(drained, return_exceptions=True)
