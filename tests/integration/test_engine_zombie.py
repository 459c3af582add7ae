"""A zombie against a real broker (issue 16, item 1): two engines on one partition.

Worker A's step hangs (cut off from the network) and is then aborted, while B, the
partition's new owner, fences A and commits further. A's retry must never start a new
producer (its InitProducerId would fence B) and never commit: its abort is refused by the
broker (a stale epoch), and that makes it give the partition up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.faust_internals import ProducerInternals
from engine.changelogs import ChangelogReader
from engine.committers import StepFailed, TransactionalCommitter, Written
from engine.engine import Engine
from engine.step import Messages
from state.store import StoreOptions
from tests.fakes.engine import FakeHooks
from tests.integration.conftest import BOOTSTRAP, eventually
from tests.integration.test_engine_step import TABLE, Counter, _records, _topics

pytestmark = pytest.mark.integration


class Cut(TransactionalCommitter):
    """Counts producers started; a commit parks at ``gate``, then times out (aborts)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened = 0
        self.gate: asyncio.Event | None = None
        self.parked = asyncio.Event()

    async def open(self, partition: int) -> None:
        self.opened += 1
        await super().open(partition)

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> Written:
        gate, self.gate = self.gate, None
        if gate is not None:
            self.parked.set()
            await gate.wait()
            await self.abort(partition)  # the step timed out: it is aborted
            raise StepFailed("request timed out")
        return await super().commit(partition, messages, offsets)


async def committed_offset(group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group)
    await consumer.start()
    try:
        found: int | None = await consumer.committed(tp)
        return found
    finally:
        await consumer.stop()


async def test_a_zombie_neither_fences_the_new_owner_nor_commits_behind_it(
    tmp_path: Path,
) -> None:
    app_id = f"zombie-{uuid.uuid4().hex[:8]}"
    names = {
        "in": f"{app_id}.in",
        "out": f"{app_id}.out",
        "plans": f"{app_id}.plans",
    }
    await _topics(
        {
            names["in"]: {},
            names["out"]: {},
            TABLE.changelog_topic(app_id): {"cleanup.policy": "compact"},
            names["plans"]: {},
            names["out"] + ".dlq": {},
        }
    )
    tp = TopicPartition(names["in"], 0)

    def factory(**extra: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", **extra)

    def reader_consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )

    def worker(name: str) -> tuple[Engine, Cut, FakeHooks]:
        hooks = FakeHooks(rejoins=False)
        committer = Cut(factory, app_id, app_id, internals=ProducerInternals())
        engine = Engine(
            app_id=app_id,
            data_dir=tmp_path / name,
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
        return engine, committer, hooks

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    a, a_committer, a_hooks = worker("a")
    b, _, _ = worker("b")
    cut_off = asyncio.Event()
    try:
        for i in range(5):
            await producer.send_and_wait(names["in"], b"small", key=b"k%d" % i)
        inputs = await _records(names["in"], 5)

        await a.on_assigned([tp], generation=1)
        await eventually(lambda: _ready(a), timeout=30)
        a_committer.gate = cut_off
        await a.submit({tp: inputs[:3]}, 1)
        await asyncio.wait_for(a_committer.parked.wait(), 30)

        # A was evicted meanwhile: B takes the partition over, fencing A, and commits.
        await b.on_assigned([tp], generation=2)
        await eventually(lambda: _ready(b), timeout=30)
        await b.submit({tp: inputs}, 2)

        async def b_committed() -> bool:
            return b.processed_next(tp) == 5

        await eventually(b_committed, timeout=30)

        cut_off.set()  # the network heals: A's step is aborted, then retried

        async def a_done() -> bool:
            return a_hooks.rejoined > 0 or a.processed_next(tp) > 0

        await eventually(a_done, timeout=30)
        assert a_committer.opened == 1  # A started no producer after its assignment's
        assert a.processed_next(tp) == -1  # and committed nothing
        assert a_hooks.rejoined == 1  # it gave the partition up and asked the group
        assert await committed_offset(app_id, tp) == 5  # B's, not moved back

        # B goes on: A fenced nobody.
        await producer.send_and_wait(names["in"], b"small", key=b"k5")
        more = await _records(names["in"], 6)
        await b.submit({tp: more[5:]}, 2)

        async def b_went_on() -> bool:
            return b.processed_next(tp) == 6

        await eventually(b_went_on, timeout=30)
        assert await committed_offset(app_id, tp) == 6
    finally:
        cut_off.set()
        await a.stop()
        await b.stop()
        await producer.stop()


async def _ready(engine: Engine) -> bool:
    return engine.owned[0].ready and engine.owned[0].plans_caught_up
