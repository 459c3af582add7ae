"""Memory probe for a ``moments worker``: where its resident memory goes, while it runs.

Loaded by Python at start-up when this directory is on ``PYTHONPATH``; does nothing
unless ``MEMPROBE_OUT`` names a file. Then a daemon thread of each ``moments worker``
process appends one JSON line every ``MEMPROBE_EVERY`` seconds (default 10) with:

- ``rss``: /proc/self/smaps_rollup (MB): Rss, Anonymous;
- ``malloc``: glibc ``mallinfo2`` (MB): ``arena`` (heap held), ``hblkhd`` (mapped
  blocks: RocksDB memtable blocks, Kafka fetch buffers), ``uordblks`` (in use),
  ``fordblks`` (free but held: fragmentation);
- ``cache``: the decoded-object caches of the partition stores: entries per table
  and an estimate of their size (deep ``sys.getsizeof`` of the newest 200 per table);
- ``rocks_mb``: RocksDB memtables (summed over every store and table) and block cache.

Touch ``$MEMPROBE_OUT.types`` for a one-off count of live objects by type (gc-tracked
containers only) and CPython's small-object allocator statistics
(``sys._debugmallocstats``, written to the worker's stderr: its log). Run a worker
with ``PYTHONTRACEMALLOC=4`` as well and touch ``$MEMPROBE_OUT.snap`` for the top
tracemalloc lines (slow: use a small backlog). Used for docs/capacity.md, Memory::

    PYTHONPATH=scripts/memprobe MEMPROBE_OUT=/tmp/probe.jsonl \\
        .venv/bin/python scripts/capacity.py --accounts 100000 ...

Reads private attributes of the store and engine (``_items``, ``_cf``): a debugging
aid, not part of the worker.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from typing import Any

OUT = os.environ.get("MEMPROBE_OUT")
ROCKSDB_SUMMED = ("rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-table-readers-mem")
ROCKSDB_SHARED = ("rocksdb.block-cache-usage",)  # one cache for every store: not summed


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_mb() -> dict[str, int]:
    """glibc's allocator totals, in MB (over every arena)."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {k: getattr(info, k) >> 20 for k in ("arena", "hblkhd", "uordblks", "fordblks")}


def rollup_mb() -> dict[str, int]:
    """/proc/self/smaps_rollup, in MB."""
    fields: dict[str, int] = {}
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) >> 10
    return {k: fields.get(k, 0) for k in ("Rss", "Anonymous")}


def deep_size(obj: Any, seen: set[int], depth: int = 0) -> int:
    """``sys.getsizeof`` of ``obj`` and what it holds (dicts, sequences, attributes)."""
    if id(obj) in seen or depth > 8:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(
            deep_size(k, seen, depth + 1) + deep_size(v, seen, depth + 1) for k, v in obj.items()
        )
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(v, seen, depth + 1) for v in obj)
    elif hasattr(obj, "__dict__"):
        size += deep_size(obj.__dict__, seen, depth + 1)
    elif hasattr(obj, "__slots__"):
        size += sum(
            deep_size(getattr(obj, s), seen, depth + 1) for s in obj.__slots__ if hasattr(obj, s)
        )
    return size


def stores_sample() -> dict[str, Any]:
    """Object caches and RocksDB memory of every open partition store."""
    from state.store import PartitionStore

    stores = [o for o in gc.get_objects() if isinstance(o, PartitionStore)]
    entries: dict[str, int] = {}
    sizes: dict[str, list[int]] = {}
    rocks: dict[str, int] = {}
    for store in stores:
        items = list(store.objects._items.items())
        for (table, _), _obj in items:
            entries[table] = entries.get(table, 0) + 1
        for (table, _), obj in items[-200:]:
            sizes.setdefault(table, []).append(deep_size(obj, set()))
        for cf in list(store._cf.values()):
            for prop in ROCKSDB_SUMMED:
                rocks[prop] = rocks.get(prop, 0) + (cf.property_int_value(prop) or 0)
            for prop in ROCKSDB_SHARED:
                rocks[prop] = max(rocks.get(prop, 0), cf.property_int_value(prop) or 0)
    average = {t: sum(b) // len(b) for t, b in sizes.items() if b}
    return {
        "cache": {
            "stores": len(stores),
            "entries": entries,
            "avg_bytes": average,
            "est_mb": {t: (entries[t] * average[t]) >> 20 for t in average},
        },
        "rocks_mb": {k: v >> 20 for k, v in rocks.items()},
    }


def sample() -> dict[str, Any]:
    """One line of the probe."""
    record: dict[str, Any] = {"t": round(time.time(), 1), "rss": rollup_mb(), "malloc": malloc_mb()}
    try:
        record.update(stores_sample())
    except Exception as exc:  # noqa: BLE001 - a store closing under the probe: next time
        record["stores_error"] = repr(exc)
    if OUT and os.path.exists(OUT + ".types"):
        os.unlink(OUT + ".types")
        counts: dict[str, list[int]] = {}
        for obj in gc.get_objects():
            count = counts.setdefault(type(obj).__name__, [0, 0])
            count[0] += 1
            count[1] += sys.getsizeof(obj)
        ranked = sorted(((v[1] >> 20, v[0], k) for k, v in counts.items()), reverse=True)
        record["types_mb_count"] = ranked[:25]
        sys._debugmallocstats()
    if tracemalloc.is_tracing():
        record["traced_mb"] = [v >> 20 for v in tracemalloc.get_traced_memory()]
        if OUT and os.path.exists(OUT + ".snap"):
            os.unlink(OUT + ".snap")
            snapshot = tracemalloc.take_snapshot()
            record["top"] = [
                f"{s.size >> 10} kB in {s.count}: {s.traceback}"
                for s in snapshot.statistics("lineno")[:25]
            ]
    return record


def _loop(out: str) -> None:
    every = float(os.environ.get("MEMPROBE_EVERY", "10"))
    while True:
        try:
            line = sample()
        except Exception as exc:  # noqa: BLE001 - report and go on
            line = {"t": round(time.time(), 1), "error": repr(exc)}
        with open(out, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        time.sleep(every)


if OUT and sys.argv[1:2] == ["worker"]:
    threading.Thread(target=_loop, args=(OUT,), daemon=True, name="memprobe").start()
