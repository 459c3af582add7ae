"""The broker's transaction verification (KIP-890) against the real committer (issue 16,
item 11).

A Kafka 3.6+ broker checks a transaction's first write to a partition with its
coordinator, and a TxnOffsetCommit too, through one queue per coordinator: when two
checks of one transactional id wait there together, the older is answered
NETWORK_EXCEPTION, which a produce request of aiokafka's version (v7) sees as
NOT_ENOUGH_REPLICAS, retried with a warning (1,414 lines in a three-minute ``make run``).
The committer sent a step's records while its offsets were still being committed; it now
adds the offsets first, so no two checks of a step overlap and nothing is retried.

Steps as a worker makes them, on several input partitions at once (each its own
transactional producer, so the checks queue behind one another as in a worker): begun
with the input offsets, then committed with a few messages to two or three output
partitions. Every other step is begun with the partitions the previous step wrote to
(the engine's ``likely``), the others with none (a step after an assignment). The
retries are counted as the worker counts them (``moments_kafka_retries_total``): a
:class:`~app.logs.KafkaRetryCounter` on aiokafka's sender logger.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.faust_internals import ProducerInternals
from app.logs import AIOKAFKA_SENDER_LOGGER, KafkaRetryCounter
from engine.committers import TransactionalCommitter
from engine.step import Messages
from tests.integration.conftest import BOOTSTRAP

pytestmark = pytest.mark.integration

#: Input partitions stepping at once, and steps of each. With the records sent while
#: the offsets were committed, these 800 steps were retried 20 to 60 times on Kafka 3.9.1
#: (5 runs) and 72 to 111 on 4.2.0 (3 runs), on a loaded two-core machine; in 4 to 18 s.
PARTITIONS = 8
STEPS = 100
OUT_PARTITIONS = 4


@pytest.fixture
def retries() -> Iterator[collections.Counter[str]]:
    """aiokafka's retried produce errors, by error name, while the test runs."""
    counts: collections.Counter[str] = collections.Counter()
    sender = logging.getLogger(AIOKAFKA_SENDER_LOGGER)
    counter = KafkaRetryCounter(lambda error: counts.update([error]))
    level = sender.level
    sender.addFilter(counter)
    sender.setLevel(logging.WARNING)  # a filter sees only the records its logger takes
    try:
        yield counts
    finally:
        sender.removeFilter(counter)
        sender.setLevel(level)


async def test_steps_are_not_retried_as_not_enough_replicas(
    retries: collections.Counter[str],
) -> None:
    app_id = f"verify-{uuid.uuid4().hex[:8]}"
    source, out = f"{app_id}.in", f"{app_id}.out"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(source, PARTITIONS, 1), NewTopic(out, OUT_PARTITIONS, 1)]
        )
    finally:
        await admin.close()

    def factory(**extra: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", **extra)

    committer = TransactionalCommitter(factory, app_id, app_id, internals=ProducerInternals())

    async def steps(partition: int) -> None:
        written: tuple[tuple[str, int], ...] = ()
        for step in range(STEPS):
            offsets = {TopicPartition(source, partition): step + 1}
            await committer.begin(partition, offsets, written if step % 2 else ())
            first = step + partition
            messages: Messages = {
                (out, (first + i) % OUT_PARTITIONS): [(b"k%d" % step, b"v%d" % n) for n in range(3)]
                for i in range(2 + first % 2)
            }
            await committer.commit(partition, messages, offsets)
            written = tuple(messages)

    try:
        for partition in range(PARTITIONS):
            await committer.open(partition)
        await asyncio.gather(*(steps(p) for p in range(PARTITIONS)))
    finally:
        for partition in range(PARTITIONS):
            await committer.close(partition)

    assert retries["NotEnoughReplicasError"] == 0, (
        f"{PARTITIONS * STEPS} steps: produce retries by error {dict(retries)}"
    )
    # Every step committed: each group offset is its partition's last step's.
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=app_id)
    await consumer.start()
    try:
        for partition in range(PARTITIONS):
            assert await consumer.committed(TopicPartition(source, partition)) == STEPS
    finally:
        await consumer.stop()
