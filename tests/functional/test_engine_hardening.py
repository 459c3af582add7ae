"""Issue 16, items 3, 4, 6 (the engine's part) and 8: the real engine on fakes of Kafka.

3. A step Kafka committed but RocksDB refused latches its partition: nothing of it steps
   again on the store now behind Kafka, and the worker is stopped.
4. A background slice riding in a usage step whose output Kafka refuses is dropped from the
   step and its work suspended; the usage records are not blamed.
6. Suspended background work is tried again after a backoff that doubles.
8. A partition whose step fails for ever holds back only its own fetch; a failed step
   forgets the partitions its transaction would add ahead of time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import RecordTooLargeError

import engine.background as background_module
import engine.engine as engine_module
import engine.scheduler as scheduler_module
from engine.committers import StepFailed
from engine.step import Messages, Step
from state.store import PartitionStore
from tests.fakes.engine import CHANGELOG, DLQ, IN, OUT, TABLE, Rig, rig, until

SLICE_OUT = "slice-out"
#: The first wait of suspended background work (then 60 s, 120 s, ... up to 30 min).
FIRST_RETRY_S = 30.0


class Slices:
    """Background work: while ``armed``, each slice counts itself and sends to ``slice-out``;
    ``fail`` makes a slice raise (a bug in the rules)."""

    def __init__(self) -> None:
        self.armed = False
        self.fail = False
        #: Slices that raise an I/O error (the machine, not the work) before one passes.
        self.io_errors = 0
        self.runs = 0

    def pending(self, store: PartitionStore, partition: int) -> bool:
        return self.armed

    def run_slice(self, step: Step) -> None:
        self.runs += 1
        if self.fail:
            raise ValueError("a bug in background work")
        if self.io_errors:
            self.io_errors -= 1
            raise OSError(24, "Too many open files")
        held = step.state.get(TABLE.name, b"slices")
        step.state.put(TABLE.name, b"slices", str(1 + int(held or 0)).encode())
        step.send(SLICE_OUT, b"s", b"y" * 100)


@pytest.fixture
async def stop_after() -> AsyncIterator[list[Rig]]:
    rigs: list[Rig] = []
    yield rigs
    for r in rigs:
        try:
            await asyncio.wait_for(r.stop(), 15)
        except TimeoutError:
            raise AssertionError("the engine did not stop (its lock is held)") from None


# -- item 3: the failure latch ------------------------------------------------------


async def test_a_store_that_refuses_a_committed_step_never_steps_again(
    tmp_path: Path, stop_after: list[Rig]
) -> None:
    r = await rig(tmp_path, (0, 1))
    stop_after.append(r)
    await r.submit(r.records(0, b"a", b"a"))
    await until(lambda: len(r.committer.of(0)) == 1, "the first step of partition 0")
    store = r.engine.owned[0].store
    real_apply = store.apply
    refused: list[int] = []

    def apply(updates: object, offsets: object = None) -> None:
        refused.append(1)
        raise OSError(28, "No space left on device")

    store.apply = apply  # type: ignore[method-assign]
    await r.submit(r.records(0, b"a"))  # step 2: Kafka commits a=3, RocksDB refuses it
    await until(lambda: bool(refused), "the store refusing step 2")
    await until(lambda: bool(r.hooks.crashed), "the worker stopped")
    store.apply = real_apply  # type: ignore[method-assign]  # the disk has room again
    # More records of partition 0 (fetched before the hold), and of partition 1, in one
    # fetch: the step loop handles partition 0's first.
    await r.submit(r.records(0, b"a", b"b"), r.records(1, b"z"))
    await until(lambda: len(r.committer.of(1)) == 1, "partition 1's step")
    await until(lambda: not r.engine.scheduler.inflight, "steps in flight ending")

    commits = r.committer.of(0)
    assert [c.changelog(b"a") for c in commits] == [b"2", b"3"]  # nothing after step 2
    assert r.handler.decided.count(0) == 2  # no step decided on the stale store
    assert r.engine.owned[0].latched is not None
    assert TopicPartition(IN, 0) in r.hooks.held
    assert TopicPartition(IN, 1) not in r.hooks.held
    assert store.get(TABLE.name, b"a") == b"2"  # behind Kafka: restored when restarted


# -- item 4: a folded slice whose output Kafka refuses ---------------------------------


async def test_a_folded_slice_refused_by_kafka_is_dropped_not_blamed_on_usage(
    tmp_path: Path, stop_after: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(background_module, "FOLD_EVERY_S", 0.0)
    slices = Slices()
    r = await rig(tmp_path, background=slices)
    stop_after.append(r)

    def refuse(partition: int, messages: Messages) -> BaseException | None:
        if (SLICE_OUT, partition) in messages:
            failure = StepFailed(f"delivery to {SLICE_OUT}[{partition}] failed")
            failure.__cause__ = RecordTooLargeError()
            return failure
        return None

    r.committer.fail = refuse
    # Step 1 parks in its commit; step 2's records wait for it, so step 2 follows at once
    # (the partition never idle: its slice can only ride in it).
    gate = r.committer.gates[0] = asyncio.Event()
    await r.submit(r.records(0, b"b"))
    await until(lambda: 0 in r.committer.parked, "step 1 in its commit")
    await r.submit(r.records(0, b"a", b"a", b"a", b"a"))
    await until(lambda: 0 in r.engine.scheduler.pending, "step 2's records waiting")
    slices.armed = True
    del r.committer.gates[0]
    gate.set()
    await until(lambda: r.engine.next_offset.get(TopicPartition(IN, 0)) == 5, "usage done")

    assert slices.runs >= 1  # the slice did ride in step 2
    assert r.handler.rejected == []
    assert not any((DLQ, 0) in c.messages for c in r.committer.commits)
    assert r.committer.of(0)[-1].changelog(b"a") == b"4"  # the four records, in one step
    assert r.engine.owned[0].background_suspended


async def test_a_folded_slice_failing_on_io_is_retried_not_suspended(
    tmp_path: Path, stop_after: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5 for slices: an I/O error while a folded slice decides is the machine's,
    so the step is retried whole (slice included), and the background is not suspended."""
    monkeypatch.setattr(background_module, "FOLD_EVERY_S", 0.0)
    slices = Slices()
    r = await rig(tmp_path, background=slices)
    stop_after.append(r)
    gate = r.committer.gates[0] = asyncio.Event()
    await r.submit(r.records(0, b"b"))
    await until(lambda: 0 in r.committer.parked, "step 1 in its commit")
    await r.submit(r.records(0, b"a", b"a"))
    await until(lambda: 0 in r.engine.scheduler.pending, "step 2's records waiting")
    slices.armed = True
    slices.io_errors = 1
    del r.committer.gates[0]
    gate.set()
    await until(lambda: r.engine.next_offset.get(TopicPartition(IN, 0)) == 3, "usage done")

    assert slices.io_errors == 0 and slices.runs >= 2  # failed once, then ran again
    assert not r.engine.owned[0].background_suspended
    assert r.handler.rejected == []
    step2 = r.committer.of(0)[1]
    assert (SLICE_OUT, 0) in step2.messages  # the slice rode in the retried step
    assert step2.changelog(b"a") == b"2"


# -- item 6: suspended background work is tried again ---------------------------------


async def test_suspended_background_work_is_tried_again_after_a_doubling_backoff(
    tmp_path: Path, stop_after: list[Rig]
) -> None:
    now = [1000.0]
    slices = Slices()
    slices.fail = True
    r = await rig(tmp_path, background=slices)
    stop_after.append(r)
    r.engine.clock = lambda: now[0]
    owned = r.engine.owned[0]
    slices.armed = True
    await r.submit(r.records(0, b"a"))  # a usage step, then the partition's background
    await until(lambda: owned.background_suspended, "the first failed slice")
    assert slices.runs == 1

    now[0] += FIRST_RETRY_S
    await until(lambda: slices.runs == 2, "the slice tried again")
    await until(lambda: owned.background_suspended, "the second failure")
    assert owned.background_retry_at == now[0] + 2 * FIRST_RETRY_S

    # Usage goes on meanwhile; the work is not tried before its time.
    await r.submit(r.records(0, b"a"))
    await until(lambda: len(r.committer.of(0)) == 2, "a usage step")
    now[0] += 2 * FIRST_RETRY_S - 1
    await r.submit(r.records(0, b"a"))
    await until(lambda: len(r.committer.of(0)) == 3, "another usage step")
    assert slices.runs == 2

    slices.fail = False
    now[0] += 1
    await until(lambda: slices.runs >= 3, "the slice tried a third time")
    await until(
        lambda: any(c.changelog(b"slices") == b"1" for c in r.committer.commits),
        "a slice committed",
    )
    assert not owned.background_suspended
    assert owned.background_backoff_s == 0.0  # a success starts the backoff afresh


# -- item 8: a stall stays in its partition ---------------------------------------------


async def test_a_partition_failing_for_ever_holds_back_only_its_own_fetch(
    tmp_path: Path, stop_after: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "_MAX_PENDING_RECORDS", 8)
    monkeypatch.setattr(scheduler_module, "_MAX_PENDING_PER_PARTITION", 4, raising=False)
    r = await rig(tmp_path, (0, 1))
    stop_after.append(r)
    failing = [True]

    def broken(partition: int, messages: Messages) -> BaseException | None:
        return StepFailed("broker unreachable") if partition == 0 and failing[0] else None

    r.committer.fail = broken
    await r.submit(r.records(0, b"a"))
    await until(lambda: r.committer.attempts.get(0, 0) >= 1, "partition 0 failing")
    # More of partition 0 than its bound, then more than the engine's bound in all.
    await r.submit(r.records(0, *[b"a"] * 10))

    async def fetch() -> None:
        for _ in range(4):  # more fetches than the step loop's queue holds
            await r.submit(r.records(1, b"z"))

    fetching = asyncio.ensure_future(fetch())
    try:
        await until(lambda: r.engine.next_offset.get(TopicPartition(IN, 1)) == 4, "partition 1")
    finally:
        fetching.cancel()
    assert TopicPartition(IN, 0) in r.hooks.held  # its fetch waits, not the loop
    assert TopicPartition(IN, 1) not in r.hooks.held

    # Partition 1 busy (a slow commit) while partition 0's records keep the engine over its
    # bound in all: 1's waiting records hold its fetch, and once its steps took them it is
    # fetched again, though 0's still wait.
    gate = r.committer.gates[1] = asyncio.Event()
    await r.submit(r.records(1, b"z"))
    await until(lambda: 1 in r.committer.parked, "partition 1 in a slow commit")
    await r.submit(r.records(1, b"z"))
    await until(lambda: TopicPartition(IN, 1) in r.hooks.held, "partition 1 held back")
    del r.committer.gates[1]
    gate.set()
    await until(lambda: r.engine.next_offset.get(TopicPartition(IN, 1)) == 6, "partition 1")
    await until(lambda: TopicPartition(IN, 1) not in r.hooks.held, "partition 1 released")
    assert TopicPartition(IN, 0) in r.hooks.held
    assert r.committer.of(0) == []

    failing[0] = False  # partition 0's broker is back: it catches up and is fetched again
    await until(  # after its retry's backoff (at most 5 s)
        lambda: r.engine.next_offset.get(TopicPartition(IN, 0)) == 11, "partition 0", timeout=30
    )
    await until(lambda: TopicPartition(IN, 0) not in r.hooks.held, "partition 0 released")


async def test_a_failed_step_forgets_the_partitions_it_would_add_ahead(
    tmp_path: Path, stop_after: list[Rig]
) -> None:
    r = await rig(tmp_path)
    stop_after.append(r)
    await r.submit(r.records(0, b"a"))
    await until(lambda: len(r.committer.of(0)) == 1, "step 1")
    failures = [1]

    def once(partition: int, messages: Messages) -> BaseException | None:
        if failures[0]:
            failures[0] -= 1
            return StepFailed("UNKNOWN_TOPIC_OR_PARTITION (a topic it wrote was deleted)")
        return None

    r.committer.fail = once
    await r.submit(r.records(0, b"a"))
    await until(lambda: len(r.committer.of(0)) == 2, "step 2, retried")
    likely = [targets for partition, targets in r.committer.begins if partition == 0]
    assert likely[0] == ()  # the first step has no previous one
    assert set(likely[1]) == {(OUT, 0), (CHANGELOG, 0)}  # step 2: step 1's targets
    assert likely[2] == ()  # its retry: forgotten after the failure
    await r.submit(r.records(0, b"a"))
    await until(lambda: len(r.committer.of(0)) == 3, "step 3")
    assert set(likely_of(r, 0)[-1]) == {(OUT, 0), (CHANGELOG, 0)}  # learnt again


def likely_of(r: Rig, partition: int) -> list[tuple[tuple[str, int], ...]]:
    return [targets for p, targets in r.committer.begins if p == partition]


# -- item 9: a stop does not wait on a commit that never ends -------------------------


async def test_a_stop_abandons_a_step_whose_commit_never_ends(tmp_path: Path) -> None:
    """A commit parked for ever (a broker away: its own deadline is the transaction
    timeout, longer than the shutdown timeout) is abandoned once the stop's grace is
    over; nothing of it reaches the store."""
    r = await rig(tmp_path)
    r.engine.stop_grace_s = 0.2
    r.committer.gates[0] = asyncio.Event()  # never set
    await r.submit(r.records(0, b"a"))
    await until(lambda: 0 in r.committer.parked, "the step in its commit")
    store = r.engine.owned[0].store
    try:
        await asyncio.wait_for(r.stop(), 10)
    except TimeoutError:
        raise AssertionError("the stop waited on the parked commit") from None
    assert r.engine.stopped
    assert r.committer.commits == []
    assert store.closed  # closed without the step's write


# -- the decide thread (engine.deciding): a stop never closes a store under a decision -----


async def test_a_stop_that_abandons_a_deciding_step_closes_no_store_under_its_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision that outlasts the stop's grace and its cancel rounds (a step of 20,000
    records on a loaded machine) still runs on the decide thread: the stores are closed only
    once it has ended, and nothing of the abandoned step is committed. The decision of
    another abandoned step, queued behind it, never runs: a stop with many partitions'
    decisions queued would otherwise run every one of them, for nothing, past the
    shutdown timeout (the watchdog then ends the worker with status 1)."""
    monkeypatch.setattr(scheduler_module, "_ABANDON_WAIT_S", 0.02)
    r = await rig(tmp_path, (0, 1))
    r.engine.stop_grace_s = 0.05
    started, released = threading.Event(), threading.Event()
    seen: list[str] = []
    process = r.handler.process

    def slow(step: Step, topic: str, items: Sequence[Any]) -> None:
        if step.partition == 0:
            started.set()
            released.wait(10)
            try:  # what a decision reads after a long while: its store, still open
                step.state.get(TABLE.name, b"k")
                seen.append("open")
            except Exception as exc:  # noqa: BLE001 - the test reports what it read
                seen.append(repr(exc))
        process(step, topic, items)

    r.handler.process = slow  # type: ignore[method-assign]
    await r.submit(r.records(0, b"a"))
    await until(started.is_set, "partition 0 deciding")
    await r.submit(r.records(1, b"b"))  # its decision waits for partition 0's
    await until(lambda: 1 in r.engine.checkpoint.deciding, "partition 1 handed to the thread")
    stopping = asyncio.ensure_future(r.stop())
    # Well past the grace and the cancel rounds: the stop has given up on the steps.
    await asyncio.sleep(0.3)
    released.set()
    try:
        await asyncio.wait_for(stopping, 10)
    except TimeoutError:
        raise AssertionError("the stop did not end once the decision had") from None
    assert seen == ["open"]
    assert r.engine.stopped
    assert r.committer.commits == []
    assert r.handler.decided == [0]  # partition 1's decision, not started, never ran


async def test_maintenance_never_writes_a_store_while_its_partition_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_after: list[Rig]
) -> None:
    """Expiry with the worker's clock may delete a dedup entry the step, with its own (older)
    now, still holds within the horizon: a repeat then passes as new. On the loop, a
    decision never saw maintenance run between its step's start and its end."""
    monkeypatch.setattr(engine_module, "_MAINTENANCE_S", 0.0)  # at every loop turn
    r = await rig(tmp_path)
    stop_after.append(r)
    r.engine.owned[0].store.apply({TABLE.name: {b"seen": b"1"}})
    armed, expired = threading.Event(), threading.Event()

    def maintenance(store: PartitionStore, now_ms: int) -> None:
        if armed.is_set():
            store.delete_many(TABLE.name, [b"seen"])
            expired.set()

    r.engine.maintenance = maintenance
    seen: list[tuple[bytes | None, bytes | None]] = []
    process = r.handler.process

    def deciding(step: Step, topic: str, items: Sequence[Any]) -> None:
        first = step.state.get(TABLE.name, b"seen")
        armed.set()
        expired.wait(1.0)  # on the loop it waits in vain: maintenance runs after the step
        seen.append((first, step.state.get(TABLE.name, b"seen")))
        process(step, topic, items)

    r.handler.process = deciding  # type: ignore[method-assign]
    await r.submit(r.records(0, b"a"))
    await until(lambda: bool(seen), "the decision")
    assert seen == [(b"1", b"1")]
    await until(expired.is_set, "the partition's maintenance, once its decision ended")
