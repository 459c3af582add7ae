"""The engine: owns partitions, runs steps in bulk, applies state only after commit.

Data flow of one step of partition p (see docs/architecture.md)::

    records of p (plans, usage, re-keyed usage, ticks), fetched in bulk
      -> handlers decide, reading state through a StepState, writing to it
      -> one Kafka transaction: changelog records (one per touched key), events,
         dead letters, re-keyed records, and the input offsets
      -> commit; then one RocksDB write batch: the step's state + changelog offsets

Records reach the engine through :meth:`Engine.submit` from Faust's fetch path
(:mod:`app.faust_internals`), and steps run in the engine's own task, so Faust
stopping its fetcher never cancels a step half-way. Partitions are processed in
parallel (one transaction each); one partition never has two steps at once.

:class:`Engine` is the face the worker, agents and web see; each job is its own part:

- :mod:`engine.ownership`: assignments, fencing, the input position, restore, release;
- :mod:`engine.scheduler`: fetched records to steps, steps in flight, back-pressure;
- :mod:`engine.poison`: running a step, and narrowing down one that fails for good;
- :mod:`engine.checkpoint`: a step's commit protocol, retries, give-up and latch;
- :mod:`engine.background`: when background slices run, alone or in a usage step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiokafka import TopicPartition

from engine.background import FOLD_EVERY_S, Background, BackgroundSchedule
from engine.changelogs import ChangelogReader, wall_ms
from engine.checkpoint import Checkpoint, StepStats
from engine.collector import COLLECTOR
from engine.committers import Committer
from engine.deciding import Decider, ThreadDecider
from engine.ownership import TEND_STORES_S, Holdings, Hooks, Owned, Ownership
from engine.poison import ByTopic, Isolation, Poison
from engine.scheduler import Scheduler
from engine.step import Handler
from state.store import PartitionStore, StoreOptions, Stores
from state.table import TableSpec

__all__ = [
    "FOLD_EVERY_S",
    "Background",
    "Engine",
    "Handler",
    "Hooks",
    "Maintenance",
    "Owned",
    "Poison",
]

logger = logging.getLogger(__name__)

_GATE_CHECK_S = 0.1
_MAINTENANCE_S = 5.0


class Maintenance(Protocol):
    """Local housekeeping of a store (e.g. expiring dedup entries); no changelog."""

    def __call__(self, store: PartitionStore, now_ms: int) -> None: ...


class Engine:
    """Partitions, stores, steps and their commits, for one worker process."""

    def __init__(
        self,
        *,
        app_id: str,
        data_dir: Path,
        specs: Sequence[TableSpec],
        handlers: Mapping[str, Handler],
        topic_order: Sequence[str],
        plans_topic: str,
        usage_topics: Sequence[str],
        plans_forwarded_topic: str | None = None,
        committer: Committer,
        reader: ChangelogReader,
        store_options: StoreOptions,
        now_ms: Callable[[], int],
        background: Background | None = None,
        maintenance: Maintenance | None = None,
        standby_replicas: int = 0,
        cached_objects: int = 0,
        hooks: Hooks,
        on_step: Callable[[int, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop_grace_s: float = 15.0,
        state_cleanup_delay_s: float = 600.0,
        state_stale_after_s: float = 43_200.0,
        wall_clock_ms: Callable[[], int] = wall_ms,
        decider: Decider | None = None,
    ) -> None:
        self.handlers = dict(handlers)
        self.topic_order = tuple(topic_order)
        self.reader = reader
        self.now_ms = now_ms
        self.maintenance = maintenance
        #: How long a stop waits for the steps in flight before abandoning them.
        self.stop_grace_s = stop_grace_s
        self.stopped = False
        self._started = False
        self.stores = Stores(
            data_dir / "state",
            tuple(c for s in specs for c in s.columns),
            store_options,
            wall_ms=wall_clock_ms,
            cleanup_delay_ms=int(state_cleanup_delay_s * 1000),
            stale_after_ms=int(state_stale_after_s * 1000),
            tend_every_ms=int(TEND_STORES_S * 1000),
        )
        reader.stale_after_ms = self.stores.stale_after_ms
        usage = tuple(usage_topics)
        self._held = held = Holdings(hooks)
        self.slices = BackgroundSchedule(background, held.owned, clock)
        stats = StepStats()
        self.scheduler = Scheduler(
            held,
            run_step=self._run_step,
            topic_order=self.topic_order,
            usage_topics=usage,
            stats=stats,
        )
        self.checkpoint = Checkpoint(
            held,
            committer,
            waiting=self.scheduler,
            background=self.slices,
            app_id=app_id,
            specs=specs,
            topic_order=self.topic_order,
            now_ms=now_ms,
            stats=stats,
            on_step=on_step,
            # Off the event loop: a decision holding the loop held every other
            # partition's Kafka round trips (engine.deciding).
            decider=ThreadDecider() if decider is None else decider,
        )
        self.isolation = Isolation(
            held,
            self.checkpoint,
            self.slices,
            handlers=self.handlers,
            topic_order=self.topic_order,
        )
        #: Every topic of account plans the usage gate waits for: the producers' own, and
        #: the plans other partitions forwarded here (agents.plans).
        plans_topics = (plans_topic,) + ((plans_forwarded_topic,) if plans_forwarded_topic else ())
        self.ownership = Ownership(
            held,
            committer=committer,
            reader=reader,
            stores=self.stores,
            queue=self.scheduler,
            background_due=self.slices.due,
            topic_order=self.topic_order,
            plans_topics=plans_topics,
            usage_topics=usage,
            standby_replicas=standby_replicas,
            cached_objects=cached_objects,
        )
        self._task: asyncio.Task[None] | None = None
        self._last_gate_check = 0.0
        self._last_maintenance = time.monotonic()
        #: Partitions whose maintenance is due and waits for their decision to end.
        self._maintenance_due: set[int] = set()

    # -- what the worker, agents and web read -------------------------------------

    @property
    def owned(self) -> dict[int, Owned]:
        """Partitions this worker processes."""
        return self._held.owned

    @property
    def standby(self) -> dict[int, PartitionStore]:
        """Stores of partitions this worker keeps warm for a takeover."""
        return self._held.standby

    @property
    def generation(self) -> int:
        """The group generation of the current assignment (-1 before the first)."""
        return self._held.generation

    @property
    def next_offset(self) -> dict[TopicPartition, int]:
        """Per input, the offset after the last record processed and committed."""
        return self._held.next_offset

    @property
    def failed(self) -> BaseException | None:
        """What stopped the worker, if the engine did."""
        return self._held.failed

    @property
    def unavailable_steps(self) -> int:
        """Steps whose deciding failed for a reason of the machine (I/O, the store), retried."""
        return self.checkpoint.unavailable_steps

    @property
    def clock(self) -> Callable[[], float]:
        """Monotonic seconds, for the backoff of suspended background work."""
        return self.slices.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.slices.clock = clock

    @property
    def assigned_once(self) -> asyncio.Event:
        """Set once the first assignment arrived."""
        return self.ownership.assigned_once

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start reading changelogs and the step loop (once)."""
        if self._started:
            return
        self._started = True
        await self.ownership.start()
        self._task = asyncio.ensure_future(self.scheduler.run(self._housekeeping, self._eager))
        self.ownership.start_tending()

    async def stop(self) -> None:
        """Finish the step in flight, then close producers, reader and stores."""
        held = self._held
        held.stopping = True
        held.accepting = False
        held.stop_requested.set()
        async with held.lock:  # the steps in flight commit (or fail) first
            await self.scheduler.drain_or_abandon(self.stop_grace_s)
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await self.ownership.close()
        self.checkpoint.decider.close()
        self.stopped = True
        logger.info("engine stopped: every finished step is committed and stored")

    # -- readiness and progress --------------------------------------------------

    def is_ready(self) -> bool:
        """Assigned at least once, every owned partition restored and its plans read,
        and the broker coordinating the group reachable.

        Without the last check a worker whose broker went away kept answering ready:
        nothing else changes until the group rebalances after the broker is back.
        """
        return all(self.readiness().values())

    def readiness(self) -> dict[str, bool]:
        """The checks behind :meth:`is_ready`."""
        owned = self._held.owned.values()
        return {
            "assigned": self.assigned_once.is_set(),
            "not_rebalancing": self._held.accepting,
            "tables_recovered": all(o.ready for o in owned),
            "plans_caught_up": all(o.plans_caught_up for o in owned),
            "broker_connected": self._held.hooks.broker_connected(),
        }

    def store_of(self, partition: int) -> PartitionStore | None:
        """The store of an owned (or standby) partition."""
        owned = self.owned.get(partition)
        if owned is not None:
            return owned.store
        return self.standby.get(partition)

    def processed_next(self, tp: TopicPartition) -> int:
        """Offset after the last record of ``tp`` processed and committed (-1: none)."""
        return self.next_offset.get(tp, -1)

    async def caught_up(self, tp: TopicPartition, target: int) -> bool:
        """Whether every record of ``tp`` below ``target`` has been processed."""
        return await self.scheduler.caught_up(tp, target)

    # -- rebalance -----------------------------------------------------------------

    async def on_revoked(self) -> None:
        """A rebalance starts: let the step in flight finish, accept nothing more."""
        await self.ownership.revoke()

    async def on_assigned(
        self,
        assigned: Iterable[TopicPartition],
        generation: int,
        standbys: Iterable[int] = (),
    ) -> None:
        """A new assignment: hold every input, then fence, restore and release in a task.

        ``standbys``: partitions whose stores this worker keeps warm for a fast takeover
        (the group assignor's standby assignment), following their changelogs.
        """
        await self.start()
        await self.ownership.assign(assigned, generation, standbys)

    # -- records in ---------------------------------------------------------------

    def fetch_returned(self) -> None:
        """A fetch of the consumer returned (with or without records of ours)."""
        self.scheduler.fetch_returned()

    def accepts(self, generation: int) -> bool:
        """Whether records fetched under ``generation`` may be submitted."""
        return self._held.owns(generation)

    async def submit(self, records: dict[Any, list[Any]], generation: int) -> None:
        """Queue fetched records (topic-partition -> records) for the step loop."""
        await self.scheduler.submit(records, generation)

    # -- wiring ---------------------------------------------------------------------

    async def _run_step(self, partition: int, by_topic: ByTopic) -> None:
        with COLLECTOR.step():  # no collection walking the step's live objects
            await self.isolation.run(partition, by_topic)

    def _eager(self) -> bool:
        """Whether the step loop turns quickly (its housekeeping is due soon): background
        work is due, or a partition's usage waits for its plans to be read. Otherwise a
        loop with no records coming (usage held, the plans all fetched) waited up to half a
        second before the gate check that releases the usage (issue 20: start-up)."""
        return bool(self.slices.due) or any(
            o.ready and not o.plans_caught_up for o in self._held.owned.values()
        )

    async def _housekeeping(self) -> None:
        """Between the loop's turns: the usage gates, background slices, maintenance."""
        COLLECTOR.tend()
        now = time.monotonic()
        if now - self._last_gate_check >= _GATE_CHECK_S:
            self._last_gate_check = now
            await self.ownership.check_gates()
        self.slices.resume()
        if self.slices.due:
            for owned, work in self.slices.to_start(self.scheduler.idle):
                self.scheduler.launch(owned.partition, self.isolation.slice(owned, work))
        if self.maintenance is not None:
            if now - self._last_maintenance >= _MAINTENANCE_S:
                self._last_maintenance = now
                self._maintenance_due = {p for p, o in self.owned.items() if o.ready}
            self._maintain(self.maintenance)

    def _maintain(self, maintenance: Maintenance) -> None:
        """Maintenance of the stores due, except those whose partition is deciding (their
        turn comes at a later turn of the loop): decisions run off the loop, and a store
        must not change under one. Expiry with the loop's later clock would delete entries
        the step, with its own ``now_ms``, still holds (a repeat would pass as new)."""
        deciding = self.checkpoint.deciding
        for partition in sorted(self._maintenance_due - deciding):
            self._maintenance_due.discard(partition)
            owned = self.owned.get(partition)
            if owned is not None and owned.ready:
                maintenance(owned.store, self.now_ms())
