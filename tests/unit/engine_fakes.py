"""An engine without Kafka: a committer, a changelog reader and consumer hooks that stand
in for the broker, with one shared :class:`FakeKafka` so that two engines (two workers)
can fight over one partition as they would over a transactional id.

Every call is recorded in a :class:`Journal` the tests wait on (no sleeps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from engine.changelogs import RestoreReport
from engine.committers import Fenced, StepFailed, Written
from engine.engine import Engine
from engine.step import Messages, Step
from state.store import PartitionStore, StoreOptions
from state.table import TableSpec

TABLE = TableSpec("counts", "records counted per key")
IN = "in"
OUT = "out"
DLQ = "out.dlq"
PLANS = "plans"


class Record(NamedTuple):
    key: bytes
    value: bytes
    offset: int
    topic: str = IN
    partition: int = 0


def records(first: int, last: int, value: bytes = b"small") -> list[Record]:
    """Records of ``in``[0] at offsets ``first`` to ``last`` (inclusive)."""
    return [Record(b"k%d" % o, value, o) for o in range(first, last + 1)]


class Journal:
    """What happened, in order; tests await a condition on it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def add(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = asyncio.Event()

    def of(self, kind: str, who: str | None = None) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind and (who is None or e[1] == who)]

    async def until(self, probe: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until ``probe()`` is truthy, woken by each new event."""
        async with asyncio.timeout(timeout):
            while not (found := probe()):
                await self._changed.wait()
            return found


@dataclass
class FakeKafka:
    """One partition's transactional id and the group's committed offsets, as the broker
    keeps them: the latest InitProducerId's epoch wins, older producers are fenced."""

    journal: Journal = field(default_factory=Journal)
    epoch: dict[int, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    #: Every commit: (who, offsets, messages).
    commits: list[tuple[str, dict[TopicPartition, int], Messages]] = field(default_factory=list)
    #: Called on each InitProducerId (a zombie's open transaction completing, say).
    on_init: Callable[[int], None] | None = None
    #: Engines made with it, and their committers: stopped at the end of the test.
    engines: list[tuple[Engine, FakeCommitter]] = field(default_factory=list)

    async def shutdown(self) -> None:
        """Let every parked commit go and stop every engine (a failed test included)."""
        for engine, committer in self.engines:
            for gate, _ in committer.script:
                if gate is not None:
                    gate.set()
            committer.open_gate.set()
            if not engine.stopped:
                async with asyncio.timeout(10):
                    await engine.stop()

    def init_producer(self, who: str, partition: int) -> int:
        self.epoch[partition] = self.epoch.get(partition, 0) + 1
        self.journal.add("init", who, partition, self.epoch[partition])
        if self.on_init is not None:
            self.on_init(partition)
        return self.epoch[partition]

    def offsets_went_back(self) -> bool:
        seen: dict[TopicPartition, int] = {}
        for _, offsets, _ in self.commits:
            for tp, offset in offsets.items():
                if offset < seen.get(tp, -1):
                    return True
                seen[tp] = offset
        return False


class FakeCommitter:
    """A transactional committer against :class:`FakeKafka`: a commit with an epoch older
    than the partition's latest is fenced, as the broker refuses it. ``gates``: commits
    that wait for the test's go, then fail (StepFailed) or pass."""

    def __init__(self, kafka: FakeKafka, who: str) -> None:
        self.kafka = kafka
        self.who = who
        self.epochs: dict[int, int] = {}
        self.begun: set[int] = set()
        #: Each entry is taken by one commit: (event to wait for or None, raise or None).
        self.script: list[tuple[asyncio.Event | None, BaseException | None]] = []
        self.abort_error: BaseException | None = None
        self.open_gate = asyncio.Event()
        self.open_gate.set()

    def _log(self, *event: Any) -> None:
        self.kafka.journal.add(event[0], self.who, *event[1:])

    async def open(self, partition: int) -> None:
        self._log("open", partition)
        await self.open_gate.wait()
        self.epochs[partition] = self.kafka.init_producer(self.who, partition)

    async def close(self, partition: int) -> None:
        self._log("close", partition)
        self.epochs.pop(partition, None)

    async def begin(
        self,
        partition: int,
        offsets: Mapping[TopicPartition, int],
        likely: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._log("begin", partition)
        if partition not in self.epochs:
            raise Fenced(f"partition {partition} has no producer")
        self.begun.add(partition)

    async def abort(self, partition: int) -> None:
        self._log("abort", partition)
        self.begun.discard(partition)
        if self.abort_error is not None:
            self.epochs.pop(partition, None)
            raise self.abort_error

    async def commit(
        self, partition: int, messages: Messages, offsets: Mapping[TopicPartition, int]
    ) -> Written:
        self._log("commit", partition, dict(offsets))
        self.begun.discard(partition)
        if self.script:
            gate, error = self.script.pop(0)
            if gate is not None:
                await gate.wait()
            if error is not None:
                self._log("failed", partition, repr(error))
                raise error
        if self.epochs.get(partition) != self.kafka.epoch.get(partition):
            self.epochs.pop(partition, None)
            self._log("fenced", partition)
            raise Fenced("the broker refused a stale epoch")
        self.kafka.commits.append((self.who, dict(offsets), messages))
        self.kafka.committed.update(offsets)
        self._log("committed", partition, dict(offsets))
        return {target: 0 for target in messages}

    async def stop(self) -> None:
        self._log("stop")


class FakeReader:
    """The changelog reader: nothing to restore, every plans partition empty."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def restore(self, stores: Mapping[int, PartitionStore]) -> RestoreReport:
        return RestoreReport()

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {}

    def follow(self, partition: int, store: PartitionStore) -> None:
        return None

    def unfollow(self, partition: int) -> None:
        return None


class FakeHooks:
    """The consumer around an engine: records what the engine asks of it."""

    def __init__(self, kafka: FakeKafka, who: str) -> None:
        self.kafka = kafka
        self.who = who
        self.crashed: list[BaseException] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def _log(self, *event: Any) -> None:
        self.kafka.journal.add(event[0], self.who, *event[1:])

    def hold(self, tps: Iterable[TopicPartition]) -> None:
        self._log("hold", sorted(tps))

    def release(self, tps: Iterable[TopicPartition]) -> None:
        self._log("release", sorted(tps))

    async def position(self, tp: TopicPartition) -> int | None:
        return None

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._log("seek", tp, offset)

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found = {tp: self.kafka.committed[tp] for tp in tps if tp in self.kafka.committed}
        self._log("offsets_read", found)
        return found

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)
        self._log("crash", repr(exc))

    def broker_connected(self) -> bool:
        return True

    def rejoin(self) -> bool:
        self._log("rejoin")
        return True


class Counter:
    """A handler: counts records per key, one message each; raises on cue."""

    def __init__(self) -> None:
        #: Raised (and consumed) by the next calls of ``process``, one each.
        self.raises: list[BaseException] = []
        self.calls = 0

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        step.send(DLQ, record.key, reason.encode()[:200])

    def process(self, step: Step, topic: str, items: Sequence[Any]) -> None:
        self.calls += 1
        if self.raises:
            raise self.raises.pop(0)
        for record in items:
            if record.value == b"poison":
                raise ValueError("a record the rules cannot handle")
            held = step.state.get(TABLE.name, record.key)
            step.state.put(TABLE.name, record.key, str(1 + int(held or 0)).encode())
            step.send(OUT, record.key, b"x")


def make_engine(
    tmp_path: Path, kafka: FakeKafka, who: str, handler: Counter | None = None
) -> tuple[Engine, FakeCommitter, FakeHooks, Counter]:
    committer = FakeCommitter(kafka, who)
    hooks = FakeHooks(kafka, who)
    handler = handler or Counter()
    engine = Engine(
        app_id="fake",
        data_dir=tmp_path / who,
        specs=[TABLE],
        handlers={IN: handler},
        topic_order=[IN],
        plans_topic=PLANS,  # empty: the gate opens at once
        usage_topics=[],
        committer=committer,
        reader=FakeReader(),  # type: ignore[arg-type]
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        hooks=hooks,
    )
    kafka.engines.append((engine, committer))
    return engine, committer, hooks, handler


async def assign(engine: Engine, generation: int, partitions: Sequence[int] = (0,)) -> None:
    """Assign ``partitions`` of ``in`` and wait until they are prepared."""
    await engine.on_assigned([TopicPartition(IN, p) for p in partitions], generation)
    task = engine.ownership.prepare_task
    assert task is not None
    await task


def run_soon(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    return asyncio.ensure_future(awaitable)


def messages_to(kafka: FakeKafka, topic: str) -> list[tuple[bytes | None, bytes]]:
    return [m for _, _, messages in kafka.commits for m in messages.get((topic, 0), [])]


__all__ = ["StepFailed"]
