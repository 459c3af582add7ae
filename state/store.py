"""One RocksDB database per input partition: a column family per table, plus metadata.

Every table of a partition lives in the same database, so one processing step's
writes to all of them, together with the changelog offsets they reflect, are one
``WriteBatch``: atomic with the write-ahead log on, across column families. The
engine applies a step's batch only after the step's Kafka transaction commits, so
what is on disk never runs ahead of what Kafka holds; the recorded offsets tell
recovery where to resume reading the changelogs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import struct
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

logger = logging.getLogger(__name__)

#: Column family of the store's own bookkeeping (changelog offsets, time last in sync).
META = "__meta__"
_OFFSET_PREFIX = b"changelog-offset:"
_OFFSET = struct.Struct(">q")
_SYNCED_KEY = b"synced-ms"
#: A probed memtable's bloom filter, as a share of the memtable (~10 bits per dedup entry).
_MEMTABLE_BLOOM_RATIO = 0.02
_V = TypeVar("_V")


class StoreClosed(RuntimeError):
    """A store was used after :meth:`PartitionStore.close` (its partition went elsewhere)."""


class _Families(dict[str, _V]):
    """Column families by table name; once the store is closed, any lookup raises
    :class:`StoreClosed` (a plain dict raised ``KeyError('__meta__')``)."""

    def __init__(self, path: Path, families: Mapping[str, _V]) -> None:
        super().__init__(families)
        self._path = path
        self.closed = False

    def __missing__(self, key: str) -> _V:
        if self.closed:
            raise StoreClosed(f"store {self._path} is closed (reading {key})")
        raise KeyError(key)


#: ``None`` as a value deletes the key.
Updates = Mapping[str, Mapping[bytes, bytes | None]]


#: glibc's ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (malloc.h).
_M_MMAP_THRESHOLD = -3
#: glibc's default threshold: blocks of 128 kB or more get their own mapping.
MMAP_THRESHOLD = 128 << 10


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold, so large blocks RocksDB frees go back to the system.

    By default glibc raises the threshold (up to 32 MB) each time a mapped block is
    freed; after RocksDB frees its first memtable arena block (write buffer / 8) or
    flush and compaction buffer, such blocks are carved from the heaps of the malloc
    arenas (one per thread using RocksDB) and, once freed, stay there as holes that
    are never returned. Issue #8: with the threshold left dynamic the worker's RSS
    grew by ~60 MB over a 1M-record backlog (glibc free space 12 -> 98 MB, in-use
    flat); set explicitly, the threshold stays put and RSS stays flat. Call it at
    start-up, before any store opens. Returns False where malloc is not glibc's.
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # no such confstr name, or no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, nbytes))


def _offset_key(table: str) -> bytes:
    return _OFFSET_PREFIX + table.encode()


class StoreOptions:
    """RocksDB tuning shared by every partition of a worker (one block cache for all)."""

    def __init__(
        self, *, cache_mb: int, write_buffer_mb: int, probed: Collection[str] = ()
    ) -> None:
        self._cache = Cache(max(1, cache_mb) << 20)
        self._write_buffer = max(1, write_buffer_mb) << 20
        #: Column families looked up mostly for keys they do not hold (see :meth:`options`).
        self.probed = frozenset(probed)

    def options(self, column: str | None = None) -> Options:
        """Options of one column family (and of the database, with no ``column``).

        A :attr:`probed` column's memtables keep a bloom filter of their whole keys: the
        dedup table is asked once per record for a key it nearly never holds, and without
        one such a miss walks the memtable's skip list (2-3 us a key against 0.6-0.9 with
        it, docs/benchmark.md). Each filter costs 2 % of a memtable (80 kB of 4 MB), so
        only these columns have one.
        """
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_write_buffer_size(self._write_buffer)
        opts.set_max_write_buffer_number(2)
        opts.set_target_file_size_base(16 << 20)
        opts.set_max_open_files(128)
        opts.set_compression_type(DBCompressionType.lz4())
        table = BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        if column in self.probed:
            opts.set_memtable_prefix_bloom_ratio(_MEMTABLE_BLOOM_RATIO)
            opts.set_memtable_whole_key_filtering(True)
        return opts


class ObjectCache:
    """Decoded values of a store's hottest keys, so a step skips decoding them.

    Holds exactly what RocksDB holds, decoded: the engine adds a step's objects only
    after the step is applied, and clears the cache when a step fails (a handler may
    have changed a cached object in place before the failure).
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, bytes], object] = OrderedDict()
        #: Tables that ever had an object here: a step's writes to the others (dedup
        #: entries, one per record) have nothing to forget.
        self._tables: set[str] = set()

    def get(self, table: str, key: bytes) -> object | None:
        """The cached object of ``key``, or None. Not moved to the recent end here: a step
        keeps what it read among its objects, and :meth:`settle` moves them all there once
        the step is applied (a failed step clears the cache)."""
        return self._items.get((table, key))

    def holds(self, table: str, key: bytes) -> bool:
        """Whether ``key`` of ``table`` is cached (without making it the most recent)."""
        return (table, key) in self._items

    def update(self, objects: Mapping[tuple[str, bytes], object]) -> None:
        """Cache ``objects`` (as now applied), evicting the least recently used."""
        items = self._items
        tables = self._tables
        move_to_end = items.move_to_end  # bound once: a step settles an object per key
        for k, obj in objects.items():
            if obj is None:
                items.pop(k, None)
                continue
            items[k] = obj
            move_to_end(k)
            tables.add(k[0])
        while len(items) > self.max_entries:
            items.popitem(last=False)

    def settle(
        self, writes: Mapping[str, Iterable[bytes]], objects: Mapping[tuple[str, bytes], object]
    ) -> None:
        """A step's ``writes`` (table -> keys) are applied: forget the keys it wrote without
        an object (what is cached of them is stale), then cache its ``objects``."""
        items = self._items
        for table in self._tables.intersection(writes):
            for key in writes[table]:
                k = (table, key)
                if k not in objects:
                    items.pop(k, None)
        self.update(objects)

    def forget(self, keys: Iterable[tuple[str, bytes]]) -> None:
        """Drop ``keys`` (deleted, or written without an object)."""
        for k in keys:
            self._items.pop(k, None)

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class PartitionStore:
    """The tables of one input partition, in one RocksDB database at ``path``."""

    def __init__(
        self, path: Path, tables: Sequence[str], options: StoreOptions, cached_objects: int = 0
    ) -> None:
        self.path = path
        self.objects = ObjectCache(cached_objects)
        self.tables = tuple(tables)
        path.parent.mkdir(parents=True, exist_ok=True)
        families = {name: options.options(name) for name in (*self.tables, META)}
        self._db = Rdict(str(path), options.options(), column_families=families)
        self._cf = _Families(path, {n: self._db.get_column_family(n) for n in families})
        self._handles = _Families(path, {n: self._db.get_column_family_handle(n) for n in families})
        held = self._cf[META].get(_SYNCED_KEY)
        #: Wall time (ms) at which this store last reflected its changelogs up to their
        #: end (see :meth:`mark_synced`); None: never recorded.
        self.synced_ms: int | None = None if held is None else int(_OFFSET.unpack(held)[0])
        #: Whether :attr:`synced_ms` may be moved on while the partition stays held
        #: (in memory only: set by :meth:`mark_synced`, cleared by :meth:`distrust`).
        self.trusted = False
        # The WAL stays on: a process crash keeps every applied batch, and a machine
        # crash loses a suffix of batches together with the offsets they recorded.
        self._write_opts = WriteOptions()

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value of ``key`` in ``table``, or None."""
        value: bytes | None = self._cf[table].get(key)
        return value

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values of ``keys`` (None where missing), in order, with one multi-get."""
        if not keys:
            return []
        values: list[bytes | None] = self._cf[table].get(list(keys)) or []
        return values

    def items(self, table: str, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Key-ordered ``(key, value)`` pairs of ``table`` from ``start`` (inclusive)."""
        it = self._cf[table].iter()
        if start is None:
            it.seek_to_first()
        else:
            it.seek(start)
        while it.valid():
            yield it.key(), it.value()
            it.next()

    def estimate_keys(self, table: str) -> int:
        """RocksDB's estimate of the number of keys in ``table``."""
        cf = self._cf[table]
        return int(cf.property_int_value("rocksdb.estimate-num-keys") or 0)

    def changelog_offset(self, table: str) -> int | None:
        """Offset of the last changelog record of ``table`` reflected here, or None."""
        held = self._cf[META].get(_offset_key(table))
        return None if held is None else int(_OFFSET.unpack(held)[0])

    def has_offsets(self) -> bool:
        """Whether any table reflects changelog records (the store is not empty)."""
        return any(self.changelog_offset(t) is not None for t in self.tables)

    def mark_synced(self, at_ms: int) -> None:
        """Record that at wall time ``at_ms`` this store reflected every changelog record
        below the end (last stable offset) of each of its changelogs.

        Only a caller that knows it says so: a restore that reached the end offsets it
        read at ``at_ms`` after the fence, a standby whose position passed the last
        stable offset of a fetch answered at ``at_ms``, or the owner of a restored
        partition. Never moves back. The store is then trusted (see :meth:`distrust`).
        """
        self.trusted = True
        if self.synced_ms is not None and at_ms <= self.synced_ms:
            return
        self._cf[META][_SYNCED_KEY] = _OFFSET.pack(at_ms)
        self.synced_ms = at_ms

    def distrust(self) -> None:
        """The store may have fallen behind its changelogs unseen (the process was
        paused): :attr:`synced_ms` moves on only after the next :meth:`mark_synced`."""
        self.trusted = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._cf.closed

    def changelog_offsets(self) -> dict[str, int | None]:
        """:meth:`changelog_offset` of every table."""
        return {table: self.changelog_offset(table) for table in self.tables}

    def apply(self, updates: Updates, offsets: Mapping[str, int] | None = None) -> None:
        """Write ``updates`` (table -> key -> value or None) and ``offsets`` atomically."""
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete  # bound once: a step writes a key per record
        for table, changes in updates.items():
            handle = self._handles[table]
            for key, value in changes.items():
                if value is None:
                    delete(key, handle)
                else:
                    put(key, value, handle)
        if offsets:
            meta = self._handles[META]
            for table, offset in offsets.items():
                batch.put(_offset_key(table), _OFFSET.pack(offset), meta)
        if batch.len():
            self._db.write(batch, self._write_opts)

    def delete_many(self, table: str, keys: Iterable[bytes]) -> int:
        """Delete ``keys`` of ``table`` locally (no changelog); returns how many."""
        batch = WriteBatch(raw_mode=True)
        handle = self._handles[table]
        n = 0
        for key in keys:
            batch.delete(key, handle)
            n += 1
        if n:
            self._db.write(batch, self._write_opts)
        return n

    def close(self) -> None:
        """Flush and close the database; later use raises :class:`StoreClosed`."""
        if self._cf.closed:
            return
        self._cf.closed = self._handles.closed = True
        self._cf.clear()
        self._handles.clear()
        self._db.close()


def destroy(path: Path) -> None:
    """Remove a partition's database from disk (it will restore from the changelogs)."""
    shutil.rmtree(path, ignore_errors=True)


def open_partition(
    root: Path,
    partition: int,
    tables: Sequence[str],
    options: StoreOptions,
    cached_objects: int = 0,
) -> PartitionStore:
    """Open (creating if needed) the store of ``partition`` under ``root``."""
    return PartitionStore(root / f"p{partition}", tables, options, cached_objects)


_PARTITION_DIR = re.compile(r"^p(\d+)$")


class Stores:
    """The partition stores of one worker under ``root``: opening them, noticing ones too
    old to resume, and deleting those of partitions no longer held.

    Changelogs are compacted: a tombstone is kept for the topic's ``delete.retention.ms``
    (Kafka's default: one day) after it is written, then goes, with the value it deleted.
    A store that resumes from its recorded offsets after that has read neither and keeps
    the deleted value for ever. So a store whose :attr:`PartitionStore.synced_ms` is older
    than ``stale_after_ms`` (or unknown) is wiped when it is opened or taken up again, and
    restored from the beginning of its changelogs; and, as Kafka Streams does after
    ``state.cleanup.delay.ms``, the directory of a partition held neither as active nor as
    standby is deleted ``cleanup_delay_ms`` after it was let go (or first seen, at start).
    """

    def __init__(
        self,
        root: Path,
        tables: Sequence[str],
        options: StoreOptions,
        *,
        wall_ms: Callable[[], int],
        cleanup_delay_ms: int,
        stale_after_ms: int,
        tend_every_ms: int,
    ) -> None:
        self.root = root
        self.tables = tuple(tables)
        self.options = options
        self.wall_ms = wall_ms
        self.cleanup_delay_ms = cleanup_delay_ms
        self.stale_after_ms = stale_after_ms
        self.tend_every_ms = tend_every_ms
        #: Partitions not held, with the wall time they were let go (or first seen).
        self._unheld_since: dict[int, int] = {}
        self._last_tend: int | None = None

    def path(self, partition: int) -> Path:
        """Directory of ``partition``'s store."""
        return self.root / f"p{partition}"

    def stale(self, store: PartitionStore) -> bool:
        """Whether ``store`` may have missed tombstones compaction has since removed."""
        if not store.has_offsets():
            return False  # empty: restores from the beginning anyway
        synced = store.synced_ms
        return synced is None or self.wall_ms() - synced > self.stale_after_ms

    def open(self, partition: int) -> PartitionStore:
        """The store of ``partition``, opened from disk, wiped first when stale."""
        self._unheld_since.pop(partition, None)
        store = PartitionStore(self.path(partition), self.tables, self.options)
        return self.keep(partition, store)

    def keep(self, partition: int, store: PartitionStore) -> PartitionStore:
        """``store`` (open) taken up again for ``partition``; a fresh empty one if stale."""
        if not self.stale(store):
            return store
        synced = store.synced_ms
        logger.warning(
            "partition %d: local store last in sync with its changelogs %s, longer ago "
            "than %.0f h: deleted, restoring it from the beginning of its changelogs (a "
            "store older than the changelogs' delete.retention.ms can miss deletions)",
            partition,
            "at an unknown time"
            if synced is None
            else f"{(self.wall_ms() - synced) / 3_600_000:.1f} h ago",
            self.stale_after_ms / 3_600_000,
        )
        store.close()
        destroy(store.path)
        return PartitionStore(self.path(partition), self.tables, self.options)

    def release(self, partition: int, store: PartitionStore) -> None:
        """``partition`` is held no more: close its store; its directory goes later."""
        store.close()
        self._unheld_since[partition] = self.wall_ms()

    def tend(self, held: Mapping[int, PartitionStore], owned_ready: Iterable[int]) -> list[int]:
        """Every ``tend_every_ms``: move on the sync time of the stores of ``owned_ready``
        (partitions this worker owns and has restored: it alone writes their changelogs,
        so they stay in sync), then :meth:`sweep`. Returns the partitions deleted.

        When this call comes much later than it should have (the process was paused, or
        the machine suspended), another worker may have written those changelogs
        meanwhile: every store is distrusted until a restore or a standby read finds it in
        sync again.
        """
        now = self.wall_ms()
        paused = self._last_tend is not None and now - self._last_tend > 3 * self.tend_every_ms
        self._last_tend = now
        for partition, store in held.items():
            if paused:
                store.distrust()
            elif partition in owned_ready and store.trusted and not store.closed:
                store.mark_synced(now)
        return self.sweep(held)

    def sweep(self, held: Iterable[int]) -> list[int]:
        """Delete the directories of partitions not in ``held`` for ``cleanup_delay_ms``."""
        now = self.wall_ms()
        kept = set(held)
        deleted: list[int] = []
        try:
            names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            return deleted
        for name in names:
            match = _PARTITION_DIR.match(name)
            if match is None:
                continue
            partition = int(match.group(1))
            if partition in kept:
                self._unheld_since.pop(partition, None)
                continue
            since = self._unheld_since.setdefault(partition, now)
            if now - since >= self.cleanup_delay_ms:
                destroy(self.root / name)
                del self._unheld_since[partition]
                deleted.append(partition)
        if deleted:
            logger.info(
                "deleted the local stores of partitions %s, held by other workers for %.0f s",
                deleted,
                self.cleanup_delay_ms / 1000,
            )
        return deleted
