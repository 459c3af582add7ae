"""An engine with no broker: a committer, changelog reader and consumer hooks of fakes
around the real :class:`~engine.engine.Engine` and real RocksDB stores.

The committer records what each step would have committed (its messages, offsets and
the likely targets it began with), can park a partition's commits until released, and
fails the commits a test picks. Waiting is on conditions of these fakes, never on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from engine.background import Background
from engine.changelogs import RestoreReport
from engine.engine import Engine
from engine.step import Messages, Step
from state.store import PartitionStore, StoreOptions
from state.table import TableSpec

TABLE = TableSpec("counts", "test table")
IN = "in"
OUT = "out"
DLQ = "out.dlq"
APP_ID = "fake"
CHANGELOG = TABLE.changelog_topic(APP_ID)


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


class Counter:
    """A handler: counts records per key, emits one message per record to ``out``."""

    def __init__(self) -> None:
        self.rejected: list[Record] = []
        #: The partition of every step that decided.
        self.decided: list[int] = []

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        self.rejected.append(record)
        step.send(DLQ, record.key, reason.encode()[:200])

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        self.decided.append(step.partition)
        for record in records:
            held = step.state.get(TABLE.name, record.key)
            count = 1 + (0 if held is None else int(held))
            step.state.put(TABLE.name, record.key, str(count).encode())
            step.send(OUT, record.key, b"x")


@dataclass
class Commit:
    partition: int
    messages: Messages
    offsets: dict[TopicPartition, int]

    def changelog(self, key: bytes) -> bytes | None:
        """The value of ``key`` this step wrote to the changelog, if it wrote one."""
        found = None
        for k, v in self.messages.get((CHANGELOG, self.partition), []):
            if k == key:
                found = v
        return found


@dataclass
class FakeCommitter:
    commits: list[Commit] = field(default_factory=list)
    #: (partition, likely targets) of every begin, in order.
    begins: list[tuple[int, tuple[tuple[str, int], ...]]] = field(default_factory=list)
    #: Decides, per commit, the exception to raise instead (None: commit).
    fail: Callable[[int, Messages], BaseException | None] = lambda p, m: None
    #: Partitions whose commits wait until their event is set.
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    parked: set[int] = field(default_factory=set)
    attempts: dict[int, int] = field(default_factory=dict)
    _ends: dict[tuple[str, int], int] = field(default_factory=dict)

    async def open(self, partition: int) -> None:
        return None

    async def close(self, partition: int) -> None:
        return None

    async def begin(
        self,
        partition: int,
        offsets: Mapping[TopicPartition, int],
        likely: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.begins.append((partition, tuple(likely)))

    async def abort(self, partition: int) -> None:
        return None

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> dict[tuple[str, int], int]:
        self.attempts[partition] = self.attempts.get(partition, 0) + 1
        gate = self.gates.get(partition)
        if gate is not None:
            self.parked.add(partition)
            await gate.wait()
            self.parked.discard(partition)
        failure = self.fail(partition, messages)
        if failure is not None:
            raise failure
        self.commits.append(Commit(partition, dict(messages), dict(offsets)))
        written = {}
        for target, items in messages.items():
            end = self._ends.get(target, -1) + len(items)
            self._ends[target] = written[target] = end
        return written

    def of(self, partition: int) -> list[Commit]:
        return [c for c in self.commits if c.partition == partition]

    async def stop(self) -> None:
        return None


class FakeReader:
    """Nothing to restore; every plans partition empty (so usage opens at once)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def restore(self, stores: Mapping[int, PartitionStore]) -> RestoreReport:
        return RestoreReport()

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def follow(self, partition: int, store: PartitionStore) -> None:
        return None

    def unfollow(self, partition: int) -> None:
        return None


class FakeHooks:
    """The consumer around the engine: what it holds, and whether it was crashed."""

    def __init__(self) -> None:
        self.held: set[TopicPartition] = set()
        self.crashed: list[BaseException] = []

    def hold(self, tps: Iterable[TopicPartition]) -> None:
        self.held.update(tps)

    def release(self, tps: Iterable[TopicPartition]) -> None:
        self.held.difference_update(tps)

    async def position(self, tp: TopicPartition) -> int | None:
        return None

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        return None

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {}  # nothing committed by anyone else: positions stay where they are

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)

    def broker_connected(self) -> bool:
        return True

    def rejoin(self) -> bool:
        return False


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait, a loop turn at a time, for ``condition``; fail naming ``what`` at ``timeout``."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


@dataclass
class Rig:
    engine: Engine
    committer: FakeCommitter
    hooks: FakeHooks
    handler: Counter
    offsets: dict[int, int] = field(default_factory=dict)

    def records(self, partition: int, *keys: bytes) -> dict[TopicPartition, list[Record]]:
        """The next records of ``partition`` (one per key), as a fetch hands them over."""
        start = self.offsets.get(partition, 0)
        self.offsets[partition] = start + len(keys)
        items = [Record(IN, partition, start + i, k, b"") for i, k in enumerate(keys)]
        return {TopicPartition(IN, partition): items}

    async def submit(self, *batches: dict[TopicPartition, list[Record]]) -> None:
        merged: dict[TopicPartition, list[Record]] = {}
        for batch in batches:
            merged.update(batch)
        await self.engine.submit(merged, self.engine.generation)

    async def stop(self) -> None:
        await self.engine.stop()


async def rig(
    tmp_path: Path,
    partitions: Sequence[int] = (0,),
    *,
    background: Background | None = None,
) -> Rig:
    """An engine owning ``partitions`` of topic ``in``, ready for records."""
    committer = FakeCommitter()
    hooks = FakeHooks()
    handler = Counter()
    engine = Engine(
        app_id=APP_ID,
        data_dir=tmp_path,
        specs=[TABLE],
        handlers={IN: handler},
        topic_order=[IN],
        plans_topic="plans",
        usage_topics=[],
        committer=committer,
        reader=FakeReader(),  # type: ignore[arg-type]
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        background=background,
        hooks=hooks,
    )
    await engine.on_assigned([TopicPartition(IN, p) for p in partitions], generation=1)
    await until(
        lambda: all(
            p in engine.owned and engine.owned[p].ready and engine.owned[p].plans_caught_up
            for p in partitions
        ),
        "partitions ready",
    )
    return Rig(engine, committer, hooks, handler)
