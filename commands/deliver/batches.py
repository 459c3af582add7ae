"""A fetch's records, delivered as chains per account, and the offsets safe to commit.

Records of one key (the account id) go one after the other, in the order they were written;
chains of different keys run concurrently, at most ``concurrency`` requests at a time. The
offsets to commit are, per partition, those of the first record whose outcome is not recorded
yet (at least once: a record is never committed before it is delivered, retried or
dead-lettered); the consumer seeks back to that record to read it again when the batch is
abandoned (on stop) or a write to Kafka failed.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from commands.deliver.delivery import Inbound, Outcome

logger = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


@dataclass
class Batch:
    """The records of one fetch for one endpoint, and which of them are done."""

    records: Sequence[Inbound]
    deliver: Callable[[Inbound], Awaitable[Outcome]]
    concurrency: asyncio.Semaphore
    done: set[tuple[str, int, int]] = field(default_factory=set)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    failed: int = 0

    def chains(self) -> list[list[Inbound]]:
        """The records grouped by key, each group in the order written: an account's events
        of one kind are in one partition's order; events of several kinds (topics) are put
        merged by their Kafka timestamps (the worker's send time), never reordering a
        partition."""
        by_key: dict[bytes | None, dict[tuple[str, int], list[Inbound]]] = {}
        for record in self.records:
            by_tp = by_key.setdefault(record.key, {})
            by_tp.setdefault((record.topic, record.partition), []).append(record)
        # heapq.merge only ever takes a list's head: a partition's order is kept as read.
        return [
            list(heapq.merge(*by_tp.values(), key=lambda r: r.timestamp_ms))
            for by_tp in by_key.values()
        ]

    async def run(self) -> None:
        """Deliver every chain; a chain stops at a record whose outcome could not be
        recorded (logged; the record is read again later)."""
        await asyncio.gather(*(self._chain(chain) for chain in self.chains()))

    async def _chain(self, chain: Sequence[Inbound]) -> None:
        for record in chain:
            try:
                async with self.concurrency:
                    outcome = await self.deliver(record)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A write to Kafka that failed after the producer's own retries: this record
                # and the rest of its chain are read again (at least once).
                logger.exception(
                    "delivery of %s/%d@%d not recorded; it will be tried again",
                    record.topic,
                    record.partition,
                    record.offset,
                )
                self.failed += 1
                return
            self.done.add((record.topic, record.partition, record.offset))
            self.outcomes[outcome] += 1

    def settle(self) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int]]:
        """(offsets to commit, offsets to seek back to), per partition.

        A partition's commit is the offset after its last record when all are done, else
        the offset of its first record not done (also where to seek back to); a partition
        whose first record is not done has nothing to commit."""
        commit: dict[TopicPartitionKey, int] = {}
        rewind: dict[TopicPartitionKey, int] = {}
        by_tp: dict[TopicPartitionKey, list[int]] = {}
        for record in self.records:
            by_tp.setdefault((record.topic, record.partition), []).append(record.offset)
        for tp, offsets in by_tp.items():
            offsets.sort()
            first_open = next((o for o in offsets if (*tp, o) not in self.done), None)
            if first_open is None:
                commit[tp] = offsets[-1] + 1
            else:
                rewind[tp] = first_open
                if first_open > offsets[0]:
                    commit[tp] = first_open
        return commit, rewind
