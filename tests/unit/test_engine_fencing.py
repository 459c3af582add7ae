"""Issue 16, items 1, 2, 5 and 9 (the engine's part): zombies, the input position after
the fence, errors of the machine while deciding, and steps in backoff at stop.

Engines run against the fakes of :mod:`tests.fakes.engine` (no broker): one
:class:`FakeKafka` keeps a partition's producer epoch and the group's committed offsets,
so two engines can hold one partition as a zombie and its successor would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from engine.committers import Fenced, StepFailed
from tests.fakes.engine import (
    DLQ,
    IN,
    OUT,
    TABLE,
    FakeKafka,
    assign,
    make_engine,
    messages_to,
    owned_engine,
    records,
)

TP = TopicPartition(IN, 0)


async def test_a_zombie_retrying_its_step_neither_fences_the_new_owner_nor_commits(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    a, a_committer, _, _ = make_engine(tmp_path, kafka, "A")
    b, _, _, _ = make_engine(tmp_path, kafka, "B")
    await assign(a, generation=1)
    # A's step (offsets 0-2) hangs in its commit (A cut off from the network), then fails.
    cut_off = asyncio.Event()
    a_committer.script.append((cut_off, StepFailed("request timed out")))
    await a.submit({TP: records(0, 2)}, 1)
    await journal.until(lambda: journal.of("commit", "A"))

    # Meanwhile A was evicted: B takes the partition over (fencing A) and commits 0-4.
    await assign(b, generation=7)
    await b.submit({TP: records(0, 4)}, 7)
    await journal.until(lambda: journal.of("committed", "B"))

    # The network heals: A's step fails, and A retries after its backoff.
    cut_off.set()
    await journal.until(lambda: journal.of("rejoin", "A") or journal.of("committed", "A"))

    assert [e[1] for e in journal.of("init")] == ["A", "B"]  # A never fenced B
    assert not journal.of("committed", "A")
    assert kafka.committed == {TP: 5}
    assert not kafka.offsets_went_back()
    assert not a.owned[0].ready  # A gave the partition up until it is assigned again
    assert a.owned[0].store.get(TABLE.name, b"k0") is None
    await a.stop()
    await b.stop()


async def test_a_failed_abort_gives_the_partition_up_instead_of_dead_lettering(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, hooks, _ = await owned_engine(tmp_path, kafka, "A")
    # Deciding fails (a record the rules cannot handle), and so does the abort: the
    # producer is lost (fenced): the step must not go on to narrow and dead-letter.
    committer.abort_error = Fenced("abort failed: ProducerFenced()")
    await engine.submit({TP: records(0, 0, value=b"poison")}, 1)
    await journal.until(lambda: journal.of("rejoin") or journal.of("crash") or kafka.commits)

    assert journal.of("rejoin")
    assert not kafka.commits
    assert hooks.crashed == []
    assert [e[1] for e in journal.of("init")] == ["A"]
    await engine.stop()


async def test_after_the_fence_the_input_is_read_from_the_offsets_committed_then(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    kafka.committed[TP] = 3
    journal = kafka.journal

    # The previous owner's last transaction (offsets 3-6) completes as our InitProducerId
    # fences it: what aiokafka read before the assignment listener ran (3) is stale.
    def zombie_commit_completes(partition: int) -> None:
        kafka.committed[TP] = 7

    kafka.on_init = zombie_commit_completes
    engine, _, hooks, _ = await owned_engine(tmp_path, kafka, "B")

    kinds = [e[0] for e in journal.events if e[1] == "B"]
    assert hooks.seeks == [(TP, 7)]
    assert kinds.index("open") < kinds.index("offsets_read") < kinds.index("seek")
    assert kinds.index("seek") < kinds.index("release")
    # Records below it fetched before the seek took effect are not processed again.
    await engine.submit({TP: records(3, 9)}, 1)
    await journal.until(lambda: kafka.commits)
    [(_, offsets, messages)] = kafka.commits
    assert offsets == {TP: 10}
    assert sorted(k for k, _ in messages[(OUT, 0)]) == [b"k7", b"k8", b"k9"]
    await engine.stop()


@pytest.mark.parametrize(
    "error",
    [
        OSError(24, "Too many open files"),
        # What rocksdict raises for a RocksDB error: a plain Exception with its status.
        Exception("IO error: While open a file for random read: 000042.sst"),
    ],
    ids=["oserror", "rocksdb"],
)
async def test_an_error_of_the_machine_while_deciding_is_retried_not_dead_lettered(
    tmp_path: Path, kafka: FakeKafka, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    journal = kafka.journal
    engine, _, hooks, handler = await owned_engine(tmp_path, kafka, "A")
    handler.raises = [error, error]
    await engine.submit({TP: records(0, 1)}, 1)
    await journal.until(lambda: kafka.commits)

    assert messages_to(kafka, DLQ) == []
    assert kafka.committed == {TP: 2}
    assert sorted(k for k, _ in messages_to(kafka, OUT)) == [b"k0", b"k1"]
    assert engine.owned[0].store.get(TABLE.name, b"k1") == b"1"
    assert engine.unavailable_steps == 2
    assert hooks.crashed == []
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len([r for r in retried if r.levelname == "WARNING"]) == 1  # once per streak
    await engine.stop()


async def test_a_memory_error_while_deciding_stops_the_worker_and_dead_letters_nothing(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, _, hooks, handler = await owned_engine(tmp_path, kafka, "A")
    handler.raises = [MemoryError()]
    await engine.submit({TP: records(0, 0)}, 1)
    await journal.until(lambda: journal.of("crash") or kafka.commits)

    assert [type(e) for e in hooks.crashed] == [MemoryError]
    assert kafka.commits == []
    await engine.stop()


async def test_a_step_in_backoff_when_stop_begins_neither_reopens_nor_retries(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, _, _ = await owned_engine(tmp_path, kafka, "A")
    committer.script.append((None, StepFailed("broker away")))
    await engine.submit({TP: records(0, 0)}, 1)
    await journal.until(lambda: journal.of("failed"))
    await engine.stop()

    assert len(journal.of("open")) == 1
    assert len(journal.of("begin")) == 1
    assert kafka.commits == []


async def test_a_rebalance_during_the_backoff_abandons_the_step_instead_of_retrying_it(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, _, _ = await owned_engine(tmp_path, kafka, "A")
    committer.script.append((None, StepFailed("broker away")))
    await engine.submit({TP: records(0, 0)}, 1)
    await journal.until(lambda: journal.of("failed"))
    # Ownership was checked right after the failure; the rebalance comes during the wait.
    await engine.on_revoked()  # returns once the step in flight is over

    assert len(journal.of("open")) == 1
    assert len(journal.of("begin")) == 1
    assert kafka.commits == []
