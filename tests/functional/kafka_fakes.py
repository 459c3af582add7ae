"""A changelog partition log and the part of AIOKafkaConsumer the changelog reader uses,
with awaits a test can hold, so interleavings with the reading loop are staged exactly."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from aiokafka import TopicPartition

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

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

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
