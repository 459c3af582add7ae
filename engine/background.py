"""Background work: slices of long passes (drop evaluations, anniversary passes) between
the usage steps of a partition.

A slice is a step of its own when its partition is idle, and rides at the start of a
usage step when the partition is busy and its last slice is :data:`FOLD_EVERY_S` old,
so a million accounts to evaluate never stall usage for long, and steady usage never
starves them. A slice that fails for good suspends its partition's background work,
tried again after a wait that doubles on each failure in a row
(:class:`BackgroundSchedule`); usage goes on meanwhile.

With several kinds of work (:class:`Backgrounds`), each slice goes to the first kind, in
the given order, that has work pending, so each keeps its own progress and cursor and
none changes how the engine schedules slices. A kind whose slice raised on a partition
goes last there while another kind has work pending, so one broken kind cannot stop the
others (a drop evaluation that fails as a whole must not hold up billing anniversaries).
It is tried again once the others have nothing pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.ownership import Owned
from engine.step import Step
from state.store import PartitionStore

logger = logging.getLogger(__name__)

#: A partition's background work that failed for good is tried again after this many
#: seconds, doubling on each failure in a row up to :data:`BACKGROUND_RETRY_MAX_S`.
BACKGROUND_RETRY_FIRST_S = 30.0
BACKGROUND_RETRY_MAX_S = 1800.0
#: A busy partition with background work pending runs a slice at the start of a usage
#: step once its last slice is this old: slices as steps of their own wait for the
#: partition to be idle, which steady usage never leaves it (docs/benchmark.md). A slice
#: spends at most its own budget (20 ms), so this caps background work at about 4 % of a
#: busy partition's time.
FOLD_EVERY_S = 0.5


class Background(Protocol):
    """Work a partition does in slices when it has no records to process (drop evaluation)."""

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether ``partition`` has a slice to run."""
        ...

    def run_slice(self, step: Step) -> None:
        """Do one bounded slice of the work as ``step``."""


class Backgrounds:
    """Background work made of ``works``, served in order."""

    def __init__(self, *works: Background) -> None:
        self.works = works
        #: Per partition, the index of the work whose last slice there raised.
        self._failed: dict[int, int] = {}

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether any of the works has a slice to run on ``partition``."""
        return any(work.pending(store, partition) for work in self.works)

    def run_slice(self, step: Step) -> None:
        """One slice of the first work with a slice pending (one that failed last)."""
        pending = [
            i for i, work in enumerate(self.works) if work.pending(step.state.store, step.partition)
        ]
        failed = self._failed.get(step.partition)
        chosen = [i for i in pending if i != failed] or pending
        if not chosen:
            return
        index = chosen[0]
        try:
            self.works[index].run_slice(step)
        except Exception:
            self._failed[step.partition] = index
            raise
        if failed == index:
            del self._failed[step.partition]


class BackgroundSchedule:
    """When each owned partition's background work runs: a slice step when it is idle,
    a slice folded into a usage step when it is busy, nothing while suspended."""

    def __init__(
        self,
        work: Background | None,
        owned: Mapping[int, Owned],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.work = work
        self.owned = owned
        #: Monotonic seconds, for the backoff of suspended background work.
        self.clock = clock
        #: Partitions whose background work is to be looked at.
        self.due: set[int] = set()
        #: Per partition, when its last background slice committed (monotonic seconds).
        self._last_slice: dict[int, float] = {}

    def sliced(self, owned: Owned, at: float) -> None:
        """A slice of ``owned`` committed at ``at`` (monotonic): a success ends a backoff."""
        self._last_slice[owned.partition] = at
        owned.background_backoff_s = 0.0

    def to_fold(self, owned: Owned) -> Background | None:
        """The background work to run at the start of ``owned``'s next usage step, if any:
        pending, and the partition's last slice :data:`FOLD_EVERY_S` old."""
        background = self.work
        if (
            background is None
            or owned.partition not in self.due
            or not owned.plans_caught_up
            or owned.background_suspended
            or owned.latched is not None
        ):
            return None
        now = time.monotonic()
        last = self._last_slice.setdefault(owned.partition, now)
        if now - last < FOLD_EVERY_S:
            return None
        if not background.pending(owned.store, owned.partition):
            self._last_slice[owned.partition] = now  # nothing to do: look again later
            return None
        return background

    def suspend(self, owned: Owned, cause: BaseException | None) -> None:
        """Stop ``owned``'s background work for a while; its usage goes on."""
        # No record to set aside here (contract 4: nothing stalls usage). Tried again later:
        # what failed may pass (a topic's settings, an account since fixed), and closed
        # periods wait for the passes. The wait doubles while it fails.
        backoff = owned.background_backoff_s
        backoff = (
            BACKGROUND_RETRY_FIRST_S if backoff <= 0 else min(BACKGROUND_RETRY_MAX_S, 2 * backoff)
        )
        owned.background_backoff_s = backoff
        owned.background_retry_at = self.clock() + backoff
        owned.background_suspended = True
        logger.error(
            "partition %d: background work failed for good (%r); suspended, tried again in %.0fs",
            owned.partition,
            cause,
            backoff,
        )

    def resume(self) -> None:
        """Try suspended background work again once its backoff has passed."""
        now: float | None = None
        for owned in self.owned.values():
            if not owned.background_suspended:
                continue
            now = self.clock() if now is None else now
            if now >= owned.background_retry_at:
                owned.background_suspended = False
                self.due.add(owned.partition)
                logger.info("partition %d: trying suspended background work again", owned.partition)

    def to_start(self, idle: Callable[[int], bool]) -> list[tuple[Owned, Background]]:
        """The partitions whose slice should start now as a step of its own (idle, with
        work pending); partitions that cannot run one are no longer due."""
        background = self.work
        if background is None:
            self.due.clear()
            return []
        starting: list[tuple[Owned, Background]] = []
        for partition in sorted(self.due):
            owned = self.owned.get(partition)
            if (
                owned is None
                or not owned.ready
                or not owned.plans_caught_up
                or owned.background_suspended
                or owned.latched is not None
            ):
                self.due.discard(partition)
                continue
            if not idle(partition):
                continue  # usage first; the slice comes when the partition is idle
            self.due.discard(partition)
            if background.pending(owned.store, partition):
                starting.append((owned, background))
        return starting


#: What a slice's judge returns for one key: (kind, key, payload) of each event to send;
#: the payload is encoded (JSON) outside the judgement, so an event that cannot be encoded
#: fails the slice instead of skipping its account.
Sent = tuple[str, bytes, Any]
#: Queues one event in a step: ``(step, kind, key, payload)`` (the worker's
#: ``Runtime.send_event``, which adds the topic, the JSON and the CloudEvents headers).
SendEvent = Callable[[Step, str, bytes, Any], None]


@dataclass(slots=True)
class SliceOutcome:
    """What one slice over a table's keys did."""

    #: The last key judged or skipped: where the next slice starts (after it).
    last: str | None = None
    #: No key was left after ``last``: the pass is complete.
    exhausted: bool = True
    keys: int = 0
    skipped: int = 0
    #: Events sent, by kind.
    events: dict[str, int] = field(default_factory=dict)


def slice_keys(
    step: Step,
    table: str,
    cursor: str,
    judge: Callable[[str, bytes], Iterable[Sent]],
    send_event: SendEvent,
    *,
    pass_name: str,
    max_keys: int,
    budget_s: float,
    max_events: int | None = None,
) -> SliceOutcome:
    """Judge the keys of ``table`` after ``cursor`` ("" for the first) in ``step``, sending
    what each judgement gives, until ``max_keys`` keys, ``max_events`` events or
    ``budget_s`` seconds (at least one key) are spent.

    A key whose judgement raises is skipped with its writes undone and logged as skipped
    by ``pass_name``: the cursor moves past it, so one account never stops the pass.
    """
    state = step.state
    deadline = time.perf_counter() + budget_s
    start = None if cursor == "" else cursor.encode() + b"\x00"
    out = SliceOutcome()
    sent = 0
    for raw_key, value in state.store.items(table, start):
        if (
            out.keys >= max_keys
            or (max_events is not None and sent >= max_events)
            or (out.keys and time.perf_counter() > deadline)
        ):
            out.exhausted = False
            break
        out.keys += 1
        key = raw_key.decode()
        out.last = key
        try:
            messages = list(judge(key, value))
        except Exception as exc:  # noqa: BLE001 - one account must not stop the pass
            state.discard_key(raw_key)
            out.skipped += 1
            logger.error(
                "partition %d: account %r skipped by %s: %r", step.partition, key, pass_name, exc
            )
            continue
        for kind, message_key, payload in messages:
            send_event(step, kind, message_key, payload)
            out.events[kind] = out.events.get(kind, 0) + 1
            sent += 1
    return out
