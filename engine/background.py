"""Several kinds of background work behind the engine's one :class:`~engine.engine.Background`.

The engine runs one slice at a time per partition, between its usage steps; with several
kinds of work (drop evaluations, anniversary passes), each slice goes to the first kind, in
the given order, that has work pending, so each keeps its own progress and cursor and none
changes how the engine schedules slices.
"""

from __future__ import annotations

from engine.engine import Background
from engine.step import Step
from state.store import PartitionStore


class Backgrounds:
    """Background work made of ``works``, served in order."""

    def __init__(self, *works: Background) -> None:
        self.works = works

    def pending(self, store: PartitionStore, partition: int) -> bool:
        """Whether any of the works has a slice to run on ``partition``."""
        return any(work.pending(store, partition) for work in self.works)

    def run_slice(self, step: Step) -> None:
        """One slice of the first work with a slice pending."""
        for work in self.works:
            if work.pending(step.state.store, step.partition):
                work.run_slice(step)
                return
