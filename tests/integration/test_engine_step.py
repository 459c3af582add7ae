"""The engine's step protocol against a real broker and real RocksDB stores.

No worker process here: the engine is driven directly with records read from Kafka,
to check the store protocol itself (state applied only after the transaction
commits, with the changelog offsets it reflects; a failed step changes nothing).
The consumer around the engine (Faust's, in a worker) is replaced by a recorder of
what the engine asks of it: holds, releases, seeks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.faust_internals import ProducerInternals
from engine.changelogs import ChangelogReader
from engine.committers import StepFailed, TransactionalCommitter, Written, _send
from engine.engine import Engine
from engine.step import Messages, Step
from state.store import StoreOptions, open_partition
from state.table import TableSpec
from tests.fakes.engine import FakeHooks
from tests.integration.conftest import BOOTSTRAP, eventually

pytestmark = pytest.mark.integration

TABLE = TableSpec("counts", "test table")


class FlakyCommitter(TransactionalCommitter):
    """Sends a step's messages in a transaction, then fails it, while ``failures`` last."""

    failures = 0

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> Written:
        if self.failures > 0:
            self.failures -= 1
            producer = self._producers[partition]
            await _send(producer, messages)  # the messages reach the broker, in the step's
            await self.abort(partition)  # transaction (begun before deciding), never committed
            raise StepFailed("injected failure")
        return await super().commit(partition, messages, offsets)


class Counter:
    """A handler: counts records per key; emits one message (big on request)."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        step.send(self.out_topic + ".dlq", record.key, reason.encode()[:200])

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        for record in records:
            if record.value == b"poison":
                raise ValueError("a record the rules cannot handle")
            held = step.state.get(TABLE.name, record.key)
            count = 1 + (0 if held is None else int(held))
            step.state.put(TABLE.name, record.key, str(count).encode())
            size = 50_000 if record.value == b"big" else 10
            step.send(self.out_topic, record.key, b"x" * size)


async def _topics(names: dict[str, dict[str, str]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1, topic_configs=c) for n, c in names.items()])
    finally:
        await admin.close()


async def _records(topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[Any] = []
        for _ in range(50):
            batch = await consumer.getmany(tp, timeout_ms=200)
            got += batch.get(tp, [])
            if len(got) >= count:
                break
        return got
    finally:
        await consumer.stop()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    app_id = f"eng-{run}"
    names = {
        "in": f"{app_id}.in",
        "out": f"{app_id}.out",
        "changelog": TABLE.changelog_topic(app_id),
        "plans": f"{app_id}.plans",
    }
    await _topics(
        {
            names["in"]: {},
            # Small enough that a 50 kB message fails delivery: a failed step.
            names["out"]: {"max.message.bytes": "4096"},
            names["changelog"]: {"cleanup.policy": "compact"},
            names["plans"]: {},
            names["out"] + ".dlq": {},
        }
    )
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()

    def factory(**extra: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", **extra)

    def reader_consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )

    hooks = FakeHooks(rejoins=False)
    committer = FlakyCommitter(factory, app_id, app_id, internals=ProducerInternals())
    engine = Engine(
        app_id=app_id,
        data_dir=tmp_path,
        specs=[TABLE],
        handlers={names["in"]: Counter(names["out"])},
        topic_order=[names["in"]],
        plans_topic=names["plans"],  # empty: the gate opens at once
        usage_topics=[],
        committer=committer,
        reader=ChangelogReader(reader_consumer, app_id, [TABLE], lambda: 0),
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        hooks=hooks,
    )
    await engine.on_assigned([TopicPartition(names["in"], 0)], generation=1)
    await eventually(lambda: _ready(engine), timeout=30)
    try:
        yield {
            "engine": engine,
            "names": names,
            "producer": producer,
            "hooks": hooks,
            "committer": committer,
        }
    finally:
        await engine.stop()
        await producer.stop()


async def _ready(engine: Engine) -> bool:
    return engine.owned[0].ready and engine.owned[0].plans_caught_up


async def test_a_committed_step_is_applied_with_its_changelog_offset(
    setup: dict[str, Any],
) -> None:
    engine: Engine = setup["engine"]
    names = setup["names"]
    for key in (b"a", b"b", b"a"):
        await setup["producer"].send_and_wait(names["in"], b"small", key=key)
    records = await _records(names["in"], 3)
    await engine.submit({TopicPartition(names["in"], 0): records}, 1)

    async def applied() -> bool:
        return engine.owned[0].store.get(TABLE.name, b"a") == b"2"

    await eventually(applied, timeout=20)
    store = engine.owned[0].store
    assert store.get(TABLE.name, b"b") == b"1"
    changelog = await _records(names["changelog"], 2)
    # One changelog record per touched key (a twice in the step: coalesced).
    assert sorted((r.key, r.value) for r in changelog) == [(b"a", b"2"), (b"b", b"1")]
    assert store.changelog_offset(TABLE.name) == max(r.offset for r in changelog)
    assert len(await _records(names["out"], 3)) == 3
    assert engine.processed_next(TopicPartition(names["in"], 0)) == records[-1].offset + 1


async def test_a_failed_step_leaves_rocksdb_and_kafka_unchanged(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    engine: Engine = setup["engine"]
    names = setup["names"]
    setup["committer"].failures = 10**6  # every attempt fails after sending its messages
    await setup["producer"].send_and_wait(names["in"], b"small", key=b"a")
    records = await _records(names["in"], 1)
    await engine.submit({TopicPartition(names["in"], 0): records}, 1)
    await eventually(lambda: _attempted(setup["committer"], 3), timeout=20)
    store = engine.owned[0].store
    assert store.get(TABLE.name, b"a") is None
    assert store.changelog_offset(TABLE.name) is None
    assert await _records(names["changelog"], 1) == []  # aborted: invisible read_committed
    assert await _records(names["out"], 1) == []
    assert engine.processed_next(TopicPartition(names["in"], 0)) == -1
    await engine.stop()  # abandons the step; still nothing applied
    reopened = open_partition(
        tmp_path / "state", 0, TABLE.columns, StoreOptions(cache_mb=8, write_buffer_mb=1)
    )
    assert reopened.get(TABLE.name, b"a") is None
    reopened.close()


async def _attempted(committer: FlakyCommitter, times: int) -> bool:
    return committer.failures <= 10**6 - times


async def test_a_failing_step_is_retried_until_it_commits(setup: dict[str, Any]) -> None:
    engine: Engine = setup["engine"]
    names = setup["names"]
    setup["committer"].failures = 2
    await setup["producer"].send_and_wait(names["in"], b"small", key=b"a")
    records = await _records(names["in"], 1)
    await engine.submit({TopicPartition(names["in"], 0): records}, 1)

    async def applied() -> bool:
        return engine.owned[0].store.get(TABLE.name, b"a") == b"1"

    await eventually(applied, timeout=20)
    assert len(await _records(names["out"], 2)) == 1  # the aborted attempts left nothing


async def test_records_that_can_never_be_processed_are_set_aside_and_the_rest_goes_on(
    setup: dict[str, Any],
) -> None:
    # Contract 4: a record the rules raise on, or whose output Kafka refuses for good (a
    # 50 kB message on a topic that takes 4 kB), must not stall the partition for ever.
    engine: Engine = setup["engine"]
    names = setup["names"]
    values = [(b"a", b"small"), (b"b", b"big"), (b"c", b"poison"), (b"d", b"small")]
    values += [(b"e", b"small")] * 5
    for key, value in values:
        await setup["producer"].send_and_wait(names["in"], value, key=key)
    records = await _records(names["in"], len(values))
    await engine.submit({TopicPartition(names["in"], 0): records}, 1)

    async def done() -> bool:
        return engine.processed_next(TopicPartition(names["in"], 0)) == records[-1].offset + 1

    await eventually(done, timeout=30)
    store = engine.owned[0].store
    counts = {k: store.get(TABLE.name, k) for k in (b"a", b"b", b"c", b"d", b"e")}
    assert counts == {b"a": b"1", b"b": None, b"c": None, b"d": b"1", b"e": b"5"}
    rejected = await _records(names["out"] + ".dlq", 2)
    assert sorted(r.key for r in rejected) == [b"b", b"c"]
    reasons = {r.key: r.value.decode() for r in rejected}
    assert "MessageSizeTooLarge" in reasons[b"b"]
    assert "a record the rules cannot handle" in reasons[b"c"]
    assert len(await _records(names["out"], 7)) == 7  # a, d and e's five, each once
    assert setup["hooks"].crashed == []


async def test_an_assignment_cut_short_by_the_next_is_prepared_all_the_same(
    setup: dict[str, Any],
) -> None:
    # Two rebalances in quick succession (two workers joining a second apart): the first
    # assignment's preparation is cancelled half-way, possibly while a producer is starting.
    # The partition must still end up ready, fenced and able to commit.
    engine: Engine = setup["engine"]
    names = setup["names"]
    tp = TopicPartition(names["in"], 0)
    for generation, pause in ((2, 0.0), (3, 0.01), (4, 0.05), (5, 0.2)):
        await engine.on_revoked()
        await engine.on_assigned([tp], generation=generation)
        await asyncio.sleep(pause)  # cut the preparation at different points
    await engine.on_revoked()
    await engine.on_assigned([tp], generation=6)
    await eventually(lambda: _ready(engine), timeout=30)
    await setup["producer"].send_and_wait(names["in"], b"small", key=b"z")
    records = await _records(names["in"], 1)
    await engine.submit({tp: records}, 6)

    async def applied() -> bool:
        return engine.owned[0].store.get(TABLE.name, b"z") == b"1"

    await eventually(applied, timeout=30)
    assert setup["hooks"].crashed == []
