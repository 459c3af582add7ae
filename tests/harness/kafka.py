"""Kafka helpers of the harness: topics and read_committed readers."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    *,
    compact: Collection[str] = (),
    replication: int = 1,
) -> None:
    """Create each topic with its partition count (``compact`` ones log-compacted)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    count,
                    replication,
                    topic_configs={"cleanup.policy": "compact"} if name in compact else {},
                )
                for name, count in partitions.items()
            ]
        )
    finally:
        await admin.close()


def committed_consumer(bootstrap: str, *topics: str, **config: Any) -> AIOKafkaConsumer:
    """A group-less read_committed consumer (of ``topics``, or of what it is assigned),
    not started; ``config`` adds aiokafka options."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **config,
    )


async def committed_reader(topic: str, bootstrap: str) -> AIOKafkaConsumer:
    """A started, group-less read_committed consumer of ``topic`` from its start."""
    consumer = committed_consumer(bootstrap, topic, auto_offset_reset="earliest")
    await consumer.start()
    return consumer
