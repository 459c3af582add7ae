"""The changelog reader against real stores and a fake consumer whose awaits the test
holds, so interleavings of a rebalance with the reading loop are staged exactly.

Issue 16 item 13: three workers started at once; on one, the reader's re-seek awaited
``seek_to_beginning`` for a standby's changelog while ``Engine.on_assigned`` stopped
following another standby and closed its store. The re-seek then read that closed
store's offset: ``KeyError('__meta__')``, the reader died and the worker stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiokafka import TopicPartition

from engine.changelogs import ChangelogReader
from state.store import PartitionStore, StoreClosed, StoreOptions, open_partition
from state.table import TableSpec

TABLE = TableSpec("counts", "test table")
APP = "reader-test"
TOPIC = TABLE.changelog_topic(APP)


class Record(NamedTuple):
    key: bytes
    value: bytes | None
    offset: int


class Log:
    """Changelog partitions shared by the fake consumers, and the test's hold on seeks."""

    def __init__(self) -> None:
        self.records: dict[TopicPartition, list[Record]] = {}
        #: Set: the next seek_to_beginning of these partitions waits for ``release``.
        self.hold_seek: set[TopicPartition] = set()
        self.seek_held = asyncio.Event()
        self.release = asyncio.Event()
        #: Set each time the reading consumer fetches.
        self.fetched = asyncio.Event()
        #: Wall time (ms) the fake broker answers fetches at.
        self.now_ms = 1_000_000

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        tp = TopicPartition(TOPIC, partition)
        log = self.records.setdefault(tp, [])
        log.append(Record(key, value, len(log)))


class FakeConsumer:
    """The part of AIOKafkaConsumer the reader uses; no transactions (LSO = end)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.assigned: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int] = {}
        self.fetched_at: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)
        self.positions = {tp: p for tp, p in self.positions.items() if tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            if tp in self.log.hold_seek:
                self.log.hold_seek.discard(tp)
                self.log.seek_held.set()
                await self.log.release.wait()
            self.positions[tp] = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        self.log.fetched.set()
        out: dict[TopicPartition, list[Record]] = {}
        for tp in self.assigned:
            records = self.log.records.get(tp, [])[self.positions.get(tp, 0) :]
            self.fetched_at[tp] = self.log.now_ms
            if records:
                out[tp] = records
                self.positions[tp] = records[-1].offset + 1
        if not out:
            await asyncio.sleep(timeout_ms / 1000)  # as a fetch with nothing new waits
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return len(self.log.records.get(tp, [])) if tp in self.fetched_at else None

    def last_poll_timestamp(self, tp: TopicPartition) -> int:
        return self.fetched_at.get(tp, -1)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.records.get(tp, [])) for tp in tps}


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[int, PartitionStore]]:
    options = StoreOptions(cache_mb=8, write_buffer_mb=1)
    opened = {p: open_partition(tmp_path, p, TABLE.columns, options) for p in range(3)}
    yield opened
    for store in opened.values():
        store.close()


def reader_of(log: Log) -> ChangelogReader:
    # aiokafka is untyped here: the fake passes for its consumer.
    return ChangelogReader(lambda: FakeConsumer(log), APP, [TABLE], lambda: 0)


async def test_a_standby_closed_while_the_reader_seeks_another_does_not_kill_the_reader(
    log: Log, stores: dict[int, PartitionStore]
) -> None:
    log.write(0, b"a", b"1")
    log.write(1, b"b", b"1")
    log.write(2, b"c", b"1")
    reader = reader_of(log)
    await reader.start()
    try:
        # Two standbys, neither with an offset: the re-seek seeks both to the beginning,
        # and the first of those seeks is held.
        log.hold_seek.add(TopicPartition(TOPIC, 0))
        reader.follow(0, stores[0])
        reader.follow(1, stores[1])
        await log.seek_held.wait()
        # What on_assigned does to a standby this worker no longer keeps.
        reader.unfollow(1)
        stores[1].close()
        log.release.set()
        # The reader lives on: a restore of another partition completes (before the fix
        # the re-seek raised KeyError('__meta__') and this raised "not running").
        await asyncio.wait_for(reader.restore({2: stores[2]}), timeout=30)
        assert stores[2].get(TABLE.name, b"c") == b"1"
        assert reader.following() == {0}
    finally:
        await reader.stop()


async def test_a_store_closed_while_still_followed_fails_its_restore_not_the_reader(
    log: Log, stores: dict[int, PartitionStore]
) -> None:
    # A store closed with no unfollow (a bug elsewhere) must not kill the reader either:
    # its own restore fails, with an error that says what happened.
    log.write(0, b"a", b"1")
    log.write(1, b"b", b"1")
    reader = reader_of(log)
    await reader.start()
    try:
        log.hold_seek.add(TopicPartition(TOPIC, 0))
        reader.follow(0, stores[0])
        await log.seek_held.wait()
        restoring = asyncio.ensure_future(reader.restore({1: stores[1]}))
        while len(reader._follows) < 2:  # noqa: SLF001 - until the restore follows p1
            await asyncio.sleep(0)
        stores[1].close()
        log.release.set()
        with pytest.raises(StoreClosed):
            await asyncio.wait_for(restoring, timeout=30)
        log.write(0, b"a", b"2")
        log.fetched.clear()
        while stores[0].get(TABLE.name, b"a") != b"2":
            await asyncio.wait_for(log.fetched.wait(), timeout=30)
            log.fetched.clear()
    finally:
        await reader.stop()
