"""Keeps Faust's commits out of the middle of a processing step.

Under exactly-once, Faust commits the open Kafka transaction of every partition on
a timer (and every N acks), independently of what the agents are doing. A batch
whose table writes straddle such a commit has part of its state in one
transaction and the rest, with its input offsets, in the next; a crash before the
second commits leaves committed state (totals) without its dedup entries, and the
redelivered records are counted twice. The SIGKILL integration test caught this.

:class:`CommitGuard` wraps the consumer's ``commit`` so it waits while a step
holds :attr:`CommitGuard.lock`; a step takes the lock around its writes, sends,
flush and acks, so the step is wholly inside one transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CommitGuard:
    """An asyncio lock shared by processing steps and the consumer's commits."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._installed: set[int] = set()

    def install(self, consumer: Any) -> None:
        """Route ``consumer.commit`` through the lock (idempotent per consumer)."""
        if consumer is None or id(consumer) in self._installed:
            return
        original = consumer.commit
        lock = self.lock

        async def guarded_commit(*args: Any, **kwargs: Any) -> Any:
            async with lock:
                return await original(*args, **kwargs)

        consumer.commit = guarded_commit
        self._installed.add(id(consumer))


commit_guard = CommitGuard()
