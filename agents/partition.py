"""Processing a batch one source partition at a time.

Faust routes a table write to the changelog partition (and RocksDB store) of the
event being processed, read from a context variable. A ``take_events`` batch can
mix partitions, so before touching state for one partition's records we make an
event of that partition the current one. This is what keeps batched writes on the
right partition; Faust offers no public API for it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from faust.streams import _current_event
from faust.types import EventT


def by_partition(events: Sequence[EventT]) -> dict[int, list[EventT]]:
    """Events grouped by partition number, each group in offset order."""
    groups: dict[int, list[EventT]] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    return groups


@contextmanager
def acting_as(event: EventT) -> Iterator[None]:
    """Make ``event`` Faust's current event for the duration of the block."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
