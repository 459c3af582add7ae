"""How a step reaches Kafka, under each processing guarantee.

Exactly-once: one transactional producer per input partition, with a *stable*
transactional id (``<app id>-step-<partition>``). Starting it (InitProducerId)
fences any zombie holding the same partition and aborts its open transaction, which
is also what lets the changelogs' last stable offset move on before we restore.
aiokafka has no KIP-447 (its TxnOffsetCommit is v0: no generation or member id),
so the per-partition id is what makes exactly-once safe across rebalances: the
scheme of Kafka Streams' first exactly-once version and of Faust itself.

A step's transaction: begin, every message (changelogs, events, dead letters,
re-keyed records) appended in bulk through ``create_batch``/``send_batch``, the
input offsets via ``send_offsets_to_transaction``, every delivery future checked
(aiokafka commits a transaction even when one of its batches failed), commit.
Any failure aborts and raises: the caller then leaves local state untouched.

The transaction is begun *before* the step decides (:meth:`Committer.begin`), with
the input offsets and the partitions the previous step wrote to. A commit is a chain
of round trips that aiokafka makes one after the other (AddPartitionsToTxn,
AddOffsetsToTxn, TxnOffsetCommit, then EndTxn once the batches are acknowledged);
begun early, the first three run while the rules decide, and the broker's
CONCURRENT_TRANSACTIONS retries (the previous transaction's markers still being
written) are waited out there too. What is left after deciding is the produce request
and EndTxn (the latency this saves: docs/benchmark.md). A partition added that the
step does not write to costs only a transaction marker.

A producer that cannot go on is *lost*, and :class:`Fenced` says so: fenced by a
newer one (``ProducerFenced``, or the ``IllegalOperation``/``AssertionError`` that a
producer whose sender died fenced raises next), in aiokafka's fatal state, an abort
that failed or did not end in time, a commit whose outcome is unknown (it did not end
within the transaction timeout), a batch whose fate is unknown. The committer never
starts a new producer for it on its own: a new InitProducerId would fence whoever owns
the partition now, and a worker cannot tell locally that it is a zombie. The engine
gives the partition up and asks the group for a new assignment; only preparing an
assignment opens a producer (Kafka Streams' "task migrated" handling in its first
exactly-once version). Any other failure is aborted, and the same producer (same
epoch) carries the retry: if another owner fenced it meanwhile, the broker refuses it.

A batch the broker refused (too large) advanced the client's sequence number of its
partition but not the broker's, which would make every later batch there fail as out
of order: after the abort the committer sets it back to what the broker holds (the
batches of a partition are sent one at a time, in order, so that is the sequence of the
first refused batch) instead of starting a new producer.

Every wait on the broker has a deadline, the producer's transaction timeout (past it the
broker aborts the transaction anyway): starting a producer (InitProducerId), a commit
(its deliveries and EndTxn) and an abort.

What this needs of aiokafka beyond its public API comes through :class:`ProducerInternals`
(implemented in :mod:`app.faust_internals`, the one module that reaches into libraries).

At-least-once: one idempotent producer; deliveries are awaited, then the offsets
are committed through the group's consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    BrokerResponseError,
    IllegalOperation,
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)

from engine.step import Messages

logger = logging.getLogger(__name__)

ProducerFactory = Callable[..., AIOKafkaProducer]


class ProducerInternals(Protocol):
    """What the committers need of aiokafka's producer beyond its public API
    (:class:`app.faust_internals.ProducerInternals`)."""

    def transaction_timeout_s(self, producer: AIOKafkaProducer) -> float | None:
        """``producer``'s transaction timeout, if it has one that can be read."""
        ...

    def add_partition(self, producer: AIOKafkaProducer, tp: TopicPartition) -> None:
        """Add ``tp`` to ``producer``'s open transaction ahead of its first batch."""

    def sequence_number(self, producer: AIOKafkaProducer, tp: TopicPartition) -> int:
        """The sequence number ``producer`` gives its next batch to ``tp``."""
        ...

    def set_sequence_number(self, producer: AIOKafkaProducer, tp: TopicPartition, seq: int) -> None:
        """Set ``producer``'s next sequence number for ``tp`` (a refused batch's)."""

    def unusable(self, producer: AIOKafkaProducer) -> bool:
        """Whether ``producer`` is in aiokafka's fatal state, or its sender ended."""
        ...

    def cancel_sender(self, producer: AIOKafkaProducer) -> asyncio.Future[Any] | None:
        """Cancel ``producer``'s sender task; returns it (None when it has none)."""
        ...


#: Commits plain consumer offsets (at-least-once).
OffsetCommit = Callable[[Mapping[TopicPartition, int]], Awaitable[None]]
#: (topic, partition) -> offset of the last message the step wrote there
Written = dict[tuple[str, int], int]


class StepFailed(Exception):
    """A step's Kafka part failed; its state was not applied."""


class Fenced(StepFailed):
    """This partition's producer is lost: another producer took its transactional id
    (we may be a zombie), or it is in a state only a new producer id gets out of. The
    partition must wait for a new assignment (whose preparation opens a new producer)."""


def _lost_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the producer is lost: fenced by a newer one, directly, or, once
    its sender task died fenced (aiokafka's FATAL_ERROR state), on its next send
    (IllegalOperation: "not in transaction") or state change (AssertionError: "Invalid
    state transition"). Other assertions (aiokafka asserts an unknown partition) are not."""
    if isinstance(exc, ProducerFenced | InvalidProducerEpoch | IllegalOperation | Fenced):
        return True
    return isinstance(exc, AssertionError) and "state transition" in str(exc)


#: The producer's transaction timeout when it has none we can read: aiokafka's default.
DEFAULT_TRANSACTION_TIMEOUT_S = 60.0


class Committer(Protocol):
    """Takes a step's messages and input offsets to Kafka, atomically where it can."""

    async def open(self, partition: int) -> None:
        """Get ready to commit steps of ``partition`` (fencing zombies first)."""

    async def close(self, partition: int) -> None:
        """``partition`` is no longer ours."""

    async def begin(
        self,
        partition: int,
        offsets: Mapping[TopicPartition, int],
        likely: Iterable[tuple[str, int]] = (),
    ) -> None:
        """Start ``partition``'s next step before it decides: its input ``offsets`` and
        the (topic, partition) targets it will ``likely`` write to."""

    async def abort(self, partition: int) -> None:
        """Give up the step begun on ``partition`` (deciding failed). Raises only
        :class:`Fenced`: the producer could not abort, it is lost."""

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> Written:
        """Send ``messages`` and commit ``offsets``; returns the last offsets written.

        After :meth:`begin`, ``offsets`` must be the ones given there.
        """
        ...

    async def stop(self) -> None:
        """Close every producer."""


async def _send(producer: AIOKafkaProducer, messages: Messages) -> list[tuple[Any, int, Any]]:
    """Append every message in bulk; returns ``(topic-partition, count, future)`` per batch."""
    sent: list[tuple[Any, int, Any]] = []
    for (topic, partition), items in messages.items():
        batch = producer.create_batch()
        count = 0
        for message in items:
            if len(message) == 2:
                key, value = message
                headers = None
            else:
                key, value, held = message
                headers = list(held)  # aiokafka's C batch builder takes headers as a list only
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(
                    (
                        (topic, partition),
                        count,
                        await producer.send_batch(batch, topic, partition=partition),
                    )
                )
                batch = producer.create_batch()
                count = 0
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise StepFailed(
                        f"a message of {len(value)} bytes for {topic} does not fit in a batch"
                    )
            count += 1
        if count:
            sent.append(
                (
                    (topic, partition),
                    count,
                    await producer.send_batch(batch, topic, partition=partition),
                )
            )
    return sent


class _Undelivered(StepFailed):
    """A batch failed. ``refused``: per (topic, partition), how many records of the
    step's batches there the broker appended before it refused one (None where a batch
    failed in a way that does not say whether it was appended)."""

    def __init__(self, message: str, refused: dict[tuple[str, int], int | None]) -> None:
        super().__init__(message)
        self.refused = refused


async def _delivered(sent: list[tuple[Any, int, Any]]) -> Written:
    """Wait for every batch; raise if any failed. Returns last offsets per target."""
    results = await asyncio.gather(*(f for _, _, f in sent), return_exceptions=True)
    written: Written = {}
    appended: dict[tuple[str, int], int] = {}
    refused: dict[tuple[str, int], int | None] = {}
    failure: BaseException | None = None
    for (target, count, _), result in zip(sent, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, ProducerFenced):
                raise Fenced(str(result)) from result
            if target not in refused:
                # A batch of a partition is sent once the one before it is answered: the
                # first failure is the broker's refusal of a batch it did not append (an
                # error code in its answer), or of unknown fate (anything else).
                # An out-of-order answer means our sequence numbers are not the broker's:
                # nothing to set them back to.
                answered = isinstance(result, BrokerResponseError) and not isinstance(
                    result, OutOfOrderSequenceNumber
                )
                refused[target] = appended.get(target, 0) if answered else None
            failure = failure or result
            continue
        if target not in refused:
            appended[target] = appended.get(target, 0) + count
        # send_batch resolves to the batch's RecordMetadata: its offset is the base offset.
        last = int(result.offset) + count - 1
        if last > written.get(target, -1):
            written[target] = last
    if failure is not None:
        target = next(iter(refused))
        raise _Undelivered(
            f"delivery to {target[0]}[{target[1]}] failed: {failure!r}", refused
        ) from failure
    return written


class TransactionalCommitter:
    """Exactly-once: a transactional producer per input partition."""

    def __init__(
        self, factory: ProducerFactory, app_id: str, group_id: str, *, internals: ProducerInternals
    ) -> None:
        self._factory = factory
        self._internals = internals
        self._app_id = app_id
        self._group_id = group_id
        self._producers: dict[int, AIOKafkaProducer] = {}
        #: Transactions begun by :meth:`begin`: producer, and the offsets being added.
        self._begun: dict[int, tuple[AIOKafkaProducer, asyncio.Future[None] | None]] = {}

    def transactional_id(self, partition: int) -> str:
        """Stable per input partition, so a successor fences its predecessor."""
        return f"{self._app_id}-step-{partition}"

    def _deadline(self, producer: AIOKafkaProducer) -> float:
        """Most seconds a start, commit or abort of ``producer`` may take: its transaction
        timeout (the broker aborts a transaction older than that anyway)."""
        timeout_s = self._internals.transaction_timeout_s(producer)
        return DEFAULT_TRANSACTION_TIMEOUT_S if timeout_s is None else timeout_s

    async def open(self, partition: int) -> None:
        """Start ``partition``'s producer: InitProducerId, which fences any other producer
        of its transactional id. Only for an assignment being prepared (module docstring).
        """
        self._forget(partition)
        old = self._producers.pop(partition, None)
        if old is not None:
            await _stop_quietly(old, self._internals)
        producer = self._factory(transactional_id=self.transactional_id(partition))
        starting = asyncio.ensure_future(producer.start())
        deadline = self._deadline(producer)
        try:
            done, _ = await asyncio.wait({starting}, timeout=deadline)
            if not done:
                raise StepFailed(
                    f"partition {partition}: starting its producer (InitProducerId) took "
                    f"longer than {deadline:.0f}s"
                )
            starting.result()
        except BaseException:
            # Cancelled by a rebalance half-way, failed, or out of time: a started sender
            # would go on initialising this transactional id beside the next producer; stop
            # it. A start cancelled inside aiokafka leaves the connection it was opening
            # unknown to the client, never closed (seen as unclosed sockets): let it finish
            # for a moment first, then stop what it made.
            await asyncio.shield(_finish_then_stop(starting, producer, self._internals))
            raise
        self._producers[partition] = producer

    async def close(self, partition: int) -> None:
        self._forget(partition)
        producer = self._producers.pop(partition, None)
        if producer is not None:
            await _stop_quietly(producer, self._internals)

    def _forget(self, partition: int) -> None:
        """Drop a begun step's bookkeeping (its producer is stopped or reopened)."""
        _, adding = self._begun.pop(partition, (None, None))
        _drop(adding)

    async def _lost(self, partition: int, producer: AIOKafkaProducer, why: str) -> Fenced:
        """``producer`` cannot go on: stop it; the partition waits for an assignment."""
        if self._producers.get(partition) is producer:
            del self._producers[partition]
        self._forget(partition)
        await _stop_quietly(producer, self._internals)
        return Fenced(f"partition {partition}: producer lost ({why})")

    async def begin(
        self,
        partition: int,
        offsets: Mapping[TopicPartition, int],
        likely: Iterable[tuple[str, int]] = (),
    ) -> None:
        producer = self._producers.get(partition)
        if producer is None:
            # Closed (the partition was given up): only a new assignment opens another.
            raise Fenced(f"partition {partition} has no producer (not assigned here)")
        if partition in self._begun:  # a step left behind (cancelled): end it first
            await self.abort(partition)
        if self._internals.unusable(producer):
            raise await self._lost(partition, producer, "its sender stopped")
        try:
            await producer.begin_transaction()
        except Exception as exc:
            if _lost_error(exc) or self._internals.unusable(producer):
                raise await self._lost(partition, producer, repr(exc)) from exc
            raise
        cluster = producer.client.cluster
        for topic, target in likely:
            # Only partitions the producer's metadata knows: aiokafka retries an unknown
            # one (a deleted topic) in AddPartitionsToTxn until the transaction times out,
            # stalling steps that do not even write to it.
            if target in (cluster.partitions_for_topic(topic) or ()):
                self._internals.add_partition(producer, TopicPartition(topic, target))
        adding = None
        if offsets:
            adding = asyncio.ensure_future(
                producer.send_offsets_to_transaction(dict(offsets), self._group_id)
            )
        self._begun[partition] = (producer, adding)
        # A few turns of the loop put the requests on the wire before the (synchronous)
        # rules take the loop: the broker then works on them while the step decides.
        for _ in range(3):
            await asyncio.sleep(0)

    async def abort(self, partition: int) -> None:
        """Give up the step begun on ``partition``; raises :class:`Fenced` when the
        producer could not abort it (it is lost)."""
        producer, adding = self._begun.pop(partition, (None, None))
        if producer is None:
            return
        if adding is not None:
            await asyncio.gather(adding, return_exceptions=True)
        await self._abort(partition, producer)

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> Written:
        if partition not in self._begun:
            await self.begin(partition, offsets)
        producer, adding = self._begun.pop(partition)
        # Every batch before this step was answered: the client's sequence numbers are the
        # broker's (what a refused batch is set back to).
        sequences = {
            (topic, p): self._internals.sequence_number(producer, TopicPartition(topic, p))
            for topic, p in messages
        }
        deadline = self._deadline(producer)
        try:
            async with asyncio.timeout(deadline):
                if adding is not None:
                    # Offsets first: the broker (3.6+, KIP-890) verifies a transaction's
                    # first produce to a partition with its coordinator, and a produce sent
                    # while the offsets' TxnOffsetCommit is verified under the same epoch
                    # is answered NOT_ENOUGH_REPLICAS and retried (docs/benchmark.md).
                    # Begun early, the offsets are usually added by now.
                    await adding
                sent = await _send(producer, messages)
                written = await _delivered(sent)
                await producer.commit_transaction()
        except TimeoutError as exc:
            _drop(adding)
            # Its deliveries or EndTxn did not end in time: the outcome is unknown, and a
            # transaction that is committing cannot be aborted.
            raise await self._lost(
                partition, producer, f"the commit took longer than {deadline:.0f}s"
            ) from exc
        except _Undelivered as exc:
            _drop(adding)
            await self._abort(partition, producer)  # Fenced when the producer is lost
            unknown = [t for t, n in exc.refused.items() if n is None]
            if unknown:
                raise await self._lost(
                    partition, producer, f"a batch to {unknown[0]} of unknown fate"
                ) from exc
            for target, appended in exc.refused.items():
                if appended is not None:  # (all of them: checked just above)
                    self._internals.set_sequence_number(
                        producer, TopicPartition(*target), sequences.get(target, 0) + appended
                    )
            raise
        except BaseException as exc:
            _drop(adding)
            if _lost_error(exc) or self._internals.unusable(producer):
                raise await self._lost(partition, producer, repr(exc)) from exc
            await self._abort(partition, producer)
            raise
        return written

    async def _abort(self, partition: int, producer: AIOKafkaProducer) -> None:
        """Abort ``producer``'s transaction; :class:`Fenced` when it cannot."""
        if self._internals.unusable(producer):
            raise await self._lost(partition, producer, "its sender stopped")
        deadline = self._deadline(producer)
        try:
            async with asyncio.timeout(deadline):
                await producer.abort_transaction()
        except Exception as exc:  # noqa: BLE001 - fenced, fatal, or out of time: lost
            logger.warning("partition %d: abort failed (%r); producer dropped", partition, exc)
            raise await self._lost(partition, producer, f"abort failed: {exc!r}") from exc

    async def stop(self) -> None:
        # Side by side: each stop is bounded (_STOP_GRACE_S), not their sum.
        await asyncio.gather(*(self.close(p) for p in list(self._producers)))


def _drop(adding: asyncio.Future[None] | None) -> None:
    """Give up waiting for ``adding`` (offsets being added): nobody will await it."""
    if adding is not None:
        adding.cancel()
        adding.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark ``future``'s outcome seen (asyncio logs exceptions nobody retrieved)."""
    if not future.cancelled():
        future.exception()


class PlainCommitter:
    """At-least-once: one idempotent producer, offsets committed after delivery."""

    def __init__(
        self,
        factory: ProducerFactory,
        commit_offsets: OffsetCommit,
        *,
        internals: ProducerInternals,
    ) -> None:
        self._factory = factory
        self._internals = internals
        self._commit_offsets = commit_offsets
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def open(self, partition: int) -> None:
        async with self._lock:
            if self._producer is None:
                producer = self._factory()
                await producer.start()
                self._producer = producer

    async def close(self, partition: int) -> None:
        return None

    async def begin(
        self,
        partition: int,
        offsets: Mapping[TopicPartition, int],
        likely: Iterable[tuple[str, int]] = (),
    ) -> None:
        return None  # nothing to start: messages are sent, then offsets committed

    async def abort(self, partition: int) -> None:
        return None

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> Written:
        if self._producer is None:
            raise StepFailed("producer not started")
        written = await _delivered(await _send(self._producer, messages))
        if offsets:
            await self._commit_offsets(offsets)
        return written

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, self._internals)


#: Most seconds a cancelled producer start may go on before it is cut short: enough for
#: a connection and a transactional id on a live broker, short enough for a rebalance.
_START_GRACE_S = 2.0


async def _finish_then_stop(
    starting: asyncio.Future[None], producer: AIOKafkaProducer, internals: ProducerInternals
) -> None:
    if not starting.done():
        await asyncio.wait({starting}, timeout=_START_GRACE_S)
        if not starting.done():
            starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    await _stop_quietly(producer, internals)


#: Most seconds stopping a producer may take. aiokafka's ``stop`` waits for every pending
#: batch (retried for ever by a transactional producer while the broker is away); a
#: producer we stop has nothing left worth delivering: its transaction is given up.
_STOP_GRACE_S = 5.0


async def _stop_quietly(producer: AIOKafkaProducer, internals: ProducerInternals) -> None:
    try:
        async with asyncio.timeout(_STOP_GRACE_S):
            await producer.stop()
    except TimeoutError:
        logger.warning(
            "a producer took over %.0fs to stop; its connections are dropped", _STOP_GRACE_S
        )
        sender = internals.cancel_sender(producer)
        if sender is not None:
            sender.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                await producer.client.close()
        except Exception:  # noqa: BLE001 - nothing more to do for it
            logger.debug("producer close failed", exc_info=True)
    except Exception:  # noqa: BLE001 - closing a broken producer; nothing to save
        logger.debug("producer stop failed", exc_info=True)
