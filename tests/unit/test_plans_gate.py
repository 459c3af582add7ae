"""The usage gate waits for forwarded plans too (review of issue 16, item 10).

Plans a producer placed on another partition than murmur2 gives their account reach the
account's partition through ``<app>-plans-forwarded``. After a restart or a takeover, that
topic's backlog holds plans the account's usage must be judged with: usage of a partition
is released only once both plan topics have been read to the end offsets they had when the
partition was prepared (docs/architecture.md, "Plans before usage").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from engine.engine import Engine
from engine.step import Step
from state.store import StoreOptions
from tests.fakes.engine import (
    PLANS,
    TABLE,
    Counter,
    FakeCommitter,
    FakeHooks,
    FakeKafka,
    FakeReader,
    Record,
)

FORWARDED = "fake-plans-forwarded"
USAGE = "usage"


class Ends(FakeReader):
    """Plans topics' end offsets at preparation: ``account-plans`` empty, a backlog of
    three forwarded plans."""

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 3 if tp.topic == FORWARDED else 0 for tp in tps}


async def test_usage_is_held_until_the_forwarded_plans_backlog_is_read(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    committer = FakeCommitter(kafka, "A")
    hooks = FakeHooks(kafka, "A")
    handler = Counter()
    engine = Engine(
        app_id="fake",
        data_dir=tmp_path,
        specs=[TABLE],
        handlers={PLANS: handler, FORWARDED: handler, USAGE: handler},
        topic_order=[PLANS, FORWARDED, USAGE],
        plans_topic=PLANS,
        plans_forwarded_topic=FORWARDED,
        usage_topics=[USAGE],
        committer=committer,
        reader=Ends(),  # type: ignore[arg-type]
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        hooks=hooks,
    )
    kafka.engines.append((engine, committer))
    journal = kafka.journal
    usage = TopicPartition(USAGE, 0)

    def usage_released() -> bool:
        return any(usage in e[2] for e in journal.of("release"))

    await engine.on_assigned(
        [TopicPartition(t, 0) for t in (PLANS, FORWARDED, USAGE)], generation=1
    )
    assert engine.ownership.prepare_task is not None
    await engine.ownership.prepare_task
    assert engine.owned[0].ready
    # Prepared, account-plans read (it is empty), but three forwarded plans wait.
    assert not usage_released()
    assert not engine.owned[0].plans_caught_up

    forwarded = [Record(b"acct-%d" % o, b"plan", o, FORWARDED) for o in range(3)]
    await engine.submit({TopicPartition(FORWARDED, 0): forwarded}, 1)
    await journal.until(usage_released)
    assert engine.owned[0].plans_caught_up
    # Released only after the step that read them committed.
    first_release = next(
        i for i, e in enumerate(journal.events) if e[0] == "release" and usage in e[2]
    )
    committed = [i for i, e in enumerate(journal.events) if e[0] == "committed"]
    assert committed and committed[0] < first_release


class Topics(Counter):
    """A :class:`Counter` that remembers the topic of each batch it decided."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: list[str] = []

    def process(self, step: Step, topic: str, items: Sequence[Any]) -> None:
        self.topics.append(topic)
        super().process(step, topic, items)


async def test_usage_fetched_while_its_plans_are_read_is_fetched_again_after(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    # Usage of a prepared partition whose plans are still being read (records fetched
    # before the hold took effect, handed over afterwards) is judged with its plans, never
    # without: the backlog fault test once counted one fetch's worth (10,000 records) as
    # unknown_account, its plans all on the broker. Such records go back to the consumer,
    # as those of a partition not prepared yet do, and come again once usage is released.
    committer = FakeCommitter(kafka, "A")
    hooks = FakeHooks(kafka, "A")
    handler = Topics()
    engine = Engine(
        app_id="fake",
        data_dir=tmp_path,
        specs=[TABLE],
        handlers={PLANS: handler, FORWARDED: handler, USAGE: handler},
        topic_order=[PLANS, FORWARDED, USAGE],
        plans_topic=PLANS,
        plans_forwarded_topic=FORWARDED,
        usage_topics=[USAGE],
        committer=committer,
        reader=Ends(),  # type: ignore[arg-type]
        store_options=StoreOptions(cache_mb=8, write_buffer_mb=1),
        now_ms=lambda: 0,
        hooks=hooks,
    )
    kafka.engines.append((engine, committer))
    journal = kafka.journal
    usage = TopicPartition(USAGE, 0)
    await engine.on_assigned(
        [TopicPartition(t, 0) for t in (PLANS, FORWARDED, USAGE)], generation=1
    )
    assert engine.ownership.prepare_task is not None
    await engine.ownership.prepare_task
    assert engine.owned[0].ready
    assert not engine.owned[0].plans_caught_up

    early = [Record(b"acct-%d" % o, b"use", 40 + o, USAGE) for o in range(5)]
    await engine.submit({usage: early}, 1)
    forwarded = [Record(b"acct-%d" % o, b"plan", o, FORWARDED) for o in range(3)]
    await engine.submit({TopicPartition(FORWARDED, 0): forwarded}, 1)
    await journal.until(lambda: any(usage in e[2] for e in journal.of("release")))
    await journal.until(lambda: journal.of("committed"))
    assert USAGE not in handler.topics, handler.topics
    assert (usage, 40) in hooks.seeks

    # Fetched again after the release: judged now, after the plans.
    await engine.submit({usage: early}, 1)
    await journal.until(lambda: USAGE in handler.topics)
    assert handler.topics == [FORWARDED, USAGE]
    await engine.stop()
