"""The transactional committer against a fake aiokafka producer (issue 16, items 1 and 9).

A producer that cannot go on is lost (:class:`Fenced`), never replaced by the committer
itself: only preparing an assignment opens one (a new InitProducerId fences whoever owns
the partition now). Every wait on the broker has a deadline.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)
from aiokafka.producer.transaction_manager import TransactionState

from app.faust_internals import ProducerInternals
from engine import committers
from engine.committers import Fenced, StepFailed, TransactionalCommitter

OUT = ("out", 0)
OFFSETS = {TopicPartition("in", 0): 10}


class Metadata(NamedTuple):
    offset: int


class FakeTxn:
    """The parts of aiokafka's TransactionManager the committer reads."""

    def __init__(self) -> None:
        self.state = TransactionState.READY
        self.transaction_timeout_ms = 60_000
        self._sequence_numbers: defaultdict[TopicPartition, int] = defaultdict(int)

    def sequence_number(self, tp: TopicPartition) -> int:
        return self._sequence_numbers[tp]

    def maybe_add_partition_to_txn(self, tp: TopicPartition) -> None:
        return None


class FakeClient:
    def __init__(self) -> None:
        self.closed = False
        #: Metadata: every topic known, with partitions 0-7 (likely targets pre-added).
        self.cluster = SimpleNamespace(partitions_for_topic=lambda topic: set(range(8)))

    async def close(self) -> None:
        self.closed = True


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self.records: list[dict[str, Any]] = []

    def append(self, **record: Any) -> object | None:
        # As aiokafka's C builder: "Argument 'headers' has incorrect type (expected list)".
        assert record.get("headers") is None or type(record["headers"]) is list
        if self.count >= self.capacity:
            return None
        self.count += 1
        self.records.append(record)
        return object()


class FakeProducer:
    """Batches of ``capacity`` records; ``outcomes``: per batch sent, an exception or None
    (delivered); ``park``: calls that never return ("start", "commit", "abort")."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self._txn_manager = FakeTxn()
        self.capacity = 2
        self.outcomes: list[BaseException | None] = []
        self.park: set[str] = set()
        self.abort_error: BaseException | None = None
        self.begin_error: BaseException | None = None
        self.send_error: BaseException | None = None
        self.calls: list[str] = []
        self.stopped = False
        self._offset = 0
        self.client = FakeClient()
        self.sent_records: list[dict[str, Any]] = []

    async def _maybe_park(self, call: str) -> None:
        self.calls.append(call)
        if call in self.park:
            await asyncio.Event().wait()

    async def start(self) -> None:
        await self._maybe_park("start")

    async def stop(self) -> None:
        await self._maybe_park("stop")  # aiokafka's waits for every pending batch
        self.stopped = True

    async def begin_transaction(self) -> None:
        self.calls.append("begin")
        if self._txn_manager.state is TransactionState.FATAL_ERROR:
            raise AssertionError(
                "Invalid state transition TransactionState.FATAL_ERROR -> "
                "TransactionState.IN_TRANSACTION"
            )
        if self.begin_error is not None:
            raise self.begin_error
        self._txn_manager.state = TransactionState.IN_TRANSACTION

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        return None

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.sent_records.extend(batch.records)
        if self.send_error is not None:
            raise self.send_error
        tp = TopicPartition(topic, partition)
        self._txn_manager._sequence_numbers[tp] += batch.count  # as aiokafka's drain does
        future: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is None:
            future.set_result(Metadata(self._offset))
            self._offset += batch.count
        else:
            future.set_exception(outcome)
        return future

    async def commit_transaction(self) -> None:
        await self._maybe_park("commit")
        self._txn_manager.state = TransactionState.READY

    async def abort_transaction(self) -> None:
        await self._maybe_park("abort")
        if self.abort_error is not None:
            raise self.abort_error
        self._txn_manager.state = TransactionState.READY


class Factory:
    def __init__(self) -> None:
        self.made: list[FakeProducer] = []
        self.prepare: list[Any] = []

    def __call__(self, **config: Any) -> FakeProducer:
        producer = FakeProducer(**config)
        for setup in self.prepare:
            setup(producer)
        self.made.append(producer)
        return producer


@pytest.fixture
def factory() -> Iterator[Factory]:
    yield Factory()


async def opened(factory: Factory) -> TransactionalCommitter:
    committer = TransactionalCommitter(factory, "app", "app", internals=ProducerInternals())  # type: ignore[arg-type]
    await committer.open(0)
    return committer


def short_timeout(producer: FakeProducer) -> None:
    """A transaction timeout of 50 ms: the committer's deadline for start, commit, abort."""
    producer._txn_manager.transaction_timeout_ms = 50


def messages(count: int) -> dict[tuple[str, int], list[tuple[bytes | None, bytes]]]:
    return {OUT: [(b"k%d" % i, b"v") for i in range(count)]}


async def test_an_abort_that_fails_is_a_fence_and_no_new_producer_is_started(
    factory: Factory,
) -> None:
    committer = await opened(factory)
    [producer] = factory.made
    producer.outcomes = [StepFailed("delivery timed out")]  # any failure: the step aborts
    producer.abort_error = ProducerFenced()
    with pytest.raises(Fenced):
        await committer.commit(0, messages(1), OFFSETS)
    assert producer.stopped
    assert len(factory.made) == 1  # the committer opened no producer of its own
    with pytest.raises(Fenced):  # the partition has none until it is assigned again
        await committer.begin(0, OFFSETS)
    assert len(factory.made) == 1


async def test_deciding_failed_and_the_abort_too_is_a_fence(factory: Factory) -> None:
    committer = await opened(factory)
    [producer] = factory.made
    await committer.begin(0, OFFSETS)
    producer.abort_error = AssertionError(
        "Invalid state transition TransactionState.FATAL_ERROR -> ABORTING_TRANSACTION"
    )
    with pytest.raises(Fenced):
        await committer.abort(0)
    assert producer.stopped
    assert len(factory.made) == 1


async def test_a_producer_whose_sender_died_fenced_is_lost_not_restarted(
    factory: Factory,
) -> None:
    committer = await opened(factory)
    [producer] = factory.made
    producer._txn_manager.state = TransactionState.FATAL_ERROR  # Sender._fail_all did it
    with pytest.raises(Fenced):
        await committer.begin(0, OFFSETS)
    assert producer.stopped
    assert len(factory.made) == 1


async def test_an_ordinary_failure_is_aborted_and_retried_with_the_same_producer(
    factory: Factory,
) -> None:
    committer = await opened(factory)
    [producer] = factory.made
    producer.send_error = KafkaTimeoutError()  # the accumulator stayed full (broker slow)
    with pytest.raises(KafkaTimeoutError):
        await committer.commit(0, messages(1), OFFSETS)
    assert "abort" in producer.calls and not producer.stopped
    producer.send_error = None
    await committer.begin(0, OFFSETS)
    assert await committer.commit(0, messages(1), OFFSETS) == {OUT: 0}
    assert len(factory.made) == 1


@pytest.mark.parametrize("refused_batch", [0, 1, 2])
async def test_a_refused_batch_sets_the_sequence_back_to_the_brokers(
    factory: Factory, refused_batch: int
) -> None:
    # Five records in batches of 2, 2 and 1. The broker appends the batches before the
    # refused one; after it, every batch of the partition fails as out of order.
    committer = await opened(factory)
    [producer] = factory.made
    tp = TopicPartition(*OUT)
    producer._txn_manager._sequence_numbers[tp] = 40
    outcomes: list[BaseException | None] = [None, None, None]
    outcomes[refused_batch] = MessageSizeTooLargeError()
    for later in range(refused_batch + 1, 3):
        outcomes[later] = OutOfOrderSequenceNumber()
    producer.outcomes = outcomes
    with pytest.raises(StepFailed) as failed:
        await committer.commit(0, messages(5), OFFSETS)
    assert not isinstance(failed.value, Fenced)
    assert isinstance(failed.value.__cause__, MessageSizeTooLargeError)
    assert producer._txn_manager.sequence_number(tp) == 40 + [0, 2, 4][refused_batch]
    assert "abort" in producer.calls and not producer.stopped
    assert len(factory.made) == 1


async def test_a_commit_that_never_ends_is_cut_at_its_deadline(factory: Factory) -> None:
    factory.prepare.append(short_timeout)
    committer = await opened(factory)
    [producer] = factory.made
    producer.park = {"commit"}
    async with asyncio.timeout(10):  # without a deadline: for ever
        with pytest.raises(Fenced, match="longer than"):
            await committer.commit(0, messages(1), OFFSETS)
    assert producer.stopped
    assert len(factory.made) == 1


async def test_an_abort_that_never_ends_is_cut_at_its_deadline(factory: Factory) -> None:
    factory.prepare.append(short_timeout)
    committer = await opened(factory)
    [producer] = factory.made
    await committer.begin(0, OFFSETS)
    producer.park = {"abort"}
    async with asyncio.timeout(10):
        with pytest.raises(Fenced):
            await committer.abort(0)
    assert producer.stopped


async def test_a_start_that_never_ends_is_cut_at_its_deadline(factory: Factory) -> None:
    factory.prepare += [short_timeout, lambda producer: producer.park.add("start")]
    committer = TransactionalCommitter(factory, "app", "app", internals=ProducerInternals())  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        with pytest.raises(StepFailed, match="InitProducerId"):
            await committer.open(0)
    [producer] = factory.made
    assert producer.stopped


async def test_an_out_of_order_answer_first_means_the_producer_is_lost(
    factory: Factory,
) -> None:
    # Our sequence numbers are not the broker's: nothing to set them back to.
    committer = await opened(factory)
    [producer] = factory.made
    producer.outcomes = [OutOfOrderSequenceNumber()]
    with pytest.raises(Fenced):
        await committer.commit(0, messages(1), OFFSETS)
    assert producer.stopped
    assert len(factory.made) == 1


async def test_stopping_a_producer_that_never_stops_is_bounded(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committers, "_STOP_GRACE_S", 0.05, raising=False)
    committer = await opened(factory)
    [producer] = factory.made
    producer.park = {"stop"}  # batches pending while the broker is away
    async with asyncio.timeout(10):
        await committer.stop()
    assert producer.client.closed


async def test_a_message_with_headers_is_sent_with_them() -> None:
    """A forwarded binary-mode CloudEvent keeps its ``ce_*`` headers (contract 1.4)."""
    producer = FakeProducer()
    headers = (("ce_specversion", b"1.0"), ("ce_id", b"e-1"))
    messages: Any = {OUT: [(b"k1", b"v1"), (b"k2", b"v2", headers), (b"k3", b"v3")]}
    await committers._send(producer, messages)  # type: ignore[arg-type]  # the fake producer
    assert [(r["key"], r["value"], r["headers"]) for r in producer.sent_records] == [
        (b"k1", b"v1", None),
        (b"k2", b"v2", list(headers)),  # aiokafka's C batch builder takes a list only
        (b"k3", b"v3", None),
    ]
