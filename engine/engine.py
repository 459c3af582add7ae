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

Background work (a drop evaluation, an anniversary pass) runs in slices: a slice is a
step of its own when its partition is idle, and rides at the start of a usage step when
the partition is busy and its last slice is :data:`FOLD_EVERY_S` old. So a million
accounts to evaluate never stall usage for long, and steady usage never starves them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from rocksdict import DbClosedError

from engine.changelogs import ChangelogReader, wall_ms
from engine.committers import Committer, Fenced, StepFailed
from engine.step import Messages, Step
from state.store import PartitionStore, StoreOptions, Stores
from state.table import TableSpec
from state.transaction import StepState

logger = logging.getLogger(__name__)

_RETRY_MAX_S = 5.0
_GATE_CHECK_S = 0.1
_MAINTENANCE_S = 5.0
#: A stop cancels the steps still in flight this many times, waiting this long after each.
_ABANDON_TRIES = 3
_ABANDON_WAIT_S = 1.0
#: How often held stores' sync times move on and unheld stores are cleaned up.
_TEND_STORES_S = 60.0
#: Records fetched but waiting for their steps, beyond which the partitions holding them
#: are fetched no more until their steps take them.
_MAX_PENDING_RECORDS = 50_000
#: Most records in one step: bounds a transaction's size and time (and its messages).
_MAX_STEP_RECORDS = 20_000
#: Records waiting for one partition's step beyond which that partition is fetched no
#: more (its next step's worth). Back-pressure is per partition: a partition whose step
#: fails for ever (retrying) holds only its own fetch, never the loop or the others.
_MAX_PENDING_PER_PARTITION = _MAX_STEP_RECORDS
#: A partition's background work that failed for good is tried again after this many
#: seconds, doubling on each failure in a row up to :data:`BACKGROUND_RETRY_MAX_S`.
BACKGROUND_RETRY_FIRST_S = 30.0
BACKGROUND_RETRY_MAX_S = 1800.0
#: A busy partition with background work pending runs a slice at the start of a usage
#: step once its last slice is this old. Slices as steps of their own wait for the
#: partition to be idle, which steady usage never leaves it (measured: at 10,000
#: records/s over 4 partitions no slice ran in 30 s, and a day's drop evaluation waited
#: for the load to end). A slice spends at most its own budget (20 ms), so this caps
#: background work at about 4 % of a busy partition's time.
FOLD_EVERY_S = 0.5


def _take(waiting: dict[str, list[Any]], limit: int) -> dict[str, list[Any]]:
    """Up to ``limit`` records from ``waiting`` (topic -> records), oldest first per topic.

    Whole topics go first; the topic that crosses the limit is split, its tail left
    in ``waiting`` (so records of one topic stay in order across steps).
    """
    taken: dict[str, list[Any]] = {}
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


class Handler(Protocol):
    """Turns one topic's records of a step into state writes and messages."""

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Decide for ``records`` (all of one topic, of ``step.partition``, in order)."""

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """Give up on ``record``, which cannot be processed: dead-letter it and count it."""


class _SliceFailed(Exception):
    """A background slice riding in a usage step raised (its cause): the step is redone
    without it, and the partition's background work suspended (as a failed slice step's)."""


class _Undecided(Exception):
    """Deciding raised (its cause): the begun transaction is aborted, then Poison raised."""


class _Unavailable(Exception):
    """Deciding failed for a reason of the machine, not of the records (its cause: an I/O
    or store error): the begun transaction is aborted and the step retried as it is."""


def _environmental(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the machine failing, not the rules.

    OSError (a file, a socket, "too many open files"), a closed store, and RocksDB's own
    errors: rocksdict raises them as plain ``Exception`` with RocksDB's status text
    ("IO error: ...", "Corruption: ...", checked with rocksdict 0.3.29 on a damaged
    table file); the rules never raise a plain ``Exception``. Anything else raised while
    deciding is taken as deterministic: the same records would fail again.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OSError | DbClosedError) or type(seen) is Exception:
            return True
        seen = seen.__cause__
    return False


class Poison(Exception):
    """A step failed in a way that trying the same records again cannot fix: deciding
    raised (a record the rules cannot handle), or Kafka refused a message for good (too
    large). The engine then narrows the step down to the record at fault (contract 4)."""


#: Kafka errors a retry cannot fix: the message itself is refused.
_REFUSED: Final = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is Kafka refusing a message for good."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _REFUSED):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _halves(by_topic: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """``by_topic`` split in two steps, every topic's records staying in order."""
    first: dict[str, list[Any]] = {}
    second: dict[str, list[Any]] = {}
    total = sum(len(items) for items in by_topic.values())
    room = (total + 1) // 2
    for topic, items in by_topic.items():
        head, tail = items[:room], items[room:]
        room -= len(head)
        if head:
            first[topic] = head
        if tail:
            second[topic] = tail
    return first, second


class Background(Protocol):
    """Work a partition does in slices when it has no records to process (drop evaluation)."""

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether ``partition`` has a slice to run."""
        ...

    def run_slice(self, step: Step) -> None:
        """Do one bounded slice of the work as ``step``."""


class Maintenance(Protocol):
    """Local housekeeping of a store (e.g. expiring dedup entries); no changelog."""

    def __call__(self, store: PartitionStore, now_ms: int) -> None: ...


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
    #: partition never steps again in this process (see :meth:`Engine._latch`).
    latched: BaseException | None = None


@dataclass(slots=True)
class _Snapshot:
    position: int
    fetches: int


class _Stats:
    """Step figures logged every so often: records, steps, time deciding vs committing."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self.since = now
        self.records = 0
        self.steps = 0
        self.messages = 0
        self.step_s = 0.0
        self.commit_s = 0.0

    def add(self, messages: int, step_s: float, commit_s: float) -> None:
        self.steps += 1
        self.messages += messages
        self.step_s += step_s
        self.commit_s += commit_s

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self.since < self.every_s or not self.steps:
            return
        logger.info(
            "last %.0fs: %d records in %d steps (%.0f per step), %d messages out; "
            "per step %.1f ms, of which %.1f ms in the Kafka commit",
            now - self.since,
            self.records,
            self.steps,
            self.records / self.steps,
            self.messages,
            1000 * self.step_s / self.steps,
            1000 * self.commit_s / self.steps,
        )
        self._reset(now)


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
    ) -> None:
        self.app_id = app_id
        self.root = data_dir / "state"
        self.specs = tuple(specs)
        self._changelogged = {s.name: s for s in self.specs}
        self.columns = tuple(c for s in self.specs for c in s.columns)
        self.handlers = dict(handlers)
        self.topic_order = tuple(topic_order)
        self.plans_topic = plans_topic
        #: Every topic of account plans the usage gate waits for: the producers' own, and
        #: the plans other partitions forwarded here (agents.plans).
        self.plans_topics = (plans_topic,) + (
            (plans_forwarded_topic,) if plans_forwarded_topic else ()
        )
        self.usage_topics = tuple(usage_topics)
        self.committer = committer
        self.reader = reader
        self.store_options = store_options
        self.stores = Stores(
            self.root,
            self.columns,
            store_options,
            wall_ms=wall_clock_ms,
            cleanup_delay_ms=int(state_cleanup_delay_s * 1000),
            stale_after_ms=int(state_stale_after_s * 1000),
            tend_every_ms=int(_TEND_STORES_S * 1000),
        )
        reader.stale_after_ms = self.stores.stale_after_ms
        self.now_ms = now_ms
        self.background = background
        self.maintenance = maintenance
        self.standby_replicas = standby_replicas
        self.cached_objects = cached_objects
        self.on_step = on_step
        self.hooks = hooks
        #: Monotonic seconds, for the backoff of suspended background work.
        self.clock = clock
        #: How long a stop waits for the steps in flight before abandoning them.
        self.stop_grace_s = stop_grace_s
        self.stopped = False
        self._started = False

        self.owned: dict[int, Owned] = {}
        self.standby: dict[int, PartitionStore] = {}
        self.next_offset: dict[TopicPartition, int] = {}
        #: Offset after the last record of each input handed to a step or waiting for one
        #: (this generation): a fetch overlapping them (a seek back, e.g. after the fence's
        #: seek) must not hand them over again while their step is still in flight.
        self._handed: dict[TopicPartition, int] = {}
        self.generation = -1
        self.assigned_once = asyncio.Event()
        self.failed: BaseException | None = None
        self._accepting = False
        self._queue: asyncio.Queue[tuple[int, dict[Any, list[Any]]]] = asyncio.Queue(maxsize=2)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._background_due: set[int] = set()
        self._fetches = 0
        self._snapshots: dict[tuple[TopicPartition, int], _Snapshot] = {}
        self._last_gate_check = 0.0
        self._last_maintenance = time.monotonic()
        self._prepare_task: asyncio.Task[None] | None = None
        self._tend_task: asyncio.Task[None] | None = None
        self._stats = _Stats()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._pending: dict[int, dict[str, list[Any]]] = {}
        self._pending_records = 0
        self._in_hand = False
        #: Per partition, the (topic, partition) targets its last step wrote to.
        self._likely: dict[int, tuple[tuple[str, int], ...]] = {}
        #: Per partition, when its last background slice committed (monotonic seconds).
        self._last_slice: dict[int, float] = {}
        #: Steps whose deciding failed for a reason of the machine (I/O, the store), retried.
        self.unavailable_steps = 0
        #: Partitions whose fetch is held because too many of their records wait.
        self._held_back: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start reading changelogs and the step loop (once)."""
        if self._started:
            return
        self._started = True
        self.root.mkdir(parents=True, exist_ok=True)
        await self.reader.start()
        self._task = asyncio.ensure_future(self._run())
        self._tend_task = asyncio.ensure_future(self._tend_stores())

    async def stop(self) -> None:
        """Finish the step in flight, then close producers, reader and stores."""
        self._stopping = True
        self._accepting = False
        self._stop_requested.set()
        async with self._lock:  # the steps in flight commit (or fail) first
            await self._drain_or_abandon()
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if self._prepare_task is not None:
            self._prepare_task.cancel()
            await asyncio.gather(self._prepare_task, return_exceptions=True)
        if self._tend_task is not None:
            self._tend_task.cancel()
            await asyncio.gather(self._tend_task, return_exceptions=True)
        await self.committer.stop()
        await self.reader.stop()
        for owned in self.owned.values():
            owned.store.close()
        for store in self.standby.values():
            store.close()
        self.owned.clear()
        self.standby.clear()
        self.stopped = True
        logger.info("engine stopped: every finished step is committed and stored")

    async def _drain_or_abandon(self) -> None:
        """Let the steps in flight end, for at most :attr:`stop_grace_s`; then cancel them.

        A commit waiting on a broker that is away has its own deadline (the transaction
        timeout, 60 s by default), longer than the worker's shutdown timeout (30 s): the
        contract wants a stop within the latter, abandoning the batch if need be. A step
        cancelled before its commit is answered changed nothing here (RocksDB is written
        only after the commit returns, with no await in between), and its transaction is
        aborted by the next owner's InitProducerId; if the broker committed it after all,
        the store is behind Kafka, which restore brings level.
        """
        drained = asyncio.ensure_future(self._drain_inflight())
        try:
            await asyncio.wait_for(asyncio.shield(drained), self.stop_grace_s)
            return
        except TimeoutError:
            logger.warning(
                "partitions %s: steps still in flight %.0fs after the stop began; abandoned "
                "(the next owner redoes them from the committed offsets)",
                sorted(self._inflight),
                self.stop_grace_s,
            )
        # A cancelled commit may await its abort (a broker away): cancel again, a few times.
        for _ in range(_ABANDON_TRIES):
            for step in list(self._inflight.values()):
                step.cancel()
            done, _ = await asyncio.wait({drained}, timeout=_ABANDON_WAIT_S)
            if done:
                return
        drained.cancel()
        await asyncio.gather(drained, return_exceptions=True)

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
        return {
            "assigned": self.assigned_once.is_set(),
            "not_rebalancing": self._accepting,
            "tables_recovered": all(o.ready for o in self.owned.values()),
            "plans_caught_up": all(o.plans_caught_up for o in self.owned.values()),
            "broker_connected": self.hooks.broker_connected(),
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
        """Whether every record of ``tp`` below ``target`` has been processed.

        Either a processed record reached it, or the consumer's position passed it
        (transaction markers take offsets no record has) *and* a fetch has returned
        and been processed since that position was read: records below a position
        have left the fetch buffer, but may still be on their way to :meth:`submit`.
        """
        if target <= 0 or self.processed_next(tp) >= target:
            return True
        key = (tp, target)
        snap = self._snapshots.get(key)
        if snap is not None and snap.position >= target:
            if (
                self._fetches > snap.fetches
                and self._queue.empty()
                and not self._in_hand
                and self._idle(tp.partition)
            ):
                self._snapshots.pop(key, None)
                return True
            return False
        fetches = self._fetches
        position = await self.hooks.position(tp)
        if position is not None:
            self._snapshots[key] = _Snapshot(position, fetches)
        return False

    # -- rebalance -----------------------------------------------------------------

    async def on_revoked(self) -> None:
        """A rebalance starts: let the step in flight finish, accept nothing more."""
        self._accepting = False
        async with self._lock:
            while not self._queue.empty():
                self._queue.get_nowait()
            await self._drain_inflight()
        if self._prepare_task is not None:
            self._prepare_task.cancel()

    async def _cancel_prepare(self) -> None:
        """Stop the previous assignment's preparation and wait until it has (a producer it
        was starting is stopped, not left running beside the next one)."""
        task, self._prepare_task = self._prepare_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

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
        await self._cancel_prepare()
        # Kept from the generation just before, where they were fully prepared: nobody else
        # can have held them in between, so their producers need no fencing (a takeover's
        # new partitions, and any whose preparation a rebalance cut short, are fenced).
        consecutive = generation == self.generation + 1
        self.generation = generation
        self._snapshots.clear()
        inputs = [tp for tp in assigned if tp.topic in self.topic_order]
        partitions = {tp.partition for tp in inputs}
        kept = (
            {p for p in partitions if p in self.owned and self.owned[p].ready}
            if consecutive
            else set()
        )
        warm = set(standbys) - partitions if self.standby_replicas > 0 else set()
        async with self._lock:
            while not self._queue.empty():
                self._queue.get_nowait()
            await self._drain_inflight()
            for partition in [p for p in self.owned if p not in partitions]:
                owned = self.owned.pop(partition)
                await self.committer.close(partition)
                self._drop_offsets(partition)
                self._background_due.discard(partition)
                self.standby[partition] = owned.store
            for partition in [p for p in self.standby if p not in warm]:
                self.reader.unfollow(partition)
                if partition not in partitions:
                    self.stores.release(partition, self.standby.pop(partition))
            for partition in sorted(warm):
                # Any store taken up again is wiped first if too old to resume (item 7).
                warm_store = self.standby.get(partition)
                self.standby[partition] = (
                    self.stores.open(partition)
                    if warm_store is None
                    else self.stores.keep(partition, warm_store)
                )
                self.reader.follow(partition, self.standby[partition])
            for partition in partitions:
                held = self.owned.get(partition)
                if held is not None:
                    owned = held
                    if partition not in kept:
                        store = self.stores.keep(partition, held.store)
                        if store is not held.store:
                            store.objects.max_entries = self.cached_objects
                            owned.store = store
                else:
                    warm_store = self.standby.pop(partition, None)
                    store = (
                        self.stores.open(partition)
                        if warm_store is None
                        else self.stores.keep(partition, warm_store)
                    )
                    store.objects.clear()
                    store.objects.max_entries = self.cached_objects
                    owned = self.owned[partition] = Owned(partition, store)
                owned.ready = False
                owned.plans_caught_up = False
                owned.plans_target = None
                self._drop_offsets(partition)
            self.hooks.hold(inputs)
            self._accepting = True
        self.assigned_once.set()
        if warm:
            logger.info("standby partitions (following their changelogs): %s", sorted(warm))
        self._prepare_task = asyncio.ensure_future(
            self._prepare(sorted(partitions), generation, kept)
        )

    async def _tend_stores(self) -> None:
        """Move held stores' sync times on, delete stores of partitions long let go."""
        while True:
            await asyncio.sleep(_TEND_STORES_S)
            async with self._lock:  # not half-way through an assignment
                held = {**self.standby, **{p: o.store for p, o in self.owned.items()}}
                ready = {p for p, o in self.owned.items() if o.ready}
                try:
                    self.stores.tend(held, ready if self.hooks.broker_connected() else ())
                except Exception:  # noqa: BLE001 - housekeeping: log, keep processing
                    logger.exception("tending the local stores failed")

    def _drop_offsets(self, partition: int) -> None:
        for tp in [tp for tp in self.next_offset if tp.partition == partition]:
            del self.next_offset[tp]
        for tp in [tp for tp in self._handed if tp.partition == partition]:
            del self._handed[tp]

    async def _prepare(
        self, partitions: list[int], generation: int, kept: set[int] | None = None
    ) -> None:
        """Fence each partition's previous producer, restore its stores, then release it.

        ``kept``: partitions this worker held in the previous generation too, whose producers
        are still open and need no fencing.
        """
        try:
            started = time.monotonic()
            kept = kept or set()
            await asyncio.gather(*(self._open(p, generation) for p in partitions if p not in kept))
            fenced_s = time.monotonic() - started
            if generation != self.generation:
                return
            await self._seek_committed(partitions, generation)
            stores = {p: self.owned[p].store for p in partitions if p in self.owned}
            report = await self.reader.restore(stores)
            if generation != self.generation:
                return
            plans = [TopicPartition(t, p) for p in partitions for t in self.plans_topics]
            ends = await self.reader.end_offsets(plans)
            release: list[TopicPartition] = []
            for p in partitions:
                owned = self.owned.get(p)
                if owned is None:
                    continue
                owned.ready = True
                owned.plans_target = {
                    t: ends.get(TopicPartition(t, p), 0) for t in self.plans_topics
                }
                release += [
                    TopicPartition(t, p) for t in self.topic_order if t not in self.usage_topics
                ]
                self._background_due.add(p)
            self.hooks.release(release)
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
            await self._check_gates()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything here leaves partitions unusable
            logger.exception("preparing partitions %s failed; stopping the worker", partitions)
            self.failed = exc
            await self.hooks.crash(exc)

    async def _open(self, partition: int, generation: int) -> None:
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
                if self._stopping or generation != self.generation:
                    raise
                logger.warning(
                    "partition %d: %s; trying again (attempt %d)", partition, exc, attempt
                )

    async def _seek_committed(self, partitions: list[int], generation: int) -> None:
        """Read the group's committed input offsets again, now that the partitions'
        producers are fenced, and fetch from there.

        aiokafka reads them before the assignment listener runs, so before our fence: a
        previous owner's transaction ending in between (its EndTxn landing after that
        read) moved them on, and fetching from the older ones would process its last
        records again (dead letters, re-keyed records twice; a plan's tombstone replayed
        over later state). Once our InitProducerId returned, every transaction of the
        previous producer is complete, so these are stable. Records below them that were
        fetched already are skipped too (``next_offset``)."""
        inputs = [TopicPartition(t, p) for p in partitions for t in self.topic_order]
        committed = await self.hooks.committed(inputs)
        if generation != self.generation:
            return
        for tp in inputs:
            offset = committed.get(tp)
            if offset is None or offset < 0 or tp.partition not in self.owned:
                continue
            self.next_offset[tp] = offset  # what _process skips below, seek or no seek
            try:
                await self.hooks.seek(tp, offset)
            except Exception:  # noqa: BLE001 - e.g. no longer assigned: the next rebalance seeks
                logger.warning("%s[%d]: seek to %d failed", tp.topic, tp.partition, offset)

    async def _check_gates(self) -> None:
        """Release the usage of partitions whose account plans have been read."""
        for owned in list(self.owned.values()):
            if not owned.ready or owned.plans_caught_up or owned.plans_target is None:
                continue
            for topic, target in owned.plans_target.items():
                if not await self.caught_up(TopicPartition(topic, owned.partition), target):
                    break
            else:
                owned.plans_caught_up = True
                self.hooks.release(TopicPartition(t, owned.partition) for t in self.usage_topics)
                logger.info("partition %d: account plans read; usage released", owned.partition)

    # -- records in ---------------------------------------------------------------

    def fetch_returned(self) -> None:
        """A fetch of the consumer returned (with or without records of ours)."""
        self._fetches += 1

    def accepts(self, generation: int) -> bool:
        """Whether records fetched under ``generation`` may be submitted."""
        return self._accepting and generation == self.generation and not self._stopping

    async def submit(self, records: dict[Any, list[Any]], generation: int) -> None:
        """Queue fetched records (topic-partition -> records) for the step loop."""
        await self._queue.put((generation, records))

    # -- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine cannot go on: stop the worker
            logger.exception("engine loop failed; stopping the worker")
            self.failed = exc
            await self.hooks.crash(exc)

    async def _loop(self) -> None:
        while True:
            timeout = 0.02 if self._background_due else 0.5
            try:
                generation, records = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                generation, records = -1, {}
            # Out of the queue but not yet waiting for a step: caught_up() must not
            # take this moment for "nothing left".
            self._in_hand = bool(records)
            try:
                async with self._lock:
                    if self._stopping:
                        return
                    if records and generation == self.generation and self._accepting:
                        await self._process(records)
            finally:
                self._in_hand = False
            async with self._lock:
                if self._accepting and not self._stopping:
                    await self._housekeeping()

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_gate_check >= _GATE_CHECK_S:
            self._last_gate_check = now
            await self._check_gates()
        self._resume_background()
        if self._background_due:
            await self._run_background()
        if self.maintenance is not None and now - self._last_maintenance >= _MAINTENANCE_S:
            self._last_maintenance = now
            for owned in list(self.owned.values()):
                if owned.ready:
                    self.maintenance(owned.store, self.now_ms())

    async def _process(self, records: dict[Any, list[Any]]) -> None:
        by_partition: dict[int, dict[str, list[Any]]] = {}
        for tp, items in records.items():
            owned = self.owned.get(tp.partition)
            if owned is None or not owned.ready or not items:
                if items and owned is not None:
                    # Fetched before the hold took effect: fetch them again later.
                    await self.hooks.seek(TopicPartition(tp.topic, tp.partition), items[0].offset)
                continue
            key = TopicPartition(tp.topic, tp.partition)
            # Re-fetched after a seek: skip what is done, or handed to a step already.
            start = max(self.next_offset.get(key, -1), self._handed.get(key, -1))
            if start > items[0].offset:
                items = [r for r in items if r.offset >= start]
                if not items:
                    continue
            self._handed[key] = items[-1].offset + 1
            by_partition.setdefault(tp.partition, {})[tp.topic] = items
        if by_partition:
            self._stats.records += sum(len(i) for t in by_partition.values() for i in t.values())
            for partition, by_topic in by_partition.items():
                pending = self._pending.setdefault(partition, {})
                for topic, items in by_topic.items():
                    pending.setdefault(topic, []).extend(items)
                self._pending_records += sum(len(i) for i in by_topic.values())
                self._kick(partition)
            self._hold_back()
            self._stats.maybe_log()

    def _waiting(self, partition: int) -> int:
        return sum(len(i) for i in self._pending.get(partition, {}).values())

    def _hold_back(self) -> None:
        """Back-pressure, per partition: stop fetching a partition with its next step's
        worth of records waiting (or any waiting, while too many wait in all).

        Never a wait in the loop: it holds the engine's lock, and a partition whose step
        fails for ever (retrying) would stop every other partition of the worker.
        """
        over = self._pending_records > _MAX_PENDING_RECORDS
        for partition in list(self._pending):
            if partition in self._held_back:
                continue
            waiting = self._waiting(partition)
            if waiting >= _MAX_PENDING_PER_PARTITION or (over and waiting):
                self._held_back.add(partition)
                self.hooks.hold(TopicPartition(t, partition) for t in self.topic_order)

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
            owned = self.owned.get(partition)
            if owned is None or not owned.ready or owned.latched is not None:
                continue  # held for another reason (fenced, latched): stays held
            self.hooks.release(
                TopicPartition(t, partition)
                for t in self.topic_order
                if t not in self.usage_topics or owned.plans_caught_up
            )

    def _kick(self, partition: int) -> None:
        """Start the partition's next step if none is in flight.

        One step at a time per partition (the next decides on the state the previous
        one applied), but steps of different partitions overlap, and records that
        arrive for a busy partition wait to become its next (bigger) step while the
        loop goes on with the other partitions.
        """
        if self._busy(partition) or not self._accepting or self._stopping:
            return
        waiting = self._pending.pop(partition, None)
        if not waiting:
            return
        owned = self.owned.get(partition)
        if owned is None or not owned.ready or owned.latched is not None:
            # The partition's last step was abandoned (fenced): these records come after
            # it, and committing them would commit past it. They are fetched again from
            # the committed offsets when the partition is assigned again.
            self._pending_records -= sum(len(i) for i in waiting.values())
            return
        by_topic = _take(waiting, _MAX_STEP_RECORDS)
        if waiting:
            self._pending[partition] = waiting  # the rest makes the step after
        self._pending_records -= sum(len(i) for i in by_topic.values())
        task = asyncio.ensure_future(self._step(partition, by_topic))
        self._inflight[partition] = task
        task.add_done_callback(functools.partial(self._step_done, partition))

    def _step_done(self, partition: int, task: asyncio.Future[None]) -> None:
        if self._inflight.get(partition) is task:
            del self._inflight[partition]
        self._kick(partition)
        self._release_back_pressure()

    async def _step(self, partition: int, by_topic: dict[str, list[Any]]) -> None:
        try:
            await self._step_isolating(partition, by_topic)
        except Exception as exc:  # noqa: BLE001 - the engine itself failed: stop
            logger.exception("partition %d: step raised; stopping the worker", partition)
            self.failed = exc
            await self.hooks.crash(exc)

    async def _step_isolating(
        self, partition: int, by_topic: dict[str, list[Any]], fold: bool = True
    ) -> bool:
        """Run the step; when it is poisoned, run its halves, down to the record at fault.

        Retrying a poisoned step as it is would stall the partition for ever (contract 4:
        nothing a producer sends may). Halving costs a few extra steps only when a step
        fails this way; every record but the one at fault is processed as usual, in order.
        Returns False when the step was abandoned (partition lost, or stopping).
        ``fold``: whether a background slice may ride in the step (never in the halves
        of a poisoned step: a slice is never what narrowing looks for).
        """
        try:
            return await self._step_unguarded(partition, by_topic, fold)
        except Poison as exc:
            count = sum(len(items) for items in by_topic.values())
            if count > 1:
                logger.warning(
                    "partition %d: a step of %d records failed for good (%s); "
                    "narrowing it down to the record at fault",
                    partition,
                    count,
                    exc,
                )
                first, second = _halves(by_topic)
                return await self._step_isolating(
                    partition, first, fold=False
                ) and await self._step_isolating(partition, second, fold=False)
            return await self._reject(partition, by_topic, exc)

    async def _reject(self, partition: int, by_topic: dict[str, list[Any]], exc: Poison) -> bool:
        """Dead-letter the one record of ``by_topic``, which cannot be processed."""
        [(topic, [record])] = by_topic.items()
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        reason = f"unprocessable: {cause!r}"
        logger.error(
            "partition %d: %s[%d]@%d cannot be processed (%r); dead-lettered",
            partition,
            topic,
            partition,
            record.offset,
            cause,
        )
        handler = self.handlers[topic]
        offsets = {TopicPartition(topic, partition): record.offset + 1}
        owned = self.owned[partition]

        def decide(step: Step) -> None:
            handler.reject(step, topic, record, reason)

        try:
            done = await self._commit_step(owned, decide, offsets)
        except Poison:
            # Not even its dead letter can be written: move past it, loudly.
            logger.error(
                "partition %d: %s[%d]@%d skipped: its dead letter was refused too",
                partition,
                topic,
                partition,
                record.offset,
            )
            done = await self._commit_step(owned, lambda step: None, offsets)
        if done:
            self.next_offset.update(offsets)
        return done

    async def _step_unguarded(
        self, partition: int, by_topic: dict[str, list[Any]], fold: bool = True
    ) -> bool:
        owned = self.owned[partition]
        offsets = {
            TopicPartition(topic, partition): items[-1].offset + 1
            for topic, items in by_topic.items()
        }
        background = self._slice_to_fold(owned) if fold else None

        def decide(step: Step) -> None:
            if background is not None:
                # First, so the slice sees the state its store holds, as a slice step of
                # its own just before this one would; the records then see its writes.
                try:
                    background.run_slice(step)
                except Exception as exc:
                    if isinstance(exc, MemoryError) or _environmental(exc):
                        raise  # the machine, not the slice: retried (or the worker stops)
                    raise _SliceFailed from exc
            for topic in self.topic_order:
                items = by_topic.get(topic)
                if items:
                    self.handlers[topic].process(step, topic, items)

        try:
            done = await self._commit_step(owned, decide, offsets)
        except _SliceFailed as failed:
            self._suspend_background(owned, failed.__cause__)
            background = None
            done = await self._commit_step(owned, decide, offsets)
        except Poison as poisoned:
            if background is None:
                raise
            # Kafka refused the step for good, and a slice rode in it: the slice's output
            # may be what it refused (a message too large for its topic). Redo the records
            # alone; a Poison now is theirs (narrowed without slices), else the slice's.
            background = None
            done = await self._commit_step(owned, decide, offsets)
            if done:
                self._suspend_background(owned, poisoned)
        if done:
            self.next_offset.update(offsets)
            self._background_due.add(partition)
            if background is not None:
                self._last_slice[partition] = time.monotonic()
                owned.background_backoff_s = 0.0
            return True
        return False

    def _slice_to_fold(self, owned: Owned) -> Background | None:
        """The background work to run at the start of ``owned``'s next usage step, if any:
        pending, and the partition's last slice :data:`FOLD_EVERY_S` old."""
        background = self.background
        if (
            background is None
            or owned.partition not in self._background_due
            or not owned.plans_caught_up
            or owned.background_suspended
            or owned.latched is not None
        ):
            return None
        now = time.monotonic()
        last = self._last_slice.setdefault(owned.partition, now)
        if now - last < FOLD_EVERY_S:
            return None
        if not background.pending(owned.store, owned.partition):
            self._last_slice[owned.partition] = now  # nothing to do: look again later
            return None
        return background

    def _suspend_background(self, owned: Owned, cause: BaseException | None) -> None:
        # No record to set aside here: stop this partition's background work for a while
        # and keep its usage going (contract 4: nothing stalls it). Then try again: what
        # failed may have been passing (a topic's settings, an account since fixed), and
        # closed periods wait for the passes to end. The wait doubles while it fails.
        backoff = owned.background_backoff_s
        backoff = (
            BACKGROUND_RETRY_FIRST_S if backoff <= 0 else min(BACKGROUND_RETRY_MAX_S, 2 * backoff)
        )
        owned.background_backoff_s = backoff
        owned.background_retry_at = self.clock() + backoff
        owned.background_suspended = True
        logger.error(
            "partition %d: background work failed for good (%r); suspended, tried again in %.0fs",
            owned.partition,
            cause,
            backoff,
        )

    def _resume_background(self) -> None:
        """Try suspended background work again once its backoff has passed."""
        now: float | None = None
        for owned in self.owned.values():
            if not owned.background_suspended:
                continue
            now = self.clock() if now is None else now
            if now >= owned.background_retry_at:
                owned.background_suspended = False
                self._background_due.add(owned.partition)
                logger.info("partition %d: trying suspended background work again", owned.partition)

    def _busy(self, partition: int) -> bool:
        task = self._inflight.get(partition)
        return task is not None and not task.done()

    def _idle(self, partition: int) -> bool:
        """No step in flight and no records waiting for one."""
        return not self._busy(partition) and partition not in self._pending

    async def _drain_inflight(self) -> None:
        """Drop records waiting for a step (they are fetched again from the committed
        offsets after the rebalance or restart) and wait for the steps in flight."""
        self._pending.clear()
        self._pending_records = 0
        self._handed.clear()  # what waited is fetched again: it must not be skipped
        self._held_back.clear()  # the assignment holds, then releases, every input anew
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def _run_background(self) -> None:
        background = self.background
        if background is None:
            self._background_due.clear()
            return
        for partition in sorted(self._background_due):
            owned = self.owned.get(partition)
            if (
                owned is None
                or not owned.ready
                or not owned.plans_caught_up
                or owned.background_suspended
                or owned.latched is not None
            ):
                self._background_due.discard(partition)
                continue
            if not self._idle(partition):
                continue  # usage first; the slice comes when the partition is idle
            self._background_due.discard(partition)
            if not background.pending(owned.store, partition):
                continue
            task = asyncio.ensure_future(self._slice(owned, background))
            self._inflight[partition] = task
            task.add_done_callback(functools.partial(self._step_done, partition))

    async def _slice(self, owned: Owned, background: Background) -> None:
        try:
            if await self._commit_step(owned, background.run_slice, {}):
                self._background_due.add(owned.partition)
                self._last_slice[owned.partition] = time.monotonic()
                owned.background_backoff_s = 0.0
        except Poison as exc:
            self._suspend_background(owned, exc)
        except Exception as exc:  # noqa: BLE001 - a bug in background work: stop
            logger.exception("partition %d: background step raised", owned.partition)
            self.failed = exc
            await self.hooks.crash(exc)

    async def _commit_step(
        self,
        owned: Owned,
        decide: Callable[[Step], None],
        offsets: Mapping[TopicPartition, int],
    ) -> bool:
        """Decide, commit to Kafka, then apply to RocksDB; retry transient failures.

        Returns False when the step was abandoned (partition lost, or stopping).
        """
        attempt = 0
        generation = self.generation
        while True:
            started = time.perf_counter()
            try:
                # Begun before deciding: the transaction's first round trips overlap the
                # rules (engine.committers). The targets of the partition's last step are
                # the likely ones of this one.
                # Taken, not read: a failed step forgets them (a deleted topic among them
                # would fail every step after it); a committed one sets them again.
                await self.committer.begin(
                    owned.partition, offsets, self._likely.pop(owned.partition, ())
                )
                step = Step(owned.partition, StepState(owned.store), self.now_ms())
                try:
                    decide(step)
                    messages, targets = self._with_changelogs(step)
                except _SliceFailed:
                    owned.store.objects.clear()  # the slice may have changed cached objects
                    raise
                except Exception as exc:  # noqa: BLE001 - sorted below: the machine, or the records
                    owned.store.objects.clear()  # a handler may have changed cached objects
                    if isinstance(exc, MemoryError):
                        raise  # not the records' fault, nor likely to pass: stop the worker
                    if _environmental(exc):
                        raise _Unavailable from exc
                    raise _Undecided from exc  # deterministic: the same records fail again
                commit_started = time.perf_counter()
                written = await self.committer.commit(owned.partition, messages, offsets)
                commit_s = time.perf_counter() - commit_started
            except (_Undecided, _SliceFailed, _Unavailable, MemoryError) as failed:
                try:
                    await self.committer.abort(owned.partition)
                except Fenced as exc:  # the producer could not abort: it is lost
                    return self._give_up(owned, exc)
                if isinstance(failed, _Undecided):
                    cause = failed.__cause__
                    raise Poison(f"deciding failed: {cause!r}") from cause
                if not isinstance(failed, _Unavailable):
                    raise
                attempt += 1
                self.unavailable_steps += 1
                if not await self._back_off(owned, failed.__cause__ or failed, attempt, generation):
                    return False
                continue
            except Fenced as exc:
                return self._give_up(owned, exc)
            except (StepFailed, OSError, Exception) as exc:  # noqa: BLE001
                # A handler may have changed cached objects in place: drop them all.
                owned.store.objects.clear()
                if _refused(exc):
                    # The committer aborted and set its sequence numbers back: the halves
                    # go on with the same producer (never a new one: see _give_up).
                    raise Poison(f"Kafka refused a message: {exc!r}") from exc
                attempt += 1
                if not await self._back_off(owned, exc, attempt, generation):
                    return False
                continue
            if attempt:
                logger.info(
                    "partition %d: step committed after %d failed attempts",
                    owned.partition,
                    attempt,
                )
            self._likely[owned.partition] = tuple(messages)
            changelog_offsets = {
                name: written[target] for target, name in targets.items() if target in written
            }
            updates = step.state.updates()
            try:
                owned.store.apply(updates, changelog_offsets)
            except Exception as exc:  # noqa: BLE001 - Kafka has the step, the store has not
                await self._latch(owned, exc)
                return False
            objects = step.state.objects
            owned.store.objects.forget(
                (t, k) for t, changes in updates.items() for k in changes if (t, k) not in objects
            )
            owned.store.objects.update(objects)
            for callback in step.after_commit:
                callback()
            elapsed = time.perf_counter() - started
            self._stats.add(sum(len(m) for m in messages.values()), elapsed, commit_s)
            if self.on_step is not None:
                self.on_step(owned.partition, len(messages), elapsed)
            return True

    def _give_up(self, owned: Owned, exc: Fenced) -> bool:
        """The partition's producer is lost (fenced, or unable to go on): stop the partition
        until the group assigns it again, and ask the group to. Returns False (abandoned).

        Fenced: a producer with this partition's transactional id started after ours.
        Either another worker took the partition (a rebalance is coming, or this worker
        was dropped from the group), or the broker aborted a transaction that outlived
        transaction.timeout.ms and bumped the epoch with nobody else around. In the second
        case no rebalance would ever come and the partition would stay abandoned (found
        under load: a lone worker unready for good). So ask the group: the next assignment
        says who owns it, and an owner opens (fences with) a new producer before its next
        step. Never a new producer here: its InitProducerId would fence whoever owns the
        partition now, and a zombie cannot tell it is one (Kafka Streams' "task migrated").
        Nothing more of it until then: what waits would commit past this step.
        """
        owned.store.objects.clear()
        owned.ready = False
        self.hooks.hold(TopicPartition(t, owned.partition) for t in self.topic_order)
        waiting = self._pending.pop(owned.partition, None) or {}
        self._pending_records -= sum(len(i) for i in waiting.values())
        asked = self.hooks.rejoin()
        logger.error(
            "partition %d: fenced (%s); %s",
            owned.partition,
            exc,
            "stopped it and asked the group for a new assignment"
            if asked
            else "stopped it until the next assignment",
        )
        return False

    def _owns(self, generation: int) -> bool:
        """Whether the step begun under ``generation`` may still go on."""
        return not self._stopping and generation == self.generation and self._accepting

    async def _back_off(
        self, owned: Owned, exc: BaseException, attempt: int, generation: int
    ) -> bool:
        """Wait before trying a failed step again, with the same producer (a producer the
        group's new owner fenced meanwhile is refused by the broker). False: abandon it
        (partition lost, or stopping), before the wait or after it."""
        if not self._owns(generation):
            logger.warning(
                "partition %d: step abandoned (%r); it will be redone from the committed offsets",
                owned.partition,
                exc,
            )
            return False
        delay = min(_RETRY_MAX_S, 0.2 * 2**attempt)
        # Once per streak: a broker or disk away for minutes fails every attempt.
        logger.log(
            logging.WARNING if attempt == 1 else logging.DEBUG,
            "partition %d: step failed (%r); local state untouched, retrying every %.1fs "
            "at most (attempt %d)",
            owned.partition,
            exc,
            _RETRY_MAX_S,
            attempt,
        )
        try:
            await asyncio.wait_for(self._stop_requested.wait(), delay)
        except TimeoutError:
            pass
        # Again after the wait: a rebalance or a stop may have come meanwhile.
        if not self._owns(generation):
            logger.warning(
                "partition %d: step abandoned after %d failed attempts; it will be redone "
                "from the committed offsets",
                owned.partition,
                attempt,
            )
            return False
        return True

    async def _latch(self, owned: Owned, exc: BaseException) -> None:
        """RocksDB refused a step that Kafka committed: the store is now behind Kafka.

        A next step would decide without this one's writes and overwrite them in the
        changelog, so the partition never steps again here: its inputs are held, its
        waiting records dropped, its background stopped, and the worker stopped with an
        error. Restarted, it restores the store from the offsets it recorded (the failed
        batch wrote none of them), which brings it level with Kafka.
        """
        owned.latched = exc
        owned.ready = False
        owned.store.objects.clear()
        self.hooks.hold(TopicPartition(t, owned.partition) for t in self.topic_order)
        waiting = self._pending.pop(owned.partition, None) or {}
        self._pending_records -= sum(len(i) for i in waiting.values())
        self._background_due.discard(owned.partition)
        logger.critical(
            "partition %d: its step committed to Kafka but the local store refused it (%r); "
            "the partition is stopped and the worker stops: restarted, it restores the "
            "partition from its changelogs",
            owned.partition,
            exc,
        )
        self.failed = exc
        await self.hooks.crash(exc)

    def _with_changelogs(self, step: Step) -> tuple[Messages, dict[tuple[str, int], str]]:
        """The step's messages plus its changelog records (one per touched key)."""
        messages: Messages = dict(step.messages)
        targets: dict[tuple[str, int], str] = {}
        for column, changes in step.state.updates().items():
            spec = self._changelogged.get(column)
            if spec is None or not changes:
                continue  # a local index column: rebuilt from its table's changelog
            target = (spec.changelog_topic(self.app_id), step.partition)
            if spec.changelog == "segments":
                if spec.encode_segment is None:
                    raise TypeError(f"table {spec.name}: segments need encode_segment")
                values = spec.encode_segment(changes)
                if not values:
                    continue
                messages[target] = [(os.urandom(8), value) for value in values]
            else:
                messages[target] = list(changes.items())  # type: ignore[arg-type]  # None: tombstone
            targets[target] = spec.name
        return messages, targets
