"""The chaos tier's offset check on a real broker (tests/harness/offsets_log.py): the
commits read from ``__consumer_offsets`` are the ones that took effect, in order, an
aborted transaction's left out; a real lower commit after a higher one fails it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.harness.kafka import create_topics
from tests.harness.offsets_log import check_commits, read_offset_commits
from tests.integration.conftest import BOOTSTRAP

pytestmark = pytest.mark.integration


async def txn_commit(tp: TopicPartition, group: str, offset: int, *, abort: bool) -> None:
    """Commit ``offset`` inside a transaction, as the engine does; then end it."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, transactional_id=f"offsets-log-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: offset}, group)
        await (producer.abort_transaction() if abort else producer.commit_transaction())
    finally:
        await producer.stop()


async def plain_commit(tp: TopicPartition, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def test_the_log_holds_what_took_effect_and_a_lower_commit_fails() -> None:
    topic, group = f"offsets-log-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await create_topics(BOOTSTRAP, {topic: 2})
    tp, other = TopicPartition(topic, 0), TopicPartition(topic, 1)
    await txn_commit(tp, group, 20, abort=False)
    await txn_commit(tp, group, 5, abort=True)  # in the log, rolled back
    await plain_commit(other, group, 7)
    await plain_commit(tp, group, 30)

    commits = await read_offset_commits(BOOTSTRAP, group, {topic})
    assert [(c.partition, c.offset) for c in commits] == [(0, 20), (1, 7), (0, 30)]
    check_commits(commits, {(topic, 0): 30, (topic, 1): 7})

    await plain_commit(tp, group, 25)
    commits = await read_offset_commits(BOOTSTRAP, group, {topic})
    assert [c.offset for c in commits if c.partition == 0] == [20, 30, 25]
    with pytest.raises(AssertionError, match="moved back"):
        check_commits(commits, {(topic, 0): 25, (topic, 1): 7})
