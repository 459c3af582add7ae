"""Kafka admin reads of the bench: topics, partitions, group members and offsets,
changelog records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmark.workload import Dataset
from tests.harness import kafka


async def create_topics(bootstrap: str, data: Dataset) -> None:
    """Create the usage topic and the compacted plans topic, P partitions each."""
    await kafka.create_topics(
        bootstrap,
        {data.usage_topic: data.partitions, data.plans_topic: data.partitions},
        compact={data.plans_topic},
    )


async def committed_offsets(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (0 when none yet)."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # group not there yet, coordinator moving: retry later
        return 0
    return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == topic)


async def group_committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of a group's committed offsets on one topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await committed_offsets(admin, group, topic)
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> dict[str, list[int]]:
    """Partitions of each existing topic of ``topics``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if d["error_code"] == 0 and d["partitions"]
    }


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int | None:
    """Members of a consumer group right now (None when it cannot be told)."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except Exception:  # coordinator moving: ask again later
        return None
    for response in responses:
        for entry in response.groups:
            # DescribeGroups: (error_code, group, state, protocol_type, protocol, members, ...)
            return len(entry[5])
    return None


async def wait_group_empty(bootstrap: str, group: str, max_seconds: float) -> float:
    """Wait until ``group`` has no members (a killed member expires with its session)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < max_seconds:
            if await group_members(admin, group) == 0:
                break
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    return time.monotonic() - started


async def changelog_records(bootstrap: str, app_id: str, max_seconds: float) -> tuple[int, int]:
    """(committed records, offsets) in the app's changelog topics, read from the start."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
    finally:
        await admin.close()
    partitions = await topic_partitions(bootstrap, [t for t in names if "changelog" in t])
    tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
    if not tps:
        return 0, 0
    consumer = kafka.committed_consumer(bootstrap, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records = 0
        deadline = time.monotonic() + max_seconds
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for messages in batches.values():
                records += len(messages)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records, sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def event_partitions(
    bootstrap: str, topics: Sequence[str], deadline: float
) -> list[TopicPartition]:
    """Partitions of the event topics, waiting for the worker to have created them."""
    while True:
        found = await topic_partitions(bootstrap, topics)
        if len(found) == len(topics) or time.monotonic() > deadline:
            return [TopicPartition(t, p) for t, ps in found.items() for p in ps]
        await asyncio.sleep(0.5)
