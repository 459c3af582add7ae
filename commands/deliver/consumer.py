"""An endpoint's consumer loop: read its event topics and retry tiers, deliver, commit.

The consumer is in the endpoint's own group. A retry tier's partition is paused while its
head record is not due (a tier's records share one delay, so they are nearly in due order)
and resumed when it is; the consumer keeps polling meanwhile, so it stays in its group
however long the wait. A new group starts at the end of the event topics (an endpoint added
today is not sent last week's events) and at the beginning of its tiers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from commands.deliver.batches import Batch
from commands.deliver.delivery import Deliverer, Inbound
from domain.delivery.records import retry_state

logger = logging.getLogger(__name__)

POLL_MS = 500
BACKLOG_EVERY_S = 5.0
#: Longest a fetch's deliveries may run before the unfinished ones are left to the next
#: fetch: well within the consumer's max_poll_interval_ms (run.MAX_POLL_INTERVAL_MS, 15 min).
BATCH_DEADLINE_S = 5 * 60.0
#: Pause after a batch whose outcome could not be written to Kafka, before reading again.
FAILURE_PAUSE_S = 1.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, loop: EndpointLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        for tp in revoked:
            self.loop.paused.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self.loop.consumer
        fresh = []
        for tp in assigned:
            if tp.topic in self.loop.event_topics and await consumer.committed(tp) is None:
                fresh.append(tp)
        if fresh:
            # A new endpoint starts at the end (not the retained backlog), and says so at
            # once: committed, that start survives a crash before the first delivery's commit
            # (else a restart would seek to the end again, past the events published meanwhile).
            await consumer.seek_to_end(*fresh)
            await consumer.commit({tp: await consumer.position(tp) for tp in fresh})
        self.loop.joined = True


class EndpointLoop:
    """Delivers one endpoint's records until ``stop`` is set."""

    def __init__(
        self,
        deliverer: Deliverer,
        consumer: AIOKafkaConsumer,
        event_topics: Sequence[str],
        *,
        concurrency: int,
        batch_size: int,
        stop: asyncio.Event,
        grace_s: float,
        now_ms: Callable[[], int],
    ) -> None:
        self.deliverer = deliverer
        self.consumer = consumer
        self.event_topics = frozenset(event_topics)
        self.concurrency = asyncio.Semaphore(concurrency)
        self.batch_size = batch_size
        self.stop = stop
        self.grace_s = grace_s
        self.now_ms = now_ms
        self.paused: dict[TopicPartition, int] = {}
        self.joined = False
        self._next_backlog = 0.0

    @property
    def name(self) -> str:
        return self.deliverer.endpoint.name

    def subscribe(self) -> None:
        """Subscribe to the event topics and the endpoint's tiers."""
        topics = sorted(self.event_topics | set(self.deliverer.tier_topics))
        self.consumer.subscribe(topics=topics, listener=_Listener(self))

    async def run(self) -> None:
        """Fetch, deliver and commit until stopped; then commit what finished."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            self._resume_due()
            timeout_ms = POLL_MS
            if self.paused:
                timeout_ms = max(10, min(POLL_MS, min(self.paused.values()) - self.now_ms()))
            try:
                fetched = await self.consumer.getmany(
                    timeout_ms=timeout_ms, max_records=self.batch_size
                )
            except KafkaError as exc:
                logger.warning("endpoint %s: fetch failed: %r", self.name, exc)
                await asyncio.sleep(FAILURE_PAUSE_S)
                continue
            records = self._due(fetched)
            if records:
                await self._deliver(records)
            if loop.time() >= self._next_backlog:
                self._next_backlog = loop.time() + BACKLOG_EVERY_S
                await self._measure_backlog()

    def _resume_due(self) -> None:
        now = self.now_ms()
        for tp, due in list(self.paused.items()):
            if due <= now:
                del self.paused[tp]
                if tp in self.consumer.assignment():
                    self.consumer.resume(tp)

    def _due(self, fetched: dict[TopicPartition, list[object]]) -> list[Inbound]:
        """The records to deliver now; a tier partition whose next record is not due is
        rewound to it and paused until then."""
        now = self.now_ms()
        out: list[Inbound] = []
        for tp, messages in fetched.items():
            tier = self.deliverer.is_tier(tp.topic)
            for message in messages:
                headers = tuple(message.headers or ())  # type: ignore[attr-defined]
                if tier:
                    try:
                        due = retry_state(headers).due_ms
                    except ValueError:
                        due = 0
                    if due > now:
                        self.consumer.seek(tp, message.offset)  # type: ignore[attr-defined]
                        self.consumer.pause(tp)
                        self.paused[tp] = due
                        break
                out.append(
                    Inbound(
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=message.offset,  # type: ignore[attr-defined]
                        key=message.key,  # type: ignore[attr-defined]
                        value=message.value,  # type: ignore[attr-defined]
                        headers=headers,
                        timestamp_ms=message.timestamp,  # type: ignore[attr-defined]
                    )
                )
        return out

    async def _deliver(self, records: list[Inbound]) -> None:
        batch = Batch(records, self.deliverer.deliver, self.concurrency)
        work = asyncio.create_task(batch.run())
        stopping = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait(
                {work, stopping}, timeout=BATCH_DEADLINE_S, return_when=asyncio.FIRST_COMPLETED
            )
            if not work.done():
                # Stopping: give the attempts in flight a moment. Or the batch outlived its
                # deadline (a hanging endpoint and one account's long chain): what finished
                # is committed and the rest read again, so the consumer keeps polling in time
                # to stay in its group and every pass makes progress.
                grace = self.grace_s if self.stop.is_set() else 0.0
                try:
                    await asyncio.wait_for(asyncio.shield(work), grace)
                except TimeoutError:
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
                    if not self.stop.is_set():
                        logger.warning(
                            "endpoint %s: a fetch's deliveries outlived %.0fs; %d of %d "
                            "finished, the rest are read again",
                            self.name,
                            BATCH_DEADLINE_S,
                            len(batch.done),
                            len(records),
                        )
        finally:
            stopping.cancel()
        commit, rewind = batch.settle()
        if commit:
            offsets = {TopicPartition(t, p): o for (t, p), o in commit.items()}
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:
                # Partitions moved to another deliverer: it reads them from the last commit.
                logger.warning(
                    "endpoint %s: commit failed (%r); records may be resent", self.name, exc
                )
        if not self.stop.is_set():
            assigned = self.consumer.assignment()
            for (topic, partition), offset in rewind.items():
                tp = TopicPartition(topic, partition)
                if tp in assigned:
                    self.consumer.seek(tp, offset)
            if batch.failed:
                await asyncio.sleep(FAILURE_PAUSE_S)

    async def _measure_backlog(self) -> None:
        """The tiers' records past this consumer's position, from the brokers' end offsets
        (a paused partition's high watermark is not refreshed by fetches)."""
        gauge = self.deliverer.metrics.retry_backlog
        labels = dict(
            zip(self.deliverer.tier_topics, self.deliverer.schedule.labels(), strict=True)
        )
        totals = dict.fromkeys(labels.values(), 0)
        tiers = [tp for tp in self.consumer.assignment() if tp.topic in labels]
        try:
            ends = await self.consumer.end_offsets(tiers) if tiers else {}
            for tp in tiers:
                position = await self.consumer.position(tp)
                totals[labels[tp.topic]] += max(0, ends[tp] - position)
        except (KafkaError, KeyError) as exc:  # a rebalance or a broker away: next time
            logger.debug("endpoint %s: retry backlog not measured: %r", self.name, exc)
            return
        for tier, total in totals.items():
            gauge.labels(endpoint=self.name, tier=tier).set(total)
