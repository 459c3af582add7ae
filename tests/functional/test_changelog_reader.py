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

import pytest
from aiokafka import TopicPartition

from engine.changelogs import ChangelogReader
from state.store import PartitionStore, StoreClosed, StoreOptions, open_partition
from tests.functional.kafka_fakes import APP, TABLE, TOPIC, FakeConsumer, Log


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
