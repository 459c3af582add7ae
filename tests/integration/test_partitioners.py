"""Records placed by a librdkafka producer at its defaults (issue 16, item 10; contract 1.2).

confluent-kafka (librdkafka) partitions keyed records by CRC32 of the key unless told
``partitioner=murmur2_random``; kcat and the Go, .NET and Node clients share that default.
Every record must still be judged on the partition murmur2 gives its account: forwarded
there exactly once, counted by topic, and reported once in the log with the fix.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from domain.intake.partitioning import account_partition
from tests.integration.conftest import Stack, Worker, eventually, total_of

pytestmark = pytest.mark.integration


def _crc32_misplaced(prefix: str, partitions: int, count: int) -> list[str]:
    """Accounts that librdkafka's default partitioner puts off their murmur2 partition."""
    found = [
        f"{prefix}-{i}"
        for i in range(200)
        if zlib.crc32(f"{prefix}-{i}".encode()) % partitions
        != account_partition(f"{prefix}-{i}", partitions)
    ]
    assert len(found) >= count
    return found[:count]


class Librdkafka:
    """A confluent-kafka producer with librdkafka's default settings (its partitioner too)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap})
        #: (topic, key) -> partitions the records went to.
        self.placed: dict[tuple[str, str], set[int]] = {}

    def _delivered(self, err: Any, msg: Any) -> None:
        assert err is None, err
        self.placed.setdefault((msg.topic(), msg.key().decode()), set()).add(msg.partition())

    async def send(self, topic: str, key: str, value: Any) -> None:
        raw = None if value is None else orjson.dumps(value)
        self.producer.produce(topic, key=key.encode(), value=raw, on_delivery=self._delivered)
        left = await asyncio.to_thread(self.producer.flush, 30)
        assert left == 0, "librdkafka did not deliver within 30 s"


def _plan(account: str, plan_id: str = "starter") -> dict[str, Any]:
    return {"account_id": account, "plan_id": plan_id, "updated_at": "2026-01-01T00:00:00Z"}


def _usage(account: str, record_id: str, quantity: int, now: int) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "account_id": account,
        "metric": "api_calls",
        "quantity": quantity,
        "timestamp": now,
    }


async def _plan_known(stack: Stack, worker: Worker, account: str) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["plan"])


async def test_records_of_a_librdkafka_producer_are_judged_on_their_murmur2_partition(
    stack: Stack,
) -> None:
    await stack.create_inputs()
    worker = await stack.worker().start().ready()
    librdkafka = Librdkafka(stack.bootstrap)
    now = int(time.time() * 1000)
    # "both": plan and usage from librdkafka. "mixed": plan from a murmur2 producer (aiokafka,
    # as Java's), usage from librdkafka: its plan and usage must still meet.
    both, mixed = _crc32_misplaced("both", stack.partitions, 1) + _crc32_misplaced(
        "mixed", stack.partitions, 1
    )
    await librdkafka.send(stack.plans_topic, both, _plan(both))
    await stack.plan(mixed, "starter")
    for account in (both, mixed):
        await eventually(lambda a=account: _plan_known(stack, worker, a))
    # starter: api_calls 10,000, near at 0.8: 9,000 is near, 10,500 more is a hit.
    for account in (both, mixed):
        await librdkafka.send(stack.usage_topic, account, _usage(account, "r1", 9000, now))
        await librdkafka.send(stack.usage_topic, account, _usage(account, "r2", 1500, now))
        # A repeat on the misplaced partition is still a duplicate, judged where r1 was.
        await librdkafka.send(stack.usage_topic, account, _usage(account, "r1", 9000, now))

    # librdkafka really placed them on the other partition.
    for (_, account), partitions in librdkafka.placed.items():
        assert partitions == {1 - account_partition(account, stack.partitions)}

    async def levels(kind: str) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for m in await stack.read_all(f"{stack.prefix}.{kind}", settle_s=1.0):
            event = orjson.loads(m.value)
            assert m.partition == account_partition(event["account_id"], stack.partitions)
            out.setdefault(event["account_id"], []).append(event.get("level"))
        return out

    async def announced() -> dict[str, Any] | None:
        got = {"near": await levels("threshold-near"), "hit": await levels("threshold-hit")}
        return got if all(len(got[k]) == 2 for k in got) else None

    got = await eventually(announced)
    # Thresholds right: each account's plan and usage joined on its partition, once each.
    assert got == {"near": {both: [0.8], mixed: [0.8]}, "hit": {both: [1.0], mixed: [1.0]}}
    for account in (both, mixed):
        view = await stack.account(worker, account)
        assert view is not None, f"GET /accounts/{account} is not 200"
        assert view["plan"]["id"] == "starter"
        assert total_of(view) == 10500
    await worker.metric_becomes("moments_records_forwarded_total", 6, topic=stack.usage_topic)
    await worker.metric_becomes("moments_records_forwarded_total", 1, topic=stack.plans_topic)
    await worker.metric_becomes("moments_records_total", 4, outcome="accepted")
    await worker.metric_becomes("moments_records_total", 2, outcome="duplicate")
    log = worker.log_path.read_text()
    for topic in (stack.usage_topic, stack.plans_topic):
        assert log.count(f"{topic}: records keyed by account id are on other partitions") == 1
    assert log.count("partitioner=murmur2_random") == 2
