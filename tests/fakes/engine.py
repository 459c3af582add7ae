"""The one set of fakes around the real :class:`~engine.engine.Engine` and real RocksDB
stores: a committer, a changelog reader and consumer hooks that stand in for the broker
and the Faust consumer, sharing one :class:`FakeKafka`, so that two engines (two workers)
can fight over one partition as they would over a transactional id.

:class:`FakeCommitter` keeps Kafka's rules that matter to the engine: the latest
InitProducerId's epoch wins and an older producer's commit is fenced; a commit records
its messages, offsets and the likely targets its transaction began with. A test can
park commits (per partition, or the next ones in order), fail the ones it picks, and
fail an abort. Every call is recorded in a :class:`Journal` the tests wait on (no sleeps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from engine.background import Background
from engine.changelogs import ChangelogReader, RestoreReport
from engine.committers import Fenced, Written
from engine.engine import Engine
from engine.step import Messages, Step
from state.store import PartitionStore, StoreOptions
from state.table import TableSpec

TABLE = TableSpec("counts", "records counted per key")
APP_ID = "fake"
CHANGELOG = TABLE.changelog_topic(APP_ID)
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
    """The transactional ids' epochs and the group's committed offsets, as the broker
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
            committer.release_all()
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


@dataclass
class Commit:
    """One committed step, as :class:`FakeCommitter` saw it."""

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


class FakeCommitter:
    """A transactional committer against :class:`FakeKafka` (one producer per partition,
    opened only by :meth:`open`): a commit with an epoch older than the partition's
    latest is fenced, as the broker refuses it."""

    def __init__(self, kafka: FakeKafka, who: str = "A") -> None:
        self.kafka = kafka
        self.who = who
        self.epochs: dict[int, int] = {}
        self.begun: set[int] = set()
        #: (partition, likely targets) of every begin, in order.
        self.begins: list[tuple[int, tuple[tuple[str, int], ...]]] = []
        #: Each entry is taken by one commit: (event to wait for or None, raise or None).
        self.script: list[tuple[asyncio.Event | None, BaseException | None]] = []
        #: Decides, per commit, the exception to raise instead (None: commit).
        self.fail: Callable[[int, Messages], BaseException | None] = lambda p, m: None
        #: Partitions whose commits wait until their event is set; those waiting now.
        self.gates: dict[int, asyncio.Event] = {}
        self.parked: set[int] = set()
        #: Commits tried, per partition.
        self.attempts: dict[int, int] = {}
        #: Raised by the next abort (the producer then counts as lost).
        self.abort_error: BaseException | None = None
        self.open_gate = asyncio.Event()
        self.open_gate.set()
        self.commits: list[Commit] = []
        self._ends: dict[tuple[str, int], int] = {}
        #: Gates of the script that commits took (and may still wait on).
        self._taken: list[asyncio.Event] = []

    def _log(self, *event: Any) -> None:
        self.kafka.journal.add(event[0], self.who, *event[1:])

    def release_all(self) -> None:
        """Let every parked open and commit go."""
        for gate in self._taken + [g for g, _ in self.script if g is not None]:
            gate.set()
        for gate in self.gates.values():
            gate.set()
        self.open_gate.set()

    def of(self, partition: int) -> list[Commit]:
        """The committed steps of ``partition``."""
        return [c for c in self.commits if c.partition == partition]

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
        self.begins.append((partition, tuple(likely)))
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
        self.attempts[partition] = self.attempts.get(partition, 0) + 1
        gate = self.gates.get(partition)
        if gate is not None:
            self.parked.add(partition)
            await gate.wait()
            self.parked.discard(partition)
        if self.script:
            waiting, error = self.script.pop(0)
            if waiting is not None:
                self._taken.append(waiting)
                await waiting.wait()
            if error is not None:
                self._log("failed", partition, repr(error))
                raise error
        failure = self.fail(partition, messages)
        if failure is not None:
            self._log("failed", partition, repr(failure))
            raise failure
        if self.epochs.get(partition) != self.kafka.epoch.get(partition):
            self.epochs.pop(partition, None)
            self._log("fenced", partition)
            raise Fenced("the broker refused a stale epoch")
        self.kafka.commits.append((self.who, dict(offsets), messages))
        self.kafka.committed.update(offsets)
        self.commits.append(Commit(partition, dict(messages), dict(offsets)))
        written: Written = {}
        for target, items in messages.items():
            end = self._ends.get(target, -1) + len(items)
            self._ends[target] = written[target] = end
        self._log("committed", partition, dict(offsets))
        return written

    async def stop(self) -> None:
        self._log("stop")


class FakeReader:
    """The changelog reader: nothing to restore; every plans partition empty."""

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
    """The consumer around an engine: what it holds, seeks and reads, and its crashes.

    ``committed`` answers from ``kafka`` (the offsets fake commits moved); ``rejoins``:
    what a request to rejoin the group answers; ``strict``: a crash fails the test there.
    """

    def __init__(
        self,
        kafka: FakeKafka | None = None,
        who: str = "A",
        *,
        rejoins: bool = True,
        strict: bool = False,
    ) -> None:
        self.kafka = kafka if kafka is not None else FakeKafka()
        self.who = who
        self.rejoins = rejoins
        self.strict = strict
        self.held: set[TopicPartition] = set()
        self.crashed: list[BaseException] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.rejoined = 0

    def _log(self, *event: Any) -> None:
        self.kafka.journal.add(event[0], self.who, *event[1:])

    def hold(self, tps: Iterable[TopicPartition]) -> None:
        tps = sorted(tps)
        self.held.update(tps)
        self._log("hold", tps)

    def release(self, tps: Iterable[TopicPartition]) -> None:
        tps = sorted(tps)
        self.held.difference_update(tps)
        self._log("release", tps)

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
        if self.strict:
            raise AssertionError(f"the engine crashed: {exc!r}")

    def broker_connected(self) -> bool:
        return True

    def rejoin(self) -> bool:
        self.rejoined += 1
        self._log("rejoin")
        return self.rejoins


class Counter:
    """A handler: counts records per key, one message each to ``out``; a record valued
    ``poison`` raises (a record the rules cannot handle), and so do queued ``raises``."""

    def __init__(self) -> None:
        #: Raised (and consumed) by the next calls of ``process``, one each.
        self.raises: list[BaseException] = []
        self.calls = 0
        #: The partition of every step that decided.
        self.decided: list[int] = []
        self.rejected: list[Any] = []

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        self.rejected.append(record)
        step.send(DLQ, record.key, reason.encode()[:200])

    def process(self, step: Step, topic: str, items: Sequence[Any]) -> None:
        self.calls += 1
        self.decided.append(step.partition)
        if self.raises:
            raise self.raises.pop(0)
        for record in items:
            if record.value == b"poison":
                raise ValueError("a record the rules cannot handle")
            held = step.state.get(TABLE.name, record.key)
            step.state.put(TABLE.name, record.key, str(1 + int(held or 0)).encode())
            step.send(OUT, record.key, b"x")


def make_engine(
    tmp_path: Path,
    kafka: FakeKafka,
    who: str = "A",
    handler: Counter | None = None,
    *,
    background: Background | None = None,
    rejoins: bool = True,
    data_dir: Path | None = None,
) -> tuple[Engine, FakeCommitter, FakeHooks, Counter]:
    """An engine of topic ``in`` on the fakes; its store under ``tmp_path / who``."""
    committer = FakeCommitter(kafka, who)
    hooks = FakeHooks(kafka, who, rejoins=rejoins)
    handler = handler or Counter()
    engine = Engine(
        app_id=APP_ID,
        data_dir=data_dir or tmp_path / who,
        specs=[TABLE],
        handlers={IN: handler},
        topic_order=[IN],
        plans_topic=PLANS,  # empty: the gate opens at once
        usage_topics=[],
        committer=committer,
        reader=fake_reader(),
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        background=background,
        hooks=hooks,
    )
    kafka.engines.append((engine, committer))
    return engine, committer, hooks, handler


async def owned_engine(
    tmp_path: Path, kafka: FakeKafka, who: str = "A", generation: int = 1
) -> tuple[Engine, FakeCommitter, FakeHooks, Counter]:
    """:func:`make_engine`, with partition 0 of ``in`` assigned at ``generation`` and prepared."""
    made = make_engine(tmp_path, kafka, who)
    await assign(made[0], generation)
    return made


def fake_reader(reader: FakeReader | None = None) -> ChangelogReader:
    """``reader`` (a :class:`FakeReader` by default) typed as the engine wants it."""
    found: Any = reader if reader is not None else FakeReader()
    return found  # type: ignore[no-any-return]


async def assign(engine: Engine, generation: int, partitions: Sequence[int] = (0,)) -> None:
    """Assign ``partitions`` of ``in`` and wait until they are prepared."""
    await engine.on_assigned([TopicPartition(IN, p) for p in partitions], generation)
    task = engine.ownership.prepare_task
    assert task is not None
    await task


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait, a loop turn at a time, for ``condition``; fail naming ``what`` at ``timeout``."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def run_soon(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    return asyncio.ensure_future(awaitable)


def messages_to(
    kafka: FakeKafka, topic: str, partition: int = 0
) -> list[tuple[bytes | None, bytes]]:
    """Every message committed to ``topic``[``partition``], in commit order."""
    return [m for _, _, messages in kafka.commits for m in messages.get((topic, partition), [])]


@dataclass
class Rig:
    """An engine owning partitions of ``in``, ready for records, on the fakes."""

    engine: Engine
    committer: FakeCommitter
    hooks: FakeHooks
    handler: Counter
    kafka: FakeKafka
    offsets: dict[int, int] = field(default_factory=dict)

    def records(self, partition: int, *keys: bytes) -> dict[TopicPartition, list[Record]]:
        """The next records of ``partition`` (one per key), as a fetch hands them over."""
        start = self.offsets.get(partition, 0)
        self.offsets[partition] = start + len(keys)
        items = [Record(k, b"", start + i, IN, partition) for i, k in enumerate(keys)]
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
    kafka = FakeKafka()
    engine, committer, hooks, handler = make_engine(
        tmp_path, kafka, background=background, rejoins=False, data_dir=tmp_path
    )
    await engine.on_assigned([TopicPartition(IN, p) for p in partitions], generation=1)
    await until(
        lambda: all(
            p in engine.owned and engine.owned[p].ready and engine.owned[p].plans_caught_up
            for p in partitions
        ),
        "partitions ready",
    )
    return Rig(engine, committer, hooks, handler, kafka)
