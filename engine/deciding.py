"""Where steps decide: on a thread of their own, so the event loop stays free for Kafka.

A step's decision is plain synchronous Python (the rules over its records). Run on the
event loop, it held the loop for its whole length, and every other partition's Kafka
round trips waited behind it: a commit is a chain of round trips (AddPartitionsToTxn,
AddOffsetsToTxn, TxnOffsetCommit, the produce, EndTxn) and each answer is handled only
when the loop is free, so under load a commit took several decisions of other partitions
(measured with the latency bench: docs/benchmark.md). Decisions run on one thread, one at
a time (as they did on the loop: two never overlap, so what the rules share in memory is
used by one of them at a time), and the loop answers the brokers meanwhile (the
interpreter hands the GIL over every few milliseconds).

Nothing else changes: a step decides on a StepState that only it writes, its partition
has no other step, RocksDB is written on the loop after the commit, and a step cancelled
while it decides waits for its decision to end before the cancellation goes on (the
store must not be closed under it, nor its caches cleared); a step cancelled while its
decision still waits for the thread leaves at once, and its decision never runs. The
loop's own writes to a store (expiry: ``Engine._maintain``) wait while its partition
decides (``Checkpoint.deciding``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")


class Decider(Protocol):
    """Runs a step's synchronous decision and returns its result."""

    async def run(self, decide: Callable[[], T]) -> T:
        """``decide()``, awaited."""
        ...

    def close(self) -> None:
        """No more decisions."""


class InlineDecider:
    """Decides on the event loop itself (the loop waits for the decision)."""

    async def run(self, decide: Callable[[], T]) -> T:
        return decide()

    def close(self) -> None:
        return None


class ThreadDecider:
    """Decides on one thread of its own, one decision at a time."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, decide: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moments-decide")
        handed = self._executor.submit(decide)
        future = asyncio.wrap_future(handed)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The step is cancelled: a decision not started yet (behind other partitions')
            # never starts, and one running ends first; then the cancellation goes on.
            # Left queued, the decisions of every step a stop abandons would each run, for
            # nothing, before the stop could end.
            handed.cancel()
            while not future.done():
                try:
                    await asyncio.wait({future})
                except asyncio.CancelledError:
                    continue
            if not future.cancelled():
                future.exception()  # seen: nobody else will look at it
            raise

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
