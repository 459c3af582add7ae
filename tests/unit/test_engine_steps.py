"""The engine's step rules on fake committers (docs/architecture.md, "Why it is safe"):
poison is narrowed down to the one record at fault, a fenced producer gives its
partition up and asks the group to rejoin, a failed step is retried with the same
producer and only while the partition is still owned, and nothing runs past a step
that was abandoned.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import RecordTooLargeError
from hypothesis import given
from hypothesis import strategies as st

from engine.committers import StepFailed
from engine.poison import halves
from engine.step import Messages
from tests.fakes.engine import (
    DLQ,
    IN,
    OUT,
    TABLE,
    FakeKafka,
    Record,
    assign,
    messages_to,
    owned_engine,
    records,
    until,
)

TP = TopicPartition(IN, 0)


# -- halving -----------------------------------------------------------------------------


@given(
    st.dictionaries(
        st.sampled_from(["plans", "usage", "ticks"]),
        st.lists(st.integers(), min_size=1, max_size=30),
        min_size=1,
    )
)
def test_halves_keep_every_record_in_order_and_both_make_progress(
    by_topic: dict[str, list[int]],
) -> None:
    first, second = halves(by_topic)
    for topic, items in by_topic.items():
        assert first.get(topic, []) + second.get(topic, []) == items
    total = sum(len(i) for i in by_topic.values())
    taken = sum(len(i) for i in first.values())
    if total > 1:
        assert 0 < taken < total  # each half is smaller: narrowing ends


async def test_a_record_the_rules_cannot_handle_is_narrowed_down_and_dead_lettered_alone(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, _, hooks, handler = await owned_engine(tmp_path, kafka)
    batch = records(0, 9)
    batch[6] = Record(b"k6", b"poison", 6)
    await engine.submit({TP: batch}, 1)
    await journal.until(lambda: kafka.committed.get(TP) == 10)

    assert [key for key, _ in messages_to(kafka, DLQ)] == [b"k6"]
    assert handler.rejected == [batch[6]]
    out = [key for key, _ in messages_to(kafka, OUT)]
    assert out == [b"k%d" % o for o in range(10) if o != 6]  # every other record, in order
    assert not kafka.offsets_went_back()
    assert engine.owned[0].store.get(TABLE.name, b"k6") is None
    assert engine.owned[0].store.get(TABLE.name, b"k9") == b"1"
    assert hooks.crashed == []


async def test_a_message_kafka_refuses_for_good_is_narrowed_down_to_its_record(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, _, handler = await owned_engine(tmp_path, kafka)

    def too_large(partition: int, messages: Messages) -> BaseException | None:
        if any(key == b"k3" for key, _ in messages.get((OUT, 0), [])):
            return RecordTooLargeError()
        return None

    committer.fail = too_large
    await engine.submit({TP: records(0, 7)}, 1)
    await journal.until(lambda: kafka.committed.get(TP) == 8)

    assert [r.offset for r in handler.rejected] == [3]
    assert [key for key, _ in messages_to(kafka, DLQ)] == [b"k3"]
    assert [key for key, _ in messages_to(kafka, OUT)] == [b"k%d" % o for o in range(8) if o != 3]
    # Refused for good is not retried as it is: the same producer narrows it down.
    assert len(journal.of("open")) == 1


# -- fencing -------------------------------------------------------------------------------


async def test_a_fenced_step_gives_the_partition_up_and_nothing_after_it_commits(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, hooks, _ = await owned_engine(tmp_path, kafka)
    parked = asyncio.Event()
    committer.script.append((parked, None))
    await engine.submit({TP: records(0, 2)}, 1)
    await journal.until(lambda: journal.of("commit"))
    # Records of the next step wait while the first is in its commit.
    await engine.submit({TP: records(3, 5)}, 1)
    await until(lambda: 0 in engine.scheduler.pending, "the next step's records waiting")
    kafka.init_producer("B", 0)  # another worker took the partition: our epoch is stale
    parked.set()
    await journal.until(lambda: journal.of("rejoin") or journal.of("committed"))
    await asyncio.sleep(0.05)  # any step that would run after it has had its turn

    assert journal.of("fenced")
    assert journal.of("rejoin")  # the group is asked who owns the partition now
    assert kafka.commits == []
    assert len(journal.of("begin")) == 1  # the waiting records never became a step
    assert 0 not in engine.scheduler.pending
    assert not engine.owned[0].ready
    assert TP in hooks.held
    assert engine.owned[0].store.get(TABLE.name, b"k0") is None
    assert [e[1] for e in journal.of("init")] == ["A", "B"]  # no new producer of its own
    assert hooks.crashed == []


async def test_after_giving_up_the_next_assignment_opens_a_new_producer_and_redoes_the_step(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, _, _ = await owned_engine(tmp_path, kafka)
    kafka.init_producer("broker", 0)  # the broker bumped the epoch (a timed-out transaction)
    await engine.submit({TP: records(0, 2)}, 1)
    await journal.until(lambda: journal.of("rejoin"))

    await engine.on_revoked()
    await assign(engine, generation=2)  # the rejoin's assignment gives it back
    await engine.submit({TP: records(0, 2)}, 2)  # fetched again from the committed offset
    await journal.until(lambda: kafka.committed.get(TP) == 3)

    assert [e[1] for e in journal.of("init")] == ["A", "broker", "A"]
    assert [who for who, _, _ in kafka.commits] == ["A"]
    assert engine.owned[0].store.get(TABLE.name, b"k2") == b"1"


# -- retry -----------------------------------------------------------------------------------


async def test_a_failed_step_is_retried_with_the_same_producer_until_it_commits(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, hooks, _ = await owned_engine(tmp_path, kafka)
    committer.script += [(None, StepFailed("broker away")), (None, StepFailed("broker away"))]
    await engine.submit({TP: records(0, 1)}, 1)
    await journal.until(lambda: kafka.committed.get(TP) == 2)

    assert len(journal.of("failed")) == 2
    assert len(journal.of("begin")) == 3
    assert len(journal.of("open")) == 1  # the same producer, never a new one
    assert [e[1] for e in journal.of("init")] == ["A"]
    assert engine.owned[0].store.get(TABLE.name, b"k1") == b"1"  # applied once
    assert hooks.crashed == []


async def test_a_new_generation_during_the_backoff_abandons_the_step(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, _, _ = await owned_engine(tmp_path, kafka)
    committer.script.append((None, StepFailed("broker away")))
    await engine.submit({TP: records(0, 0)}, 1)
    await journal.until(lambda: journal.of("failed"))
    # Owned when it failed; during the wait the group moves on (the partition is kept).
    await engine.on_assigned([TP], 2)  # returns once the step in flight is over
    begins = len(journal.of("begin"))
    task = engine.ownership.prepare_task
    assert task is not None
    await task

    assert begins == 1  # not retried under the new generation
    assert kafka.commits == []
    await engine.submit({TP: records(0, 0)}, 2)  # the new generation redoes it
    await journal.until(lambda: kafka.committed.get(TP) == 1)
    assert len(kafka.commits) == 1


# -- nothing runs past an abandoned step ---------------------------------------------------


async def test_a_half_abandoned_while_narrowing_stops_the_halves_after_it(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    journal = kafka.journal
    engine, committer, _, handler = await owned_engine(tmp_path, kafka)
    batch = records(0, 3)
    batch[3] = Record(b"k3", b"poison", 3)

    def fence_the_first_half(partition: int, messages: Messages) -> BaseException | None:
        if [key for key, _ in messages.get((OUT, 0), [])] == [b"k0", b"k1"]:
            kafka.init_producer("B", 0)  # fenced just as the first half commits
        return None

    committer.fail = fence_the_first_half
    await engine.submit({TP: batch}, 1)
    await journal.until(lambda: journal.of("rejoin") or kafka.commits)
    await asyncio.sleep(0.05)  # any half that would run after it has had its turn

    assert journal.of("fenced")
    assert kafka.commits == []
    assert handler.rejected == []  # the poison was not dead-lettered past the abandoned half
    # The whole step, then its first half: no begin for the second half.
    assert len(journal.of("begin")) == 2
