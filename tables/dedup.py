"""Dedup table: which ``record_id`` each account sent within the dedup horizon.

Column ``dedup``: 16-byte BLAKE2b of the (account, record_id) key -> first-seen time
(8-byte big-endian epoch ms); column ``dedup-expiry``: its local expiry index. An entry lives
for the dedup horizon after it was first seen, and so does its changelog segment (plus a
day). The storage, changelog and expiry are those of :mod:`state.expiring`, shared with the
distinct table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from state.expiring import SEGMENT_ENTRIES, ExpiringHashes, encode_segment, key_hash
from state.store import PartitionStore
from state.table import TableSpec, Writes
from state.transaction import StepState

__all__ = [
    "EXPIRY",
    "SEGMENT_ENTRIES",
    "dedup_table",
    "encode_segment",
    "expire",
    "key_hash",
    "mark_seen",
    "restore_segment",
    "seen_many",
]

EXPIRY: Final = "dedup-expiry"
_DAY_MS: Final = 86_400_000
_DEDUP: Final = ExpiringHashes("dedup", EXPIRY)


def restore_segment(value: bytes, now_ms: int, horizon_ms: int) -> Writes:
    """The writes a segment restores: its entries still inside the horizon."""
    return _DEDUP.restore_segment(value, now_ms, horizon_ms)


def dedup_table(horizon_ms: int) -> TableSpec:
    """The dedup table for a given horizon (its changelog keeps segments that long)."""
    return _DEDUP.spec(
        "record_ids seen within the dedup horizon.",
        horizon_ms,
        retention_ms=horizon_ms + _DAY_MS,
        keeps=f"every record_id of MOMENTS_DEDUP_HORIZON={horizon_ms / 1000:g}s plus a day",
    )


def seen_many(state: StepState, hashes: Sequence[bytes]) -> dict[bytes, int]:
    """First-seen times of the hashes held (absent ones are left out), one multi-get."""
    return _DEDUP.held(state, hashes)


def mark_seen(state: StepState, hashes: Sequence[bytes], seen_ms: int) -> None:
    """Record that the records of ``hashes`` were first seen at ``seen_ms``."""
    _DEDUP.mark(state, hashes, seen_ms)


def expire(store: PartitionStore, now_ms: int, horizon_ms: int, limit: int = 50_000) -> int:
    """Delete entries first seen more than the horizon ago (local only); returns how many.

    At most about ``limit`` per call (see :meth:`state.expiring.ExpiringHashes.expire`); an
    entry whose record was seen again later (and re-marked) keeps its newer value.
    """
    return _DEDUP.expire(store, now_ms, horizon_ms, limit)
