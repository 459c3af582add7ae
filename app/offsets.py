"""Offsets of the worker's own consumer: fetch positions and broker end offsets.

Faust's consumer API has no typed way to ask either; these helpers keep the
reach into its internals in one place.
"""

from __future__ import annotations

from typing import Any


async def position(consumer: Any, tp: Any) -> int | None:
    """Fetch position of ``tp``, or None before the first seek."""
    try:
        found = await consumer.position(tp)
    except Exception:  # noqa: BLE001 - no position before the first seek; ask again later
        return None
    return None if found is None else int(found)


async def end_offsets(consumer: Any, tps: list[Any]) -> dict[Any, int]:
    """Broker end offsets of ``tps`` (the last stable offset under read_committed).

    Faust's own ``highwaters()`` is a cache that is empty until the first fetch.
    """
    if not tps:
        return {}
    thread = consumer._thread
    ends = await thread.call_thread(thread._ensure_consumer().end_offsets, tps)
    return {tp: int(end) for tp, end in ends.items()}
