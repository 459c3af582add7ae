"""What the store layer needs to know of a table: its name and how it is changelogged.

Two kinds of changelog:

- ``keyed`` (the default): a compacted topic with one record per touched key per
  step (``None`` value for a delete); restore puts each record back as it is.
- ``segments``: for append-mostly data that expires by time (dedup entries). A step
  writes *one* record holding all the keys it added, and the topic's retention
  (not compaction) expires old segments; restore hands each segment to
  :attr:`TableSpec.restore_segment`, which may drop what has expired by now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

#: table -> key -> value (None deletes)
Writes = dict[str, dict[bytes, bytes | None]]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table of the worker: a column family in every partition store."""

    name: str
    help: str
    changelog: Literal["keyed", "segments"] = "keyed"
    #: Whether most lookups ask for keys the table does not hold (its memtables then keep
    #: a bloom filter: :meth:`state.store.StoreOptions.options`).
    probed: bool = False
    #: Extra column families the table keeps locally (indexes), never changelogged.
    local_columns: tuple[str, ...] = ()
    #: ``segments`` only: the step's writes to this table -> changelog values (each well
    #: under Kafka's message size limit).
    encode_segment: Callable[[Mapping[bytes, bytes | None]], list[bytes]] | None = None
    #: ``segments`` only: (changelog value, now in epoch ms) -> writes to apply.
    restore_segment: Callable[[bytes, int], Writes] | None = None
    #: ``segments`` only: how long the changelog keeps a segment (ms).
    retention_ms: int | None = None
    #: ``segments`` only: what a rebuild finds thanks to that retention, in words for the
    #: operator (``"every record_id of MOMENTS_DEDUP_HORIZON=604800s plus a day"``).
    keeps: str = ""

    def changelog_topic(self, app_id: str) -> str:
        """Name of the table's changelog topic."""
        suffix = "segments-changelog" if self.changelog == "segments" else "changelog"
        return f"{app_id}-{self.name}-{suffix}"

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column family of the table."""
        return (self.name, *self.local_columns)
