"""The cyclic garbage collector, timed by the engine's steps instead of by allocations.

A step decides in plain Python: its records, the state it reads and the events it makes
are objects that stay alive until the step has committed and applied. Collected by
allocation counts (the worker's young generation every 10,000), the collector kept
walking those live objects in the middle of a step, promoted them, and walked them again
in the older generations: about 30 % of the usage intake's CPU (docs/benchmark.md).

So, while any step is in flight (steps of different partitions overlap), automatic
collection is off; when the last one ends it is on again, and since a step's objects are
freed by then, the allocation count it meets is the little that survived (caches, cyclic
garbage). Cycles must still be reclaimed while steps keep overlapping under load: at
every step's end, and at the step loop's housekeeping, :meth:`Collector.tend` collects
when the young generation has grown by ``valve`` times its threshold, choosing the
generation as CPython does (an older one when its own count is due), so full
collections still happen and memory cannot grow without bound.

A step never leaves the collector disabled: it is enabled again in a ``finally`` (a
step that raised, or a task cancelled), unless it was disabled before the first step.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

#: How many times the young generation's threshold may accumulate while steps overlap
#: before :meth:`Collector.tend` collects anyway (10,000 x 10: about 100,000 objects).
VALVE = 10


class GcLike(Protocol):
    """The part of :mod:`gc` the collector uses (a fake in tests)."""

    def isenabled(self) -> bool: ...
    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def get_count(self) -> tuple[int, int, int]: ...
    def get_threshold(self) -> tuple[int, int, int]: ...
    def collect(self, generation: int = 2) -> int: ...


class Collector:
    """Automatic collection off while steps run; collected between and, if need be, at ends."""

    def __init__(self, collector: GcLike = gc, valve: int = VALVE) -> None:
        self.gc = collector
        self.valve = valve
        #: Steps in flight.
        self.depth = 0
        #: Whether automatic collection was on when the first step in flight started.
        self.restore = False
        #: Collections :meth:`tend` made (for tests and the curious).
        self.collections = 0

    @contextmanager
    def step(self) -> Iterator[None]:
        """Around a whole step (it may await): no automatic collection until it ends."""
        if self.depth == 0:
            self.restore = self.gc.isenabled()
            self.gc.disable()
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.restore:
                self.gc.enable()
            self.tend()

    def tend(self) -> None:
        """Collect if steps have held the collector off for ``valve`` young thresholds."""
        if self.depth == 0 or not self.restore:
            return  # automatic collection does it (or it was off before the steps)
        count = self.gc.get_count()
        threshold = self.gc.get_threshold()
        if count[0] < self.valve * threshold[0]:
            return
        generation = 0
        if count[1] >= threshold[1]:
            generation = 2 if count[2] >= threshold[2] else 1
        self.gc.collect(generation)
        self.collections += 1


#: The one of the process: the collector's switch is global, so are the steps counted.
COLLECTOR = Collector()
