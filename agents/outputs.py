"""Subscribes the worker to its own output topics, and does nothing else with them.

Faust picks the Kafka transaction of a send from the destination topic and
partition, and only for topics the worker consumes: a send to any other topic
bypasses the transaction (faust-streaming issue #177), breaking exactly-once.
Consuming the event and dead-letter topics (all co-partitioned with the inputs)
puts partition p of every output in the same transaction as partition p of the
inputs, on the worker that owns p.
"""

from __future__ import annotations

from faust.types import StreamT

from app.main import app, settings, topics

own_outputs_topic = app.topic(
    settings.topic_usage_dlq,
    settings.topic_accounts_dlq,
    *(topic.get_topic_name() for topic in topics.events.values()),
    key_type=bytes,
    value_type=bytes,
    allow_empty=True,
)


@app.agent(own_outputs_topic)
async def own_outputs(stream: StreamT[bytes]) -> None:
    """Read and drop: the subscription is what matters."""
    async for _ in stream.events():
        pass
