"""How far the usage agent has processed each input partition.

The drop scheduler evaluates a closed day only once a partition has caught up with
the backlog it had when the day closed (contract 3.2); this is where it looks.
"""

from __future__ import annotations

from typing import Any


class Progress:
    """Offset after the last processed record, per (topic, partition)."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def processed(self, topic: str, partition: int, offset: int) -> None:
        """Records up to ``offset`` of ``topic``/``partition`` are processed and written."""
        key = (topic, partition)
        if offset + 1 > self._next.get(key, -1):
            self._next[key] = offset + 1

    def processed_next(self, tp: Any) -> int:
        """Offset after the last processed record of ``tp`` (-1 when none this run)."""
        return self._next.get((tp.topic, tp.partition), -1)


usage_progress = Progress()
