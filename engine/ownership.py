"""Partition ownership and restore: what this worker holds, and how it comes to hold it.

An assignment holds every input, then, in a task of its own, fences each new partition's
previous producer (the one place a producer is opened), reads the group's committed
input offsets again now that the fence completed every earlier transaction, restores
the stores from their changelogs, and releases the plans and ticks; the usage of a
partition is released once its plans are read up to the end offsets they had then
(plans before usage). Stores of partitions let go stay warm as standbys or are released
(:class:`state.store.Stores` deletes them after a delay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import TopicPartition

from engine.changelogs import ChangelogReader
from engine.committers import Committer, StepFailed
from state.store import PartitionStore, Stores

logger = logging.getLogger(__name__)

#: How often held stores' sync times move on and unheld stores are cleaned up.
TEND_STORES_S = 60.0


class Hooks(Protocol):
    """What the engine asks of the consumer around it (Faust's, in the worker)."""

    def hold(self, tps: Iterable[TopicPartition]) -> None:
        """Stop delivering records of ``tps`` until released."""

    def release(self, tps: Iterable[TopicPartition]) -> None:
        """Deliver records of ``tps`` again."""

    async def position(self, tp: TopicPartition) -> int | None:
        """The consumer's position on ``tp``."""
        ...

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch ``tp`` again from ``offset``."""

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of ``tps``, read from the broker now (not a
        cached value); a partition with no committed offset is left out."""
        ...

    async def crash(self, exc: BaseException) -> None:
        """Stop the worker with an error."""

    def broker_connected(self) -> bool:
        """Whether the group consumer is in touch with its group's coordinator."""
        ...

    def rejoin(self) -> bool:
        """Ask the group for a new assignment; False when that cannot be asked now."""
        ...


@dataclass(slots=True)
class Owned:
    """A partition this worker processes."""

    partition: int
    store: PartitionStore
    ready: bool = False
    #: Per plans topic, the end offset its partition had when prepared (the usage gate).
    plans_target: dict[str, int] | None = None
    plans_caught_up: bool = False
    background_suspended: bool = False
    #: When suspended background work is tried again (engine clock), and the last wait.
    background_retry_at: float = 0.0
    background_backoff_s: float = 0.0
    #: Set when RocksDB refused a committed step: the store is behind Kafka, and the
    #: partition never steps again in this process (see ``Checkpoint.latch``).
    latched: BaseException | None = None


class Holdings:
    """What this worker holds now, shared by the engine's parts: the generation, the owned
    and standby partitions, how far each input is processed, whether steps may run, and
    the lock under which the step loop, an assignment and a stop take turns."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.generation = -1
        self.owned: dict[int, Owned] = {}
        self.standby: dict[int, PartitionStore] = {}
        #: Offset after the last record of each input processed and committed.
        self.next_offset: dict[TopicPartition, int] = {}
        self.accepting = False
        self.stopping = False
        self.stop_requested = asyncio.Event()
        self.lock = asyncio.Lock()
        self.failed: BaseException | None = None

    def owns(self, generation: int) -> bool:
        """Whether work begun (or records fetched) under ``generation`` may go on."""
        return self.accepting and generation == self.generation and not self.stopping

    def hold(self, partition: int, topics: Iterable[str]) -> None:
        """Fetch ``topics`` of ``partition`` no more until released."""
        self.hooks.hold(TopicPartition(t, partition) for t in topics)

    async def crash(self, exc: BaseException) -> None:
        """Stop the worker with ``exc`` (kept in :attr:`failed`)."""
        self.failed = exc
        await self.hooks.crash(exc)


class Queue(Protocol):
    """What an assignment asks of the step scheduler (:class:`engine.scheduler.Scheduler`)."""

    async def drain(self) -> None:
        """Drop what was fetched and not stepped yet; wait for the steps in flight."""

    def drop_offsets(self, partition: int) -> None:
        """Forget how far ``partition``'s inputs were processed and handed over."""

    def forget_snapshots(self) -> None:
        """Forget the positions read for :meth:`caught_up` (a new generation)."""

    async def caught_up(self, tp: TopicPartition, target: int) -> bool:
        """Whether every record of ``tp`` below ``target`` has been processed."""
        ...


class Ownership:
    """Assignments and revocations: fencing, the input position, restore, release."""

    def __init__(
        self,
        holdings: Holdings,
        *,
        committer: Committer,
        reader: ChangelogReader,
        stores: Stores,
        queue: Queue,
        background_due: set[int],
        topic_order: tuple[str, ...],
        plans_topics: tuple[str, ...],
        usage_topics: tuple[str, ...],
        standby_replicas: int,
        cached_objects: int,
    ) -> None:
        self.holdings = holdings
        self.committer = committer
        self.reader = reader
        self.stores = stores
        self.queue = queue
        #: Partitions with background work to look at (shared with the background schedule).
        self.background_due = background_due
        self.topic_order = topic_order
        self.plans_topics = plans_topics
        self.usage_topics = usage_topics
        self.standby_replicas = standby_replicas
        self.cached_objects = cached_objects
        self.assigned_once = asyncio.Event()
        self.prepare_task: asyncio.Task[None] | None = None
        self._tend_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Create the stores' root and start reading changelogs."""
        self.stores.root.mkdir(parents=True, exist_ok=True)
        await self.reader.start()

    def start_tending(self) -> None:
        """Start the task that tends the stores (:meth:`tend_stores`)."""
        self._tend_task = asyncio.ensure_future(self.tend_stores())

    async def close(self) -> None:
        """Stop preparing and tending; close producers, the reader and every store."""
        if self.prepare_task is not None:
            self.prepare_task.cancel()
            await asyncio.gather(self.prepare_task, return_exceptions=True)
        if self._tend_task is not None:
            self._tend_task.cancel()
            await asyncio.gather(self._tend_task, return_exceptions=True)
        await self.committer.stop()
        await self.reader.stop()
        held = self.holdings
        for owned in held.owned.values():
            owned.store.close()
        for store in held.standby.values():
            store.close()
        held.owned.clear()
        held.standby.clear()

    async def revoke(self) -> None:
        """A rebalance starts: let the step in flight finish, accept nothing more."""
        self.holdings.accepting = False
        async with self.holdings.lock:
            await self.queue.drain()
        if self.prepare_task is not None:
            self.prepare_task.cancel()

    async def _cancel_prepare(self) -> None:
        """Stop the previous assignment's preparation and wait until it has (a producer it
        was starting is stopped, not left running beside the next one)."""
        task, self.prepare_task = self.prepare_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def assign(
        self,
        assigned: Iterable[TopicPartition],
        generation: int,
        standbys: Iterable[int] = (),
    ) -> None:
        """A new assignment: hold every input, then fence, restore and release in a task."""
        held = self.holdings
        await self._cancel_prepare()
        # Kept from the generation just before, where they were fully prepared: nobody else
        # can have held them in between, so their producers need no fencing (a takeover's
        # new partitions, and any whose preparation a rebalance cut short, are fenced).
        consecutive = generation == held.generation + 1
        held.generation = generation
        self.queue.forget_snapshots()
        inputs = [tp for tp in assigned if tp.topic in self.topic_order]
        partitions = {tp.partition for tp in inputs}
        kept = (
            {p for p in partitions if p in held.owned and held.owned[p].ready}
            if consecutive
            else set()
        )
        warm = set(standbys) - partitions if self.standby_replicas > 0 else set()
        async with held.lock:
            await self.queue.drain()
            for partition in [p for p in held.owned if p not in partitions]:
                owned = held.owned.pop(partition)
                await self.committer.close(partition)
                self.queue.drop_offsets(partition)
                self.background_due.discard(partition)
                held.standby[partition] = owned.store
            for partition in [p for p in held.standby if p not in warm]:
                self.reader.unfollow(partition)
                if partition not in partitions:
                    self.stores.release(partition, held.standby.pop(partition))
            for partition in sorted(warm):
                # Any store taken up again is wiped first if too old to resume (item 7).
                warm_store = held.standby.get(partition)
                held.standby[partition] = (
                    self.stores.open(partition)
                    if warm_store is None
                    else self.stores.keep(partition, warm_store)
                )
                self.reader.follow(partition, held.standby[partition])
            for partition in partitions:
                self._take_up(partition, partition in kept)
                self.queue.drop_offsets(partition)
            held.hooks.hold(inputs)
            held.accepting = True
        self.assigned_once.set()
        if warm:
            logger.info("standby partitions (following their changelogs): %s", sorted(warm))
        self.prepare_task = asyncio.ensure_future(
            self.prepare(sorted(partitions), generation, kept)
        )

    def _take_up(self, partition: int, kept: bool) -> None:
        """Hold ``partition`` as owned, unready until prepared, with a store fit to resume."""
        held = self.holdings
        previous = held.owned.get(partition)
        if previous is not None:
            owned = previous
            if not kept:
                store = self.stores.keep(partition, previous.store)
                if store is not previous.store:
                    store.objects.max_entries = self.cached_objects
                    owned.store = store
        else:
            warm_store = held.standby.pop(partition, None)
            store = (
                self.stores.open(partition)
                if warm_store is None
                else self.stores.keep(partition, warm_store)
            )
            store.objects.clear()
            store.objects.max_entries = self.cached_objects
            owned = held.owned[partition] = Owned(partition, store)
        owned.ready = False
        owned.plans_caught_up = False
        owned.plans_target = None

    async def tend_stores(self) -> None:
        """Move held stores' sync times on, delete stores of partitions long let go."""
        held = self.holdings
        while True:
            await asyncio.sleep(TEND_STORES_S)
            async with held.lock:  # not half-way through an assignment
                stores = {**held.standby, **{p: o.store for p, o in held.owned.items()}}
                ready = {p for p, o in held.owned.items() if o.ready}
                try:
                    self.stores.tend(stores, ready if held.hooks.broker_connected() else ())
                except Exception:  # noqa: BLE001 - housekeeping: log, keep processing
                    logger.exception("tending the local stores failed")

    async def prepare(
        self, partitions: list[int], generation: int, kept: set[int] | None = None
    ) -> None:
        """Fence each partition's previous producer, restore its stores, then release it.

        ``kept``: partitions this worker held in the previous generation too, whose producers
        are still open and need no fencing.
        """
        held = self.holdings
        try:
            started = time.monotonic()
            kept = kept or set()
            await asyncio.gather(*(self.open(p, generation) for p in partitions if p not in kept))
            fenced_s = time.monotonic() - started
            if generation != held.generation:
                return
            await self.seek_committed(partitions, generation)
            stores = {p: held.owned[p].store for p in partitions if p in held.owned}
            report = await self.reader.restore(stores)
            if generation != held.generation:
                return
            plans = [TopicPartition(t, p) for p in partitions for t in self.plans_topics]
            ends = await self.reader.end_offsets(plans)
            release: list[TopicPartition] = []
            for p in partitions:
                owned = held.owned.get(p)
                if owned is None:
                    continue
                owned.ready = True
                owned.plans_target = {
                    t: ends.get(TopicPartition(t, p), 0) for t in self.plans_topics
                }
                release += [
                    TopicPartition(t, p) for t in self.topic_order if t not in self.usage_topics
                ]
                self.background_due.add(p)
            held.hooks.release(release)
            logger.info(
                "partitions %s ready in %.2fs (fenced in %.2fs, restored %s in %.2fs); reading "
                "account plans up to %s",
                partitions,
                time.monotonic() - started,
                fenced_s,
                report.records or "nothing",
                report.seconds,
                {f"{tp.topic}[{tp.partition}]": e for tp, e in ends.items()},
            )
            await self.check_gates()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything here leaves partitions unusable
            logger.exception("preparing partitions %s failed; stopping the worker", partitions)
            await held.crash(exc)

    async def open(self, partition: int, generation: int) -> None:
        """Open (fence with) ``partition``'s producer for the assignment of ``generation``:
        the one place a producer is started. A start that runs out of time (the broker
        away) is tried again while the assignment stands."""
        attempt = 0
        while True:
            try:
                await self.committer.open(partition)
                return
            except StepFailed as exc:
                attempt += 1
                if self.holdings.stopping or generation != self.holdings.generation:
                    raise
                logger.warning(
                    "partition %d: %s; trying again (attempt %d)", partition, exc, attempt
                )

    async def seek_committed(self, partitions: list[int], generation: int) -> None:
        """Read the group's committed input offsets again, now that the partitions'
        producers are fenced, and fetch from there.

        aiokafka reads them before the assignment listener runs, so before our fence: a
        previous owner's transaction ending in between (its EndTxn landing after that
        read) moved them on, and fetching from the older ones would process its last
        records again (dead letters, re-keyed records twice; a plan's tombstone replayed
        over later state). Once our InitProducerId returned, every transaction of the
        previous producer is complete, so these are stable. Records below them that were
        fetched already are skipped too (``next_offset``)."""
        held = self.holdings
        inputs = [TopicPartition(t, p) for p in partitions for t in self.topic_order]
        committed = await held.hooks.committed(inputs)
        if generation != held.generation:
            return
        for tp in inputs:
            offset = committed.get(tp)
            if offset is None or offset < 0 or tp.partition not in held.owned:
                continue
            held.next_offset[tp] = offset  # what the scheduler skips below, seek or no seek
            try:
                await held.hooks.seek(tp, offset)
            except Exception:  # noqa: BLE001 - e.g. no longer assigned: the next rebalance seeks
                logger.warning("%s[%d]: seek to %d failed", tp.topic, tp.partition, offset)

    async def check_gates(self) -> None:
        """Release the usage of partitions whose account plans have been read."""
        held = self.holdings
        for owned in list(held.owned.values()):
            if not owned.ready or owned.plans_caught_up or owned.plans_target is None:
                continue
            for topic, target in owned.plans_target.items():
                if not await self.queue.caught_up(TopicPartition(topic, owned.partition), target):
                    break
            else:
                owned.plans_caught_up = True
                held.hooks.release(TopicPartition(t, owned.partition) for t in self.usage_topics)
                logger.info("partition %d: account plans read; usage released", owned.partition)
