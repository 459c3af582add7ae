"""Background work (drop evaluations, anniversary passes) on a partition that never rests.

A slice as a step of its own waits for its partition to be idle; steady usage never
leaves it idle, so the engine also runs a slice at the start of a usage step once the
partition's last slice is ``FOLD_EVERY_S`` old. Driven like ``test_engine_step``: a real
broker, real RocksDB, the engine fed records directly, a chunk every couple of ms.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.faust_internals import ProducerInternals
from engine.changelogs import ChangelogReader
from engine.committers import TransactionalCommitter
from engine.engine import Engine
from engine.step import Step
from state.store import PartitionStore, StoreOptions
from tests.fakes.engine import FakeHooks
from tests.integration.conftest import BOOTSTRAP, eventually
from tests.integration.test_engine_step import TABLE, Counter, _records, _topics

pytestmark = pytest.mark.integration

RECORDS = 6000


class Slices:
    """Background work of ``total`` slices, pending once key ``a`` has been counted; each
    slice counts itself in the table through the step, as real slices keep their cursor."""

    def __init__(self, total: int, *, fail: bool = False) -> None:
        self.total = total
        self.fail = fail
        self.steps: list[Step] = []

    def pending(self, store: PartitionStore, partition: int) -> bool:
        if store.get(TABLE.name, b"a") is None:
            return False
        return int(store.get(TABLE.name, b"slices") or 0) < self.total

    def run_slice(self, step: Step) -> None:
        self.steps.append(step)
        if self.fail:
            raise ValueError("a bug in background work")
        held = step.state.get(TABLE.name, b"slices")
        step.state.put(TABLE.name, b"slices", str(1 + int(held or 0)).encode())


class Noting(Counter):
    """The test's usage handler: counts records per key, and notes its steps."""

    def __init__(self, out_topic: str) -> None:
        super().__init__(out_topic)
        self.steps: list[Step] = []

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        self.steps.append(step)
        super().process(step, topic, records)


async def _engine(
    tmp_path: Path, app_id: str, names: dict[str, str], background: Slices
) -> tuple[Engine, Noting, FakeHooks]:
    def factory(**extra: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", **extra)

    def reader_consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )

    handler = Noting(names["out"])
    hooks = FakeHooks(rejoins=False)
    engine = Engine(
        app_id=app_id,
        data_dir=tmp_path,
        specs=[TABLE],
        handlers={names["in"]: handler},
        topic_order=[names["in"]],
        plans_topic=names["plans"],  # empty: the gate opens at once
        usage_topics=[],
        committer=TransactionalCommitter(factory, app_id, app_id, internals=ProducerInternals()),
        reader=ChangelogReader(reader_consumer, app_id, [TABLE], lambda: 0),
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        background=background,
        hooks=hooks,
    )
    await engine.on_assigned([TopicPartition(names["in"], 0)], generation=1)

    async def ready() -> bool:
        return engine.owned[0].ready and engine.owned[0].plans_caught_up

    await eventually(ready, timeout=30)
    return engine, handler, hooks


@pytest.fixture
async def feed() -> AsyncIterator[dict[str, Any]]:
    """Topics, and ``RECORDS`` records of keys a, b, c on the input topic, read back."""
    app_id = f"bg-{uuid.uuid4().hex[:8]}"
    names = {
        "in": f"{app_id}.in",
        "out": f"{app_id}.out",
        "changelog": TABLE.changelog_topic(app_id),
        "plans": f"{app_id}.plans",
    }
    await _topics(
        {
            names["in"]: {},
            names["out"]: {},
            names["changelog"]: {"cleanup.policy": "compact"},
            names["plans"]: {},
            names["out"] + ".dlq": {},
        }
    )
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send(names["in"], b"small", key=b"abc"[i % 3 : i % 3 + 1])
        await producer.flush()
    finally:
        await producer.stop()
    records = await _records(names["in"], RECORDS)
    assert len(records) == RECORDS
    yield {"app_id": app_id, "names": names, "records": records}


async def _trickle(engine: Engine, tp: TopicPartition, records: list[Any], until: Any) -> int:
    """Submit ``records`` two at a time every 2 ms (the partition never runs out of
    records while a step commits) until ``until()``; returns how many were submitted."""
    sent = 0
    while sent < len(records) and not await until():
        await engine.submit({tp: records[sent : sent + 2]}, 1)
        sent += 2
        await asyncio.sleep(0.002)
    return sent


def _counts(engine: Engine) -> dict[bytes, bytes | None]:
    store = engine.owned[0].store
    return {k: store.get(TABLE.name, k) for k in (b"a", b"b", b"c", b"slices")}


def _expected(records: Sequence[Any]) -> dict[bytes, bytes]:
    counted: dict[bytes, int] = {}
    for record in records:
        counted[record.key] = counted.get(record.key, 0) + 1
    return {k: str(v).encode() for k, v in counted.items()}


async def test_background_slices_run_while_steady_usage_keeps_the_partition_busy(
    feed: dict[str, Any], tmp_path: Path
) -> None:
    background = Slices(total=3)
    engine, handler, hooks = await _engine(tmp_path, feed["app_id"], feed["names"], background)
    tp = TopicPartition(feed["names"]["in"], 0)
    try:

        async def all_sliced() -> bool:
            return _counts(engine)[b"slices"] == b"3"

        started = time.monotonic()
        sent = await _trickle(engine, tp, feed["records"], all_sliced)
        # The slices were done while records were still coming, not after they stopped.
        assert sent < RECORDS, f"3 slices not done in {time.monotonic() - started:.1f}s"
        folded = [s for s in background.steps if any(s is h for h in handler.steps)]
        assert folded, "no slice ran inside a usage step"

        async def applied() -> bool:
            return engine.processed_next(tp) == feed["records"][sent - 1].offset + 1

        await eventually(applied, timeout=30)
        # The slice's writes and the records' in one step: none lost, none twice.
        assert _counts(engine) == {**_expected(feed["records"][:sent]), b"slices": b"3"}
        assert hooks.crashed == []
    finally:
        await engine.stop()


async def test_a_failing_slice_in_a_usage_step_suspends_background_work_not_the_records(
    feed: dict[str, Any], tmp_path: Path
) -> None:
    background = Slices(total=3, fail=True)
    engine, _, hooks = await _engine(tmp_path, feed["app_id"], feed["names"], background)
    tp = TopicPartition(feed["names"]["in"], 0)
    try:

        async def suspended() -> bool:
            return engine.owned[0].background_suspended

        sent = await _trickle(engine, tp, feed["records"], suspended)
        assert sent < RECORDS and background.steps, "the slice never ran"

        async def applied() -> bool:
            return engine.processed_next(tp) == feed["records"][sent - 1].offset + 1

        await eventually(applied, timeout=30)
        # Every record counted exactly once: the step was redone without its slice, and
        # no record was dead-lettered for the slice's fault.
        assert _counts(engine) == {**_expected(feed["records"][:sent]), b"slices": None}
        assert await _records(feed["names"]["out"] + ".dlq", 1) == []
        assert hooks.crashed == []
    finally:
        await engine.stop()
