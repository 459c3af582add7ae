"""Bounded memo dictionaries: remembered values, cleared wholesale when full.

The domain's text and period caches hold values that recur across batches (periods, amounts,
dates). Clearing a full cache at once keeps it bounded without the bookkeeping of an LRU; the
hot path stays a plain ``dict.get``, and only a miss calls :func:`remember`.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key`` in ``cache`` (emptied first when it holds ``limit``
    entries) and return it."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
