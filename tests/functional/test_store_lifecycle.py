"""Local stores too old to resume are wiped, and stores of partitions let go are deleted
(issue 16 item 7).

Changelogs are compacted: a tombstone, and the value it deleted, are gone from the topic
``delete.retention.ms`` (one day by default) after the tombstone was written. A store that
resumes from its recorded offsets after that never reads the deletion and keeps the value
for ever. Real RocksDB stores, a clock the tests move, and (for the engine) fakes of Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from engine.changelogs import ChangelogReader
from engine.engine import Engine
from state.store import StoreOptions, Stores, open_partition
from tests.fakes.engine import FakeCommitter, FakeHooks, FakeKafka
from tests.functional.kafka_fakes import APP, TABLE, FakeConsumer, Log

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STALE_AFTER_MS = 12 * HOUR_MS
CLEANUP_MS = 10 * 60_000
TEND_MS = 60_000
OPTIONS = StoreOptions(cache_mb=8, write_buffer_mb=1)


class Clock:
    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


def stores_of(root: Path, clock: Clock) -> Stores:
    return Stores(
        root,
        TABLE.columns,
        OPTIONS,
        wall_ms=clock,
        cleanup_delay_ms=CLEANUP_MS,
        stale_after_ms=STALE_AFTER_MS,
        tend_every_ms=TEND_MS,
    )


def write_store(root: Path, partition: int, synced_ms: int | None) -> None:
    """A store on disk holding key b"k" (changelog offset 5), last in sync at ``synced_ms``."""
    store = open_partition(root, partition, TABLE.columns, OPTIONS)
    store.apply({TABLE.name: {b"k": b"v"}}, {TABLE.name: 5})
    if synced_ms is not None:
        store.mark_synced(synced_ms)
    store.close()


# -- wiped when too old ------------------------------------------------------------------


def test_a_store_last_in_sync_long_ago_is_wiped_when_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    write_store(tmp_path, 0, synced_ms=clock.now - 2 * DAY_MS)
    with caplog.at_level(logging.WARNING, logger="state.store"):
        store = stores_of(tmp_path, clock).open(0)
    try:
        assert store.get(TABLE.name, b"k") is None
        assert store.changelog_offset(TABLE.name) is None  # restores from the beginning
        assert "partition 0: local store last in sync" in caplog.text
        assert "48.0 h ago" in caplog.text
    finally:
        store.close()


def test_a_store_in_sync_recently_is_resumed(tmp_path: Path) -> None:
    clock = Clock()
    write_store(tmp_path, 0, synced_ms=clock.now - STALE_AFTER_MS + 60_000)
    store = stores_of(tmp_path, clock).open(0)
    try:
        assert store.get(TABLE.name, b"k") == b"v"
        assert store.changelog_offset(TABLE.name) == 5
    finally:
        store.close()


def test_a_store_that_never_recorded_when_it_was_in_sync_is_wiped(tmp_path: Path) -> None:
    # Written before sync times were recorded (or by a worker that never finished a
    # restore): nothing says it is recent, so it is not resumed.
    write_store(tmp_path, 0, synced_ms=None)
    store = stores_of(tmp_path, Clock()).open(0)
    try:
        assert store.get(TABLE.name, b"k") is None
        assert store.changelog_offset(TABLE.name) is None
    finally:
        store.close()


def test_an_open_store_taken_up_again_after_a_long_pause_is_replaced(tmp_path: Path) -> None:
    clock = Clock()
    write_store(tmp_path, 0, synced_ms=clock.now)
    stores = stores_of(tmp_path, clock)
    store = stores.open(0)
    assert stores.keep(0, store) is store  # recent: the same store
    clock.now += STALE_AFTER_MS + 1
    fresh = stores.keep(0, store)
    try:
        assert fresh is not store
        assert store.closed
        assert fresh.get(TABLE.name, b"k") is None
    finally:
        fresh.close()


# -- sync times: who moves them on -------------------------------------------------------


def test_tending_moves_owned_restored_stores_on_and_a_pause_stops_it(tmp_path: Path) -> None:
    clock = Clock()
    stores = stores_of(tmp_path, clock)
    owned, standby = stores.open(0), stores.open(1)
    try:
        owned.apply({TABLE.name: {b"k": b"v"}}, {TABLE.name: 0})
        restored_at = clock.now
        owned.mark_synced(restored_at)  # what a restore does once read to the end
        clock.now += TEND_MS
        stores.tend({0: owned, 1: standby}, owned_ready={0})
        assert owned.synced_ms == clock.now
        assert standby.synced_ms is None  # standbys are moved on by the reader only
        # Paused (SIGSTOP, a suspended VM) for a day: another worker may have written the
        # changelog meanwhile, so the owned store is not moved on, now or later.
        before = owned.synced_ms
        clock.now += DAY_MS
        stores.tend({0: owned, 1: standby}, owned_ready={0})
        clock.now += TEND_MS
        stores.tend({0: owned, 1: standby}, owned_ready={0})
        assert owned.synced_ms == before
        assert stores.stale(owned)
        # Until a restore (or a standby read) finds it in sync again.
        owned.mark_synced(clock.now)
        clock.now += TEND_MS
        stores.tend({0: owned, 1: standby}, owned_ready={0})
        assert owned.synced_ms == clock.now
    finally:
        owned.close()
        standby.close()


async def test_a_restore_and_a_standby_read_record_when_the_store_was_in_sync(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = Log()
    log.write(0, b"a", b"1")
    log.write(1, b"b", b"1")
    reader = ChangelogReader(lambda: FakeConsumer(log), APP, [TABLE], lambda: 0, wall_ms=clock)
    reader.stale_after_ms = STALE_AFTER_MS
    active = open_partition(tmp_path, 0, TABLE.columns, OPTIONS)
    standby = open_partition(tmp_path, 1, TABLE.columns, OPTIONS)
    await reader.start()
    try:
        restore_started = clock.now
        restoring = asyncio.ensure_future(reader.restore({0: active}))
        await asyncio.sleep(0)  # the restore reads its end offsets at this time
        clock.now += 5_000
        await asyncio.wait_for(restoring, timeout=30)
        assert active.get(TABLE.name, b"a") == b"1"
        assert active.synced_ms == restore_started

        log.now_ms = clock.now + 1_000  # when the fake broker answers the next fetches
        reader.follow(1, standby)
        assert standby.synced_ms == clock.now  # empty: what it reads is in the topic now
        log.fetched.clear()
        for _ in range(100):  # until a fetch has been read to its end
            if standby.synced_ms == log.now_ms:
                break
            await asyncio.wait_for(log.fetched.wait(), timeout=30)
            log.fetched.clear()
        assert standby.get(TABLE.name, b"b") == b"1"
        assert standby.synced_ms == log.now_ms
    finally:
        await reader.stop()
        active.close()
        standby.close()


async def test_a_standby_that_was_stale_is_not_called_in_sync_by_catching_up(
    tmp_path: Path,
) -> None:
    # Its process was paused for two days: the records it reads now are what compaction
    # left, which may lack deletions of values it holds. Reaching the end proves nothing.
    clock = Clock()
    two_days_ago = clock.now - 2 * DAY_MS
    write_store(tmp_path, 1, synced_ms=two_days_ago)  # holds offsets up to 5
    log = Log()
    log.now_ms = clock.now
    for offset in range(8):
        log.write(1, f"k{offset}".encode(), b"1")
    reader = ChangelogReader(lambda: FakeConsumer(log), APP, [TABLE], lambda: 0, wall_ms=clock)
    reader.stale_after_ms = STALE_AFTER_MS
    standby = open_partition(tmp_path, 1, TABLE.columns, OPTIONS)
    await reader.start()
    try:
        reader.follow(1, standby)
        log.fetched.clear()
        while standby.changelog_offset(TABLE.name) != 7:
            await asyncio.wait_for(log.fetched.wait(), timeout=30)
            log.fetched.clear()
        await asyncio.wait_for(log.fetched.wait(), timeout=30)  # a pass after the apply
        assert standby.synced_ms == two_days_ago
        assert stores_of(tmp_path, clock).stale(standby)
    finally:
        await reader.stop()
        standby.close()


# -- stores of partitions let go ---------------------------------------------------------


def test_the_store_of_a_partition_let_go_is_deleted_after_the_cleanup_delay(
    tmp_path: Path,
) -> None:
    clock = Clock()
    stores = stores_of(tmp_path, clock)
    held, let_go = stores.open(0), stores.open(1)
    stores.release(1, let_go)
    clock.now += CLEANUP_MS - 1
    assert stores.sweep(held=[0]) == []
    assert (tmp_path / "p1").exists()
    clock.now += 1
    assert stores.sweep(held=[0]) == [1]
    assert not (tmp_path / "p1").exists()
    clock.now += DAY_MS
    assert stores.sweep(held=[0]) == []  # a held partition's store stays
    assert (tmp_path / "p0").exists()
    held.close()


def test_a_partition_taken_back_before_the_delay_keeps_its_store(tmp_path: Path) -> None:
    clock = Clock()
    write_store(tmp_path, 1, synced_ms=clock.now)
    stores = stores_of(tmp_path, clock)
    stores.release(1, stores.open(1))
    clock.now += CLEANUP_MS - 1
    store = stores.open(1)  # back (a rebalance moved it away and back)
    clock.now += CLEANUP_MS
    assert stores.sweep(held=[1]) == []
    assert store.get(TABLE.name, b"k") == b"v"
    store.close()
    stores.release(1, store)
    clock.now += CLEANUP_MS - 1
    assert stores.sweep(held=[]) == []  # the delay counts from the last release
    clock.now += 1
    assert stores.sweep(held=[]) == [1]


def test_stores_found_on_disk_at_start_go_after_the_delay_unless_held(tmp_path: Path) -> None:
    clock = Clock()
    for partition in (0, 1, 2):
        write_store(tmp_path, partition, synced_ms=clock.now - 3 * DAY_MS)
    (tmp_path / "not-a-store").mkdir()
    stores = stores_of(tmp_path, clock)
    assert stores.sweep(held=[]) == []  # first seen now
    store = stores.open(2)
    clock.now += CLEANUP_MS
    assert stores.sweep(held=[2]) == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-store", "p2"]
    store.close()


# -- through the engine ------------------------------------------------------------------


def engine_of(data_dir: Path, log: Log, clock: Clock, **extra: Any) -> Engine:
    return Engine(
        app_id=APP,
        data_dir=data_dir,
        specs=[TABLE],
        handlers={},
        topic_order=("input",),
        plans_topic="input",
        usage_topics=(),
        committer=FakeCommitter(FakeKafka()),
        reader=ChangelogReader(lambda: FakeConsumer(log), APP, [TABLE], clock, wall_ms=clock),
        store_options=OPTIONS,
        now_ms=clock,
        hooks=FakeHooks(strict=True),
        standby_replicas=1,
        wall_clock_ms=clock,
        **extra,
    )


async def prepared(engine: Engine) -> None:
    """Wait for the assignment's preparation (fence, restore, release) to finish."""
    task = engine.ownership.prepare_task
    assert task is not None
    await task
    assert engine.failed is None


async def test_a_worker_back_after_days_restores_its_partition_from_scratch(
    tmp_path: Path,
) -> None:
    # The worker stopped with partition 0's store on disk; meanwhile another worker
    # deleted key k (its tombstone since compacted away: the changelog no longer has k).
    clock = Clock()
    write_store(tmp_path / "state", 0, synced_ms=clock.now - 3 * DAY_MS)
    log = Log()
    for offset in range(8):
        log.write(0, f"other{offset}".encode(), b"1")
    engine = engine_of(tmp_path, log, clock)
    await engine.on_assigned([TopicPartition("input", 0)], generation=1)
    try:
        store = engine.store_of(0)
        assert store is not None
        assert store.get(TABLE.name, b"k") is None  # not brought back
        await prepared(engine)  # restored from the beginning
        assert store.get(TABLE.name, b"other7") == b"1"
        assert store.get(TABLE.name, b"k") is None
    finally:
        await engine.stop()


async def test_a_paused_worker_given_its_partitions_back_does_not_resume_them(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = Log()
    log.now_ms = clock.now
    log.write(0, b"k", b"v")
    log.write(1, b"j", b"v")
    engine = engine_of(tmp_path, log, clock)
    try:
        await engine.on_assigned([TopicPartition("input", 0)], generation=1, standbys=[1])
        await prepared(engine)
        active = engine.store_of(0)
        assert active is not None
        assert active.get(TABLE.name, b"k") == b"v"
        standby = engine.store_of(1)
        assert standby is not None
        log.fetched.clear()
        while standby.get(TABLE.name, b"j") is None:
            await asyncio.wait_for(log.fetched.wait(), timeout=30)
            log.fetched.clear()
        # Frozen for two days; the group moved on (generation 2 without it), another
        # worker deleted k and j, and compaction has since removed both.
        clock.now += 2 * DAY_MS
        log.records.clear()
        log.now_ms = clock.now
        await engine.on_assigned([TopicPartition("input", 0)], generation=3, standbys=[1])
        await prepared(engine)
        active = engine.store_of(0)
        standby = engine.store_of(1)
        assert active is not None
        assert standby is not None
        assert active.get(TABLE.name, b"k") is None
        assert standby.get(TABLE.name, b"j") is None
    finally:
        await engine.stop()


async def test_a_partition_let_go_is_deleted_by_the_engine_after_the_delay(
    tmp_path: Path,
) -> None:
    clock = Clock()
    engine = engine_of(tmp_path, Log(), clock)
    try:
        await engine.on_assigned([TopicPartition("input", 0)], generation=1, standbys=[1])
        await engine.on_assigned([TopicPartition("input", 2)], generation=2)
        clock.now += CLEANUP_MS
        assert engine.stores.sweep(engine.standby.keys() | engine.owned.keys()) == [0, 1]
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["p2"]
    finally:
        await engine.stop()
