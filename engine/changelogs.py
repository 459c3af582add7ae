"""Reading changelogs into partition stores: restore before a partition is processed,
and standby replicas that keep following partitions another worker owns.

One consumer (no group, ``read_committed``, assign mode) serves both. A store
resumes from the changelog offsets it recorded (or from the beginning when it has
none), and a restore is finished when the consumer's *position* has reached the
end offset taken at its start: under read_committed, transaction markers and
aborted records take offsets that are never delivered as records, so waiting for
the record at ``end - 1`` (what Faust does) can wait forever. The end offset is
the last stable offset, read fresh from the broker (Faust reads a cached value
that is -1 until the first fetch: its ConsistencyError and empty restores).
Callers fence the partition's previous producer first, so a dead worker's open
transaction is aborted and does not hold the last stable offset back.

Each fetched chunk is applied as one write batch per store, data and changelog
offsets together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.progress import EVERY_S, POLL_S, Progress, await_with_progress
from state.store import PartitionStore, StoreClosed
from state.table import TableSpec, Writes

logger = logging.getLogger(__name__)

_FETCH_MS = 200
_MAX_RECORDS = 50_000
#: How often a standby store's sync time is moved on, at most (milliseconds).
SYNC_EVERY_MS = 30_000


def wall_ms() -> int:
    """Wall-clock time in milliseconds (the brokers' time, not the worker's domain clock)."""
    return int(time.time() * 1000)


async def _learn_topics(consumer: AIOKafkaConsumer, topics: set[str]) -> None:
    """Have ``consumer``'s metadata cover ``topics``, with one metadata request.

    aiokafka's offset lookup learns of one unknown topic per try and waits its retry
    backoff (100 ms) before the next: the end offsets of a fresh worker's 14 changelogs
    took 1.4 s, and those of the plans topics 0.2 s more, at every start (issue 20). Only
    a hint: a topic still unknown after it is learnt as before, by the lookup itself."""
    client = getattr(consumer, "_client", None)
    if client is None:
        return
    cluster = client.cluster
    unknown = [t for t in sorted(topics) if cluster.partitions_for_topic(t) is None]
    if unknown:
        # Each call adds its topic; the first wakes the one metadata update they all await.
        await asyncio.gather(*(client.add_topic(t) for t in unknown))


@dataclass(slots=True)
class _Follow:
    store: PartitionStore
    spec: TableSpec
    #: Position to reach (active restore); None: follow forever (standby).
    target: int | None = None
    done: asyncio.Future[None] | None = None
    restored: int = 0


@dataclass(slots=True)
class RestoreReport:
    """What a restore read: records per table, and how long it took."""

    records: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _next_offset(follow: _Follow) -> int:
    stored = follow.store.changelog_offset(follow.spec.name)
    return 0 if stored is None else stored + 1


class ChangelogReader:
    """Restores active partitions and follows standby ones, from one consumer."""

    def __init__(
        self,
        consumer_factory: Callable[[], AIOKafkaConsumer],
        app_id: str,
        specs: Sequence[TableSpec],
        now_ms: Callable[[], int],
        wall_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self._factory = consumer_factory
        self._wall_ms = wall_ms
        self._app_id = app_id
        self._specs = tuple(specs)
        self._now_ms = now_ms
        self._consumer: AIOKafkaConsumer | None = None
        # End offsets come from a consumer of their own: the reading consumer's assign()
        # drops every other topic from its metadata, so each end_offsets() of the plans
        # topic there waited for a metadata refresh (~1 s of every takeover).
        self._offsets: AIOKafkaConsumer | None = None
        self._follows: dict[TopicPartition, _Follow] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._restored: dict[str, int] = {}
        #: A standby whose sync time is older than this (ms) is not moved on: it may have
        #: missed deletions compaction removed (a paused process, a reader far behind),
        #: so it stays stale and is wiped when taken up. None: no such check.
        self.stale_after_ms: int | None = None
        #: Per standby store, when its sync time was last moved on.
        self._synced_at: weakref.WeakKeyDictionary[PartitionStore, int] = (
            weakref.WeakKeyDictionary()
        )
        #: Restore progress: a log line at most this often, figures looked at this often.
        self.progress_every_s = EVERY_S
        self.progress_poll_s = POLL_S

    def topic_partitions(self, partition: int) -> list[tuple[TopicPartition, TableSpec]]:
        """Changelog partitions (and their tables) of input ``partition``."""
        return [
            (TopicPartition(s.changelog_topic(self._app_id), partition), s) for s in self._specs
        ]

    async def start(self) -> None:
        """Start the consumer and the reading loop."""
        consumer = self._factory()
        await consumer.start()
        self._consumer = consumer
        offsets = self._factory()
        await offsets.start()
        self._offsets = offsets
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop reading (pending restores fail) and close the consumer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for follow in self._follows.values():
            if follow.done is not None and not follow.done.done():
                follow.done.set_exception(asyncio.CancelledError())
        self._follows.clear()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        offsets, self._offsets = self._offsets, None
        if offsets is not None:
            await offsets.stop()

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Fresh last stable offsets of ``tps`` (any topics) from the broker."""
        if not tps or self._offsets is None:
            return {}
        await _learn_topics(self._offsets, {tp.topic for tp in tps})
        # Shielded: a rebalance cancels the preparation that asked, and an offset request
        # cancelled half-way could leave the shared consumer waiting on it; let it finish.
        ends = await asyncio.shield(self._offsets.end_offsets(list(tps)))
        return {tp: int(end) for tp, end in ends.items()}

    async def restore(self, stores: Mapping[int, PartitionStore]) -> RestoreReport:
        """Bring every store of ``stores`` (partition -> store) up to its changelogs' end."""
        started = time.monotonic()
        report = RestoreReport()
        if not stores:
            return report
        if self._task is None or self._task.done():
            raise RuntimeError("the changelog reader is not running; see its error above")
        async with self._lock:
            tps = [tp for p in stores for tp, _ in self.topic_partitions(p)]
            # Taken before the end offsets: once read up to them, a store holds every
            # record written before this moment (records past them are newer, or in
            # transactions then open, which compaction does not touch).
            synced_ms = self._wall_ms()
            ends = await self.end_offsets(tps)
            waits: list[asyncio.Future[None]] = []
            loop = asyncio.get_running_loop()
            for partition, store in stores.items():
                for tp, spec in self.topic_partitions(partition):
                    end = ends.get(tp, 0)
                    stored = store.changelog_offset(spec.name)
                    if stored is None and end <= 0:
                        continue  # an empty changelog: nothing to read
                    if stored is not None and stored + 1 >= end:
                        if stored + 1 > end:
                            logger.warning(
                                "%s: store holds offset %d but the changelog ends at %d "
                                "(recreated topic, or a transaction still open on it)",
                                tp,
                                stored,
                                end,
                            )
                        continue
                    done: asyncio.Future[None] = loop.create_future()
                    waits.append(done)
                    self._follows[tp] = _Follow(store, spec, end, done)
            self._changed.set()
        if waits:
            mine = [f for f in self._follows.values() if f.done in waits]
            total = sum((f.target or 0) - _next_offset(f) for f in mine)
            progress = Progress(
                f"restoring partitions {sorted(stores)}", time.monotonic, self.progress_every_s
            )

            def figures() -> tuple[int, int]:
                # Records applied, against offsets to read: transaction markers take
                # offsets too, so the share is a slight underestimate until the end.
                done = sum(f.restored for f in mine)
                return done, max(0, total - done)

            try:
                await await_with_progress(
                    asyncio.gather(*waits), progress, figures, logger, self.progress_poll_s
                )
            except BaseException:
                # Cancelled (a rebalance): stop writing into these stores now; the
                # partition's next owner, maybe this worker again, restores anew.
                for tp, follow in list(self._follows.items()):
                    if follow.done in waits:
                        del self._follows[tp]
                self._changed.set()
                raise
        for store in stores.values():
            store.mark_synced(synced_ms)
        report.seconds = time.monotonic() - started
        report.records = dict(self._restored)
        self._restored.clear()
        return report

    def follow(self, partition: int, store: PartitionStore) -> None:
        """Keep ``store`` (a standby) following its changelogs until :meth:`unfollow`."""
        if store.synced_ms is None and not store.has_offsets():
            # Empty, so read from the beginning: it holds no value a deletion it misses
            # could leave behind, and what it reads from now on was in the topic now.
            store.mark_synced(self._wall_ms())
        for tp, spec in self.topic_partitions(partition):
            self._follows[tp] = _Follow(store, spec)
        self._changed.set()

    def unfollow(self, partition: int) -> None:
        """Stop following ``partition`` (it became active here, or went elsewhere)."""
        for tp, _ in self.topic_partitions(partition):
            follow = self._follows.pop(tp, None)
            if follow is not None and follow.done is not None and not follow.done.done():
                follow.done.cancel()
        self._changed.set()

    def following(self) -> set[int]:
        """Partitions followed as standbys."""
        return {tp.partition for tp, f in self._follows.items() if f.target is None}

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        # A snapshot: follow(), unfollow() and restore() change the follows while a seek
        # awaits (an await here once met a follow gone under it: KeyError, and the reading
        # loop died, so every later restore waited for ever). _changed is set again then.
        # After each await, a follow no longer there (or replaced) is skipped: the store
        # of an unfollowed standby is closed right after (issue 16 item 13: three workers
        # started at once died of KeyError('__meta__') here), and _changed is set again,
        # so the next pass seeks from the follows as they are then.
        follows = list(self._follows.items())
        consumer.assign([tp for tp, _ in follows])
        for tp, follow in follows:
            if self._follows.get(tp) is not follow:
                continue
            try:
                stored = follow.store.changelog_offset(follow.spec.name)
            except StoreClosed as exc:
                self._drop_closed(tp, follow, exc)
                continue
            if stored is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, stored + 1)

    def _drop_closed(self, tp: TopicPartition, follow: _Follow, exc: StoreClosed) -> None:
        """A followed store was closed without being unfollowed first: stop writing to it,
        and fail its restore (if any) rather than let it wait for ever."""
        if self._follows.get(tp) is follow:
            del self._follows[tp]
        if follow.done is not None and not follow.done.done():
            follow.done.set_exception(exc)
        logger.warning("%s: its store was closed while still followed; no longer read", tp)

    async def _run(self) -> None:
        try:
            await self._read()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Nothing could restore or follow any more: fail every waiting restore at once
            # (its partition's preparation then stops the worker) rather than hang.
            logger.exception("changelog reader failed")
            for follow in self._follows.values():
                if follow.done is not None and not follow.done.done():
                    follow.done.set_exception(exc)
            raise

    async def _read(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("changelog reader not started")
        while True:
            if self._changed.is_set():
                self._changed.clear()
                await self._reassign(consumer)
            if not self._follows:
                await self._changed.wait()
                continue
            batch = await consumer.getmany(timeout_ms=_FETCH_MS, max_records=_MAX_RECORDS)
            if self._changed.is_set():
                continue  # the assignment changed under the fetch: re-seek from the stores
            self._apply(batch)
            await self._mark_standbys_synced(consumer)
            for tp, follow in list(self._follows.items()):
                if follow.target is None:
                    continue
                if await consumer.position(tp) >= follow.target:
                    if self._follows.get(tp) is follow:  # not replaced while we awaited
                        del self._follows[tp]
                    if follow.done is not None and not follow.done.done():
                        follow.done.set_result(None)

    async def _mark_standbys_synced(self, consumer: AIOKafkaConsumer) -> None:
        """Move on the sync time of each standby store whose every changelog partition has
        been read up to the last stable offset of its latest fetch: the store then held
        every record written before that fetch was answered."""
        now = self._wall_ms()
        by_store: dict[PartitionStore, list[TopicPartition]] = {}
        for tp, follow in self._follows.items():
            if follow.target is None and now - self._synced_at.get(follow.store, 0) >= (
                SYNC_EVERY_MS
            ):
                by_store.setdefault(follow.store, []).append(tp)
        assigned = consumer.assignment()
        for store, tps in by_store.items():
            answered: list[int] = []
            for tp in tps:
                if tp not in assigned:
                    break
                lso = consumer.last_stable_offset(tp)
                at = consumer.last_poll_timestamp(tp)
                if lso is None or lso < 0 or at is None or at < 0:
                    break  # not fetched yet since it was assigned
                if await consumer.position(tp) < lso:
                    break
                answered.append(int(at))
            else:
                live = all(
                    (f := self._follows.get(tp)) is not None and f.store is store for tp in tps
                )
                at = min(answered) if answered else 0
                synced = store.synced_ms
                fresh = self.stale_after_ms is None or (
                    synced is not None and at - synced <= self.stale_after_ms
                )
                if live and answered and fresh and not store.closed:
                    store.mark_synced(at)
                    self._synced_at[store] = now

    def _apply(self, batch: Mapping[TopicPartition, Sequence[object]]) -> None:
        now_ms = self._now_ms()
        by_store: dict[int, tuple[PartitionStore, Writes, dict[str, int]]] = {}
        for tp, records in batch.items():
            follow = self._follows.get(tp)
            if follow is None or not records:
                continue
            store, spec = follow.store, follow.spec
            entry = by_store.get(id(store))
            if entry is None:
                entry = by_store[id(store)] = (store, {}, {})
            _, writes, offsets = entry
            if spec.changelog == "segments":
                if spec.restore_segment is None:
                    raise TypeError(f"table {spec.name}: segments need restore_segment")
                for record in records:
                    value = record.value  # type: ignore[attr-defined]
                    if value:
                        for column, changes in spec.restore_segment(value, now_ms).items():
                            writes.setdefault(column, {}).update(changes)
            else:
                changes = writes.setdefault(spec.name, {})
                for record in records:
                    changes[record.key] = record.value  # type: ignore[attr-defined]
            offsets[spec.name] = int(records[-1].offset)  # type: ignore[attr-defined]
            follow.restored += len(records)
            self._restored[spec.name] = self._restored.get(spec.name, 0) + len(records)
        for store, writes, offsets in by_store.values():
            store.objects.clear()  # decoded values no longer match what is stored
            try:
                store.apply(writes, offsets)
            except StoreClosed as exc:
                for tp, follow in list(self._follows.items()):
                    if follow.store is store:
                        self._drop_closed(tp, follow, exc)
