"""Several kinds of background work behind the engine's one :class:`~engine.engine.Background`.

The engine runs one slice at a time per partition, between its usage steps; with several
kinds of work (drop evaluations, anniversary passes), each slice goes to the first kind, in
the given order, that has work pending, so each keeps its own progress and cursor and none
changes how the engine schedules slices.

A kind whose slice raised on a partition goes last there while another kind has work
pending: the engine suspends the partition's background work for a while after such a
failure, and when it tries again the other kinds go first, so one broken kind cannot stop
the others (a drop evaluation that fails as a whole must not hold up billing anniversaries).
It is tried again once the others have nothing pending.
"""

from __future__ import annotations

from engine.engine import Background
from engine.step import Step
from state.store import PartitionStore


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
