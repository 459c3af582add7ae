"""Poison isolation: a step that fails for good is narrowed down to the record at fault.

What a failed step is blamed on decides what happens to it:

- the records (deciding raised, or Kafka refused a message for good: too large): the
  step is :class:`Poison`, split in halves, each its own step, down to the one record,
  which is dead-lettered (contract 4: nothing a producer sends may stall a partition);
- the machine (:func:`environmental`: an I/O or store error), or Kafka for a while: the
  step is retried as it is (:mod:`engine.checkpoint`);
- a background slice riding in a usage step (:class:`SliceFailed`, or a refusal that
  goes away without the slice): the step is redone without it and the partition's
  background work suspended; a slice's fault is never dead-lettered as usage.

:class:`Isolation` runs a partition's steps (records, and slices as steps of their own)
and does that sorting; :mod:`engine.checkpoint` commits each attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from rocksdict import DbClosedError

from engine.background import Background, BackgroundSchedule
from engine.ownership import Holdings, Owned
from engine.step import Handler, Step

logger = logging.getLogger(__name__)

#: Records of one step, per topic, in offset order.
ByTopic = dict[str, list[Any]]


class Poison(Exception):
    """A step failed in a way that trying the same records again cannot fix: deciding
    raised (a record the rules cannot handle), or Kafka refused a message for good (too
    large). The engine then narrows the step down to the record at fault (contract 4)."""


class SliceFailed(Exception):
    """A background slice riding in a usage step raised (its cause): the step is redone
    without it, and the partition's background work suspended (as a failed slice step's)."""


#: Kafka errors a retry cannot fix: the message itself is refused.
_REFUSED: Final = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is Kafka refusing a message for good."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _REFUSED):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def environmental(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the machine failing, not the rules.

    OSError (a file, a socket, "too many open files"), a closed store, and RocksDB's own
    errors: rocksdict raises them as plain ``Exception`` with RocksDB's status text
    ("IO error: ...", "Corruption: ...", checked with rocksdict 0.3.29 on a damaged
    table file); the rules never raise a plain ``Exception``. Anything else raised while
    deciding is taken as deterministic: the same records would fail again.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OSError | DbClosedError) or type(seen) is Exception:
            return True
        seen = seen.__cause__
    return False


def halves(by_topic: ByTopic) -> tuple[ByTopic, ByTopic]:
    """``by_topic`` split in two steps, every topic's records staying in order."""
    first: ByTopic = {}
    second: ByTopic = {}
    total = sum(len(items) for items in by_topic.values())
    room = (total + 1) // 2
    for topic, items in by_topic.items():
        head, tail = items[:room], items[room:]
        room -= len(head)
        if head:
            first[topic] = head
        if tail:
            second[topic] = tail
    return first, second


class Commits(Protocol):
    """How a step is committed (:class:`engine.checkpoint.Checkpoint`)."""

    async def commit_step(
        self,
        owned: Owned,
        decide: Callable[[Step], None],
        offsets: Mapping[TopicPartition, int],
    ) -> bool:
        """Decide, commit, apply; False when the step was abandoned. Raises Poison."""
        ...


class Isolation:
    """Runs a partition's steps, and narrows down the ones that fail for good."""

    def __init__(
        self,
        holdings: Holdings,
        commits: Commits,
        background: BackgroundSchedule,
        *,
        handlers: Mapping[str, Handler],
        topic_order: tuple[str, ...],
    ) -> None:
        self.holdings = holdings
        self.commits = commits
        self.background = background
        self.handlers = handlers
        self.topic_order = topic_order

    async def run(self, partition: int, by_topic: ByTopic) -> None:
        """The step of ``by_topic`` (records of ``partition``), narrowed down if poisoned."""
        try:
            await self.isolating(partition, by_topic)
        except Exception as exc:  # noqa: BLE001 - the engine itself failed: stop
            logger.exception("partition %d: step raised; stopping the worker", partition)
            await self.holdings.crash(exc)

    async def isolating(self, partition: int, by_topic: ByTopic, fold: bool = True) -> bool:
        """Run the step; when it is poisoned, run its halves, down to the record at fault.

        Retrying a poisoned step as it is would stall the partition for ever (contract 4:
        nothing a producer sends may). Halving costs a few extra steps only when a step
        fails this way; every record but the one at fault is processed as usual, in order.
        Returns False when the step was abandoned (partition lost, or stopping).
        ``fold``: whether a background slice may ride in the step (never in the halves
        of a poisoned step: a slice is never what narrowing looks for).
        """
        try:
            return await self.records(partition, by_topic, fold)
        except Poison as exc:
            count = sum(len(items) for items in by_topic.values())
            if count > 1:
                logger.warning(
                    "partition %d: a step of %d records failed for good (%s); "
                    "narrowing it down to the record at fault",
                    partition,
                    count,
                    exc,
                )
                first, second = halves(by_topic)
                return await self.isolating(partition, first, fold=False) and await self.isolating(
                    partition, second, fold=False
                )
            return await self.reject(partition, by_topic, exc)

    async def reject(self, partition: int, by_topic: ByTopic, exc: Poison) -> bool:
        """Dead-letter the one record of ``by_topic``, which cannot be processed."""
        [(topic, [record])] = by_topic.items()
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        reason = f"unprocessable: {cause!r}"
        logger.error(
            "partition %d: %s[%d]@%d cannot be processed (%r); dead-lettered",
            partition,
            topic,
            partition,
            record.offset,
            cause,
        )
        handler = self.handlers[topic]
        offsets = {TopicPartition(topic, partition): record.offset + 1}
        owned = self.holdings.owned[partition]

        def decide(step: Step) -> None:
            handler.reject(step, topic, record, reason)

        try:
            done = await self.commits.commit_step(owned, decide, offsets)
        except Poison:
            # Not even its dead letter can be written: move past it, loudly.
            logger.error(
                "partition %d: %s[%d]@%d skipped: its dead letter was refused too",
                partition,
                topic,
                partition,
                record.offset,
            )
            done = await self.commits.commit_step(owned, lambda step: None, offsets)
        if done:
            self.holdings.next_offset.update(offsets)
        return done

    async def records(self, partition: int, by_topic: ByTopic, fold: bool = True) -> bool:
        """One step of ``by_topic``, with a background slice first when one is due."""
        owned = self.holdings.owned[partition]
        offsets = {
            TopicPartition(topic, partition): items[-1].offset + 1
            for topic, items in by_topic.items()
        }
        background = self.background.to_fold(owned) if fold else None

        def decide(step: Step) -> None:
            if background is not None:
                # First, so the slice sees the state its store holds, as a slice step of
                # its own just before this one would; the records then see its writes.
                try:
                    background.run_slice(step)
                except Exception as exc:
                    if isinstance(exc, MemoryError) or environmental(exc):
                        raise  # the machine, not the slice: retried (or the worker stops)
                    raise SliceFailed from exc
            for topic in self.topic_order:
                items = by_topic.get(topic)
                if items:
                    self.handlers[topic].process(step, topic, items)

        try:
            done = await self.commits.commit_step(owned, decide, offsets)
        except SliceFailed as failed:
            self.background.suspend(owned, failed.__cause__)
            background = None
            done = await self.commits.commit_step(owned, decide, offsets)
        except Poison as poisoned:
            if background is None:
                raise
            # Kafka refused the step for good, and a slice rode in it: the slice's output
            # may be what it refused (a message too large for its topic). Redo the records
            # alone; a Poison now is theirs (narrowed without slices), else the slice's.
            background = None
            done = await self.commits.commit_step(owned, decide, offsets)
            if done:
                self.background.suspend(owned, poisoned)
        if done:
            self.holdings.next_offset.update(offsets)
            self.background.due.add(partition)
            if background is not None:
                self.background.sliced(owned, time.monotonic())
            return True
        return False

    async def slice(self, owned: Owned, background: Background) -> None:
        """A background slice as a step of its own (its partition is idle)."""
        try:
            if await self.commits.commit_step(owned, background.run_slice, {}):
                self.background.due.add(owned.partition)
                self.background.sliced(owned, time.monotonic())
        except Poison as exc:
            self.background.suspend(owned, exc)
        except Exception as exc:  # noqa: BLE001 - a bug in background work: stop
            logger.exception("partition %d: background step raised", owned.partition)
            await self.holdings.crash(exc)
