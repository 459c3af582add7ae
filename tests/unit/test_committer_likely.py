"""A transaction begun ahead of its step adds only partitions its producer knows (#16, 8).

aiokafka retries UNKNOWN_TOPIC_OR_PARTITION on AddPartitionsToTxn until the transaction
times out: a deleted output topic among the likely targets stalled every step after it,
whether or not the step wrote to it. A fake producer stands in for aiokafka's.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from app.faust_internals import ProducerInternals
from engine.committers import TransactionalCommitter


class Producer:
    def __init__(self, known: dict[str, set[int]]) -> None:
        self.added: list[TopicPartition] = []
        self._txn_manager = SimpleNamespace(maybe_add_partition_to_txn=self.added.append)
        self.client = SimpleNamespace(
            cluster=SimpleNamespace(partitions_for_topic=known.get)  # None: unknown topic
        )

    async def begin_transaction(self) -> None:
        return None

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        return None


async def test_likely_targets_the_producer_does_not_know_are_not_added_ahead() -> None:
    producer = Producer({"out": {0, 1}, "changelog": {0}})
    committer = TransactionalCommitter(
        lambda **_: producer,  # type: ignore[arg-type, return-value]
        "app",
        "app",
        internals=ProducerInternals(),
    )
    committer._producers[0] = producer  # type: ignore[assignment]  # noqa: SLF001 - opened
    await committer.begin(
        0,
        {TopicPartition("in", 0): 5},
        [("out", 0), ("deleted", 0), ("changelog", 0), ("changelog", 3)],
    )
    assert producer.added == [TopicPartition("out", 0), TopicPartition("changelog", 0)]
