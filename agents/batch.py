"""Batch plumbing the agents share: partition context, write-through, safe acks.

Faust routes a table write to the changelog partition (and RocksDB store) of the
event being processed, read from a context variable that ``take_events`` leaves
unset in the agent's task. So before touching state for one partition's records
we make an event of that partition the current one (Faust has no public API).

Table writes here return the changelog send's future, so a batch can wait until
its state is inside the partition's Kafka transaction before its records are
acked: under exactly-once Faust's commit does not flush queued changelog records,
which could otherwise land in the next transaction.

Faust acks a ``take_events`` batch even when the batch body raises, losing it.
:func:`pinned` holds an extra reference on every event and acks only on success,
so a failing batch stays uncommitted and is redelivered after the crash.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event
from faust.types import EventT


def by_partition(events: Sequence[EventT[Any]]) -> dict[int, list[EventT[Any]]]:
    """Events grouped by partition number, each group in offset order."""
    groups: dict[int, list[EventT[Any]]] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    return groups


@contextmanager
def acting_as(event: EventT[Any]) -> Iterator[None]:
    """Make ``event`` Faust's current event for the duration of the block."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


@contextmanager
def pinned(events: Sequence[EventT[Any]]) -> Iterator[None]:
    """Ack ``events`` only if the block succeeds (see module docstring)."""
    for event in events:
        event.message.incref()
    yield
    for event in events:
        event.ack()


class Writes:
    """Collects the futures of one batch's sends so they can be awaited together."""

    def __init__(self) -> None:
        self._pending: list[Awaitable[Any]] = []

    def put(self, table: Any, key: Any, value: Any, partition: int) -> None:
        """``table[key] = value`` on ``partition``'s store and changelog."""
        table.data[key] = value
        self._pending.append(table.send_changelog(partition, key, value))

    def delete(self, table: Any, key: Any, partition: int) -> None:
        """``del table[key]`` on ``partition``'s store and changelog."""
        if key in table.data:
            del table.data[key]
        self._pending.append(table.send_changelog(partition, key, None))

    async def send(self, topic: Any, key: bytes | None, value: bytes, partition: int) -> None:
        """Send to ``partition`` of ``topic`` (inside its transaction under exactly-once)."""
        self._pending.append(await topic.send(key=key, value=value, partition=partition))

    def add(self, future: Awaitable[Any]) -> None:
        """Wait for ``future`` too."""
        self._pending.append(future)

    async def flush(self) -> None:
        """Wait until every write and send of the batch is acknowledged by Kafka."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
