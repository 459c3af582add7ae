"""A processing step's view of one partition store: reads through, writes coalesced.

Nothing here touches RocksDB's contents: reads go to the store (or to what the
step already wrote), writes stay in memory, one per key however often it was
written, until the engine has committed the step's Kafka transaction and calls
:meth:`StepState.updates` to apply them. An aborted step simply drops the object,
leaving the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar, cast

from state.store import PartitionStore

_MISSING = object()
T = TypeVar("T")


class StepState:
    """Reads and pending writes of one step on one partition store."""

    __slots__ = ("store", "_writes", "_local", "objects")

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self._writes: dict[str, dict[bytes, bytes | None]] = {}
        # Writes that are local only (no changelog record), e.g. dedup index entries
        # whose changelog is a per-step segment written by the table itself.
        self._local: set[str] = set()
        #: Decoded values this step read or wrote, for the store's object cache.
        self.objects: dict[tuple[str, bytes], object] = {}

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value as this step sees it (its own writes first)."""
        pending = self._writes.get(table)
        if pending is not None:
            found = pending.get(key, _MISSING)
            if found is not _MISSING:
                return found  # type: ignore[return-value]  # bytes | None, narrowed by _MISSING
        return self.store.get(table, key)

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values of ``keys`` as this step sees them, with one multi-get for the rest."""
        pending = self._writes.get(table, {})
        missing = [k for k in keys if k not in pending]
        fetched = dict(zip(missing, self.store.get_many(table, missing), strict=True))
        return [pending[k] if k in pending else fetched[k] for k in keys]

    def get_object(self, table: str, key: bytes, decode: Callable[[bytes | None], T]) -> T:
        """The decoded value of ``key``: from this step, the store's cache, or RocksDB."""
        k = (table, key)
        found = self.objects.get(k)
        if found is None:
            found = self.store.objects.get(table, key)
            if found is None or key in self._writes.get(table, ()):
                found = decode(self.get(table, key))
            self.objects[k] = found
        return cast(T, found)

    def known(self, table: str, key: bytes) -> bool:
        """Whether the decoded value of ``key`` is at hand: read or written by this step, or
        in the store's object cache and not written since (:meth:`get_object` then decodes
        nothing)."""
        return (table, key) in self.objects or (
            self.store.objects.holds(table, key) and key not in self._writes.get(table, ())
        )

    def put_object(self, table: str, key: bytes, obj: object, value: bytes | None) -> None:
        """Write ``value`` (None deletes) whose decoded form is ``obj``."""
        writes = self._writes.get(table)
        if writes is None:
            writes = self._writes[table] = {}
        writes[key] = value  # None deletes
        self.objects[(table, key)] = obj

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Set ``key`` (the last write of a key in a step wins)."""
        # Not setdefault(table, {}): its default is a new dict on every call.
        writes = self._writes.get(table)
        if writes is None:
            writes = self._writes[table] = {}
        writes[key] = value

    def put_many(self, table: str, keys: Iterable[bytes], value: bytes) -> None:
        """Set every key of ``keys`` to ``value`` (one dict update: the dedup table marks
        every record of a step this way)."""
        self._writes.setdefault(table, {}).update(dict.fromkeys(keys, value))

    def delete(self, table: str, key: bytes) -> None:
        """Delete ``key``."""
        self._writes.setdefault(table, {})[key] = None

    def mark_local(self, table: str) -> None:
        """``table``'s writes get no changelog records of their own."""
        self._local.add(table)

    def is_local(self, table: str) -> bool:
        """Whether ``table``'s writes skip the per-key changelog."""
        return table in self._local

    def discard_key(self, key: bytes) -> None:
        """Undo what this step did to ``key`` in every table: its pending writes and
        decoded objects go, and the store's cached objects of it too (one may have been
        changed in place). For a background pass that skips an account which failed half
        way, when nothing else of the step wrote the account's keys before it."""
        for writes in self._writes.values():
            writes.pop(key, None)
        for table in list(self._writes) + list(self.store.tables):
            self.objects.pop((table, key), None)
        self.store.objects.forget((table, key) for table in self.store.tables)

    def updates(self) -> dict[str, dict[bytes, bytes | None]]:
        """Every pending write: table -> key -> value (None deletes)."""
        return self._writes

    def __len__(self) -> int:
        return sum(len(w) for w in self._writes.values())
