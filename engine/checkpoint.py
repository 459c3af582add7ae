"""The checkpoint: a step's commit protocol, from its Kafka transaction to RocksDB.

One attempt: begin the partition's transaction (before deciding, so its first round
trips overlap the rules), decide, add the changelog records (one per touched key), commit
to Kafka, then write the step's state and the changelog offsets in one RocksDB batch.
RocksDB is written only after Kafka committed, so state never runs ahead of Kafka.

A failure is sorted (:mod:`engine.poison` says what is whose fault):

- the producer is lost (:class:`~engine.committers.Fenced`): the partition is given up
  and the group asked to rejoin (:meth:`Checkpoint.give_up`); never a new producer here;
- deciding raised for the records, or Kafka refused a message for good: :class:`Poison`
  for the caller to narrow down;
- anything else (the broker, the machine): aborted and retried with the same producer
  after a backoff, ownership checked before the wait and after it
  (:meth:`Checkpoint.back_off`); abandoned once the partition is lost or the worker stops;
- RocksDB refusing a step Kafka committed latches the partition (:meth:`Checkpoint.latch`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from aiokafka import TopicPartition

from engine.background import BackgroundSchedule
from engine.committers import Committer, Fenced, StepFailed
from engine.deciding import Decider, InlineDecider
from engine.ownership import Holdings, Owned
from engine.poison import Poison, SliceFailed, environmental, refused
from engine.step import Messages, Step
from state.table import TableSpec
from state.transaction import StepState

logger = logging.getLogger(__name__)

#: Longest wait between two attempts of a failed step.
RETRY_MAX_S = 5.0


class _Undecided(Exception):
    """Deciding raised (its cause): the begun transaction is aborted, then Poison raised."""


class _Unavailable(Exception):
    """Deciding failed for a reason of the machine, not of the records (its cause: an I/O
    or store error): the begun transaction is aborted and the step retried as it is."""


class StepStats:
    """Step figures logged every so often: records, steps, time deciding vs committing.

    Deciding is timed from the step handing its decision to the decider to the decision's
    end, so it includes the wait for the decide thread (other partitions' decisions)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self.since = now
        self.records = 0
        self.steps = 0
        self.messages = 0
        self.step_s = 0.0
        self.commit_s = 0.0
        self.decide_s = 0.0
        self.queued_s = 0.0

    def add(
        self,
        messages: int,
        step_s: float,
        commit_s: float,
        decide_s: float = 0.0,
        queued_s: float = 0.0,
    ) -> None:
        self.steps += 1
        self.messages += messages
        self.step_s += step_s
        self.commit_s += commit_s
        self.decide_s += decide_s
        self.queued_s += queued_s

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self.since < self.every_s or not self.steps:
            return
        logger.info(
            "last %.0fs: %d records in %d steps (%.0f per step), %d messages out; "
            "per step %.1f ms, of which %.1f ms in the Kafka commit; deciding %.1f ms, of "
            "which %.1f ms waiting for the decide thread",
            now - self.since,
            self.records,
            self.steps,
            self.records / self.steps,
            self.messages,
            1000 * self.step_s / self.steps,
            1000 * self.commit_s / self.steps,
            1000 * self.decide_s / self.steps,
            1000 * self.queued_s / self.steps,
        )
        self._reset(now)


class Waiting(Protocol):
    """Records fetched for a partition and not stepped yet (the scheduler's)."""

    def drop_waiting(self, partition: int) -> None:
        """Drop ``partition``'s waiting records: they are fetched again when it is
        assigned again, and committing them now would commit past an abandoned step."""


class Checkpoint:
    """Commits steps: Kafka transaction first, RocksDB after; retries, give-up, latch."""

    def __init__(
        self,
        holdings: Holdings,
        committer: Committer,
        *,
        waiting: Waiting,
        background: BackgroundSchedule,
        app_id: str,
        specs: Sequence[TableSpec],
        topic_order: tuple[str, ...],
        now_ms: Callable[[], int],
        stats: StepStats,
        on_step: Callable[[int, int, float], None] | None = None,
        decider: Decider | None = None,
    ) -> None:
        self.holdings = holdings
        #: Where steps decide (engine.deciding): off the event loop in the worker.
        self.decider: Decider = InlineDecider() if decider is None else decider
        self.committer = committer
        self.waiting = waiting
        self.background = background
        self.app_id = app_id
        self._changelogged = {s.name: s for s in specs}
        self.topic_order = topic_order
        self.now_ms = now_ms
        self.stats = stats
        self.on_step = on_step
        #: Per partition, the (topic, partition) targets its last step wrote to.
        self._likely: dict[int, tuple[tuple[str, int], ...]] = {}
        #: Steps whose deciding failed for a reason of the machine (I/O, the store), retried.
        self.unavailable_steps = 0
        #: Partitions whose step is deciding (from its ``now_ms`` to its decision's end, which
        #: may wait for the decide thread): the loop leaves their stores alone meanwhile.
        self.deciding: set[int] = set()

    async def commit_step(
        self,
        owned: Owned,
        decide: Callable[[Step], None],
        offsets: Mapping[TopicPartition, int],
    ) -> bool:
        """Decide, commit to Kafka, then apply to RocksDB; retry transient failures.

        Returns False when the step was abandoned (partition lost, or stopping).
        """
        attempt = 0
        generation = self.holdings.generation
        while True:
            started = time.perf_counter()
            try:
                # Begun before deciding (see the module docstring), with the targets of the
                # partition's last step, the likely ones of this one. Taken, not read: a
                # failed step forgets them (a deleted topic among them would fail every
                # step after it); a committed one sets them again.
                await self.committer.begin(
                    owned.partition, offsets, self._likely.pop(owned.partition, ())
                )
                step = Step(owned.partition, StepState(owned.store), self.now_ms())
                handed = time.perf_counter()
                self.deciding.add(owned.partition)  # no await since its now_ms was read
                try:
                    messages, targets, began = await self.decider.run(
                        functools.partial(self.decided, decide, step)
                    )
                except SliceFailed:
                    owned.store.objects.clear()  # the slice may have changed cached objects
                    raise
                except Exception as exc:  # noqa: BLE001 - sorted below: the machine, or the records
                    owned.store.objects.clear()  # a handler may have changed cached objects
                    if isinstance(exc, MemoryError):
                        raise  # not the records' fault, nor likely to pass: stop the worker
                    if environmental(exc):
                        raise _Unavailable from exc
                    raise _Undecided from exc  # deterministic: the same records fail again
                finally:
                    self.deciding.discard(owned.partition)
                commit_started = time.perf_counter()
                decide_s, queued_s = commit_started - handed, began - handed
                written = await self.committer.commit(owned.partition, messages, offsets)
                commit_s = time.perf_counter() - commit_started
            except (_Undecided, SliceFailed, _Unavailable, MemoryError) as failed:
                try:
                    await self.committer.abort(owned.partition)
                except Fenced as exc:  # the producer could not abort: it is lost
                    return self.give_up(owned, exc)
                if isinstance(failed, _Undecided):
                    cause = failed.__cause__
                    raise Poison(f"deciding failed: {cause!r}") from cause
                if not isinstance(failed, _Unavailable):
                    raise
                attempt += 1
                self.unavailable_steps += 1
                if not await self.back_off(owned, failed.__cause__ or failed, attempt, generation):
                    return False
                continue
            except Fenced as exc:
                return self.give_up(owned, exc)
            except (StepFailed, OSError, Exception) as exc:  # noqa: BLE001
                # A handler may have changed cached objects in place: drop them all.
                owned.store.objects.clear()
                if refused(exc):
                    # The committer aborted and set its sequence numbers back: the halves
                    # go on with the same producer (never a new one: see give_up).
                    raise Poison(f"Kafka refused a message: {exc!r}") from exc
                attempt += 1
                if not await self.back_off(owned, exc, attempt, generation):
                    return False
                continue
            if attempt:
                logger.info(
                    "partition %d: step committed after %d failed attempts",
                    owned.partition,
                    attempt,
                )
            self._likely[owned.partition] = tuple(messages)
            changelog_offsets = {
                name: written[target] for target, name in targets.items() if target in written
            }
            updates = step.state.updates()
            try:
                owned.store.apply(updates, changelog_offsets)
            except Exception as exc:  # noqa: BLE001 - Kafka has the step, the store has not
                await self.latch(owned, exc)
                return False
            owned.store.objects.settle(updates, step.state.objects)
            for callback in step.after_commit:
                callback()
            elapsed = time.perf_counter() - started
            self.stats.add(
                sum(len(m) for m in messages.values()), elapsed, commit_s, decide_s, queued_s
            )
            if self.on_step is not None:
                self.on_step(owned.partition, len(messages), elapsed)
            return True

    def give_up(self, owned: Owned, exc: Fenced) -> bool:
        """The partition's producer is lost (fenced, or unable to go on): stop the partition
        until the group assigns it again, and ask the group to. Returns False (abandoned).

        Asked even when nobody else took the partition (the broker aborted a transaction
        that outlived its timeout and bumped the epoch): no rebalance would come otherwise.
        Never a new producer here: its InitProducerId would fence whoever owns the
        partition now, and a zombie cannot tell it is one (Kafka Streams' "task migrated").
        Nothing more of it until then: what waits would commit past this step.
        """
        owned.store.objects.clear()
        owned.ready = False
        self.holdings.hold(owned.partition, self.topic_order)
        self.waiting.drop_waiting(owned.partition)
        asked = self.holdings.hooks.rejoin()
        logger.error(
            "partition %d: fenced (%s); %s",
            owned.partition,
            exc,
            "stopped it and asked the group for a new assignment"
            if asked
            else "stopped it until the next assignment",
        )
        return False

    async def back_off(
        self, owned: Owned, exc: BaseException, attempt: int, generation: int
    ) -> bool:
        """Wait before trying a failed step again, with the same producer (a producer the
        group's new owner fenced meanwhile is refused by the broker). False: abandon it
        (partition lost, or stopping), before the wait or after it."""
        held = self.holdings
        if not held.owns(generation):
            logger.warning(
                "partition %d: step abandoned (%r); it will be redone from the committed offsets",
                owned.partition,
                exc,
            )
            return False
        delay = min(RETRY_MAX_S, 0.2 * 2**attempt)
        # Once per streak: a broker or disk away for minutes fails every attempt.
        logger.log(
            logging.WARNING if attempt == 1 else logging.DEBUG,
            "partition %d: step failed (%r); local state untouched, retrying every %.1fs "
            "at most (attempt %d)",
            owned.partition,
            exc,
            RETRY_MAX_S,
            attempt,
        )
        try:
            await asyncio.wait_for(held.stop_requested.wait(), delay)
        except TimeoutError:
            pass
        # Again after the wait: a rebalance or a stop may have come meanwhile.
        if not held.owns(generation):
            logger.warning(
                "partition %d: step abandoned after %d failed attempts; it will be redone "
                "from the committed offsets",
                owned.partition,
                attempt,
            )
            return False
        return True

    async def latch(self, owned: Owned, exc: BaseException) -> None:
        """RocksDB refused a step that Kafka committed: the store is now behind Kafka.

        A next step would decide without this one's writes and overwrite them in the
        changelog, so the partition never steps again here: its inputs are held, its
        waiting records dropped, its background stopped, and the worker stopped with an
        error. Restarted, it restores the store from the offsets it recorded (the failed
        batch wrote none of them), which brings it level with Kafka.
        """
        owned.latched = exc
        owned.ready = False
        owned.store.objects.clear()
        self.holdings.hold(owned.partition, self.topic_order)
        self.waiting.drop_waiting(owned.partition)
        self.background.due.discard(owned.partition)
        logger.critical(
            "partition %d: its step committed to Kafka but the local store refused it (%r); "
            "the partition is stopped and the worker stops: restarted, it restores the "
            "partition from its changelogs",
            owned.partition,
            exc,
        )
        await self.holdings.crash(exc)

    def decided(
        self, decide: Callable[[Step], None], step: Step
    ) -> tuple[Messages, dict[tuple[str, int], str], float]:
        """``decide`` ``step`` (on the decider): its messages with its changelog records, and
        when the decision began (``time.perf_counter``)."""
        began = time.perf_counter()
        decide(step)
        messages, targets = self.with_changelogs(step)
        return messages, targets, began

    def with_changelogs(self, step: Step) -> tuple[Messages, dict[tuple[str, int], str]]:
        """The step's messages plus its changelog records (one per touched key)."""
        messages: Messages = dict(step.messages)
        targets: dict[tuple[str, int], str] = {}
        for column, changes in step.state.updates().items():
            spec = self._changelogged.get(column)
            if spec is None or not changes:
                continue  # a local index column: rebuilt from its table's changelog
            target = (spec.changelog_topic(self.app_id), step.partition)
            if spec.changelog == "segments":
                if spec.encode_segment is None:
                    raise TypeError(f"table {spec.name}: segments need encode_segment")
                values = spec.encode_segment(changes)
                if not values:
                    continue
                messages[target] = [(os.urandom(8), value) for value in values]
            else:
                messages[target] = list(changes.items())  # type: ignore[arg-type]  # None: tombstone
            targets[target] = spec.name
        return messages, targets
