"""Distinct table: the values each ``unique_count`` metric has counted, per period and day.

Column ``distinct``: 16-byte BLAKE2b of the key of
:func:`domain.intake.distinct.distinct_key` (account, metric, scope, value) -> when the entry
expires (8-byte big-endian epoch ms; :func:`domain.intake.distinct.period_expiry`,
:func:`~domain.intake.distinct.day_expiry`); column ``distinct-expiry``: its local expiry
index. The storage, changelog (segments, restored without what has expired) and expiry are
the dedup table's (:mod:`state.expiring`), with the expiry instant as the stored instant and
a horizon of 0. So a distinct value costs 24 bytes of changelog and one RocksDB entry while
its period or day can still take records, and nothing after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from state.expiring import ExpiringHashes, key_hash
from state.store import PartitionStore
from state.table import TableSpec
from state.transaction import StepState

__all__ = ["EXPIRY", "distinct_held", "distinct_table", "expire", "key_hash", "mark_distinct"]

EXPIRY: Final = "distinct-expiry"
_DISTINCT: Final = ExpiringHashes("distinct", EXPIRY)


def distinct_table(retention_ms: int) -> TableSpec:
    """The distinct table; its changelog keeps segments ``retention_ms``
    (:func:`domain.intake.distinct.distinct_retention_ms`)."""
    return _DISTINCT.spec(
        "distinct values of unique_count metrics in open periods and kept days.",
        horizon_ms=0,
        retention_ms=retention_ms,
        keeps=(
            "every distinct value of open periods and kept days (MOMENTS_DAILY_RETENTION_DAYS, "
            "at least a month, plus two days and MOMENTS_LATE_GRACE)"
        ),
    )


def distinct_held(state: StepState, hashes: Sequence[bytes], now_ms: int) -> set[bytes]:
    """The hashes already counted and not expired at ``now_ms``, with one multi-get.

    An expired entry the sweep has not deleted yet counts as absent, as after a restore.
    """
    return {h for h, expires_ms in _DISTINCT.held(state, hashes).items() if expires_ms > now_ms}


def mark_distinct(state: StepState, hashes_by_expiry: Mapping[int, Sequence[bytes]]) -> None:
    """Hold each group of hashes until its expiry instant (one index entry per group)."""
    for expires_ms, hashes in hashes_by_expiry.items():
        _DISTINCT.mark(state, hashes, expires_ms)


def expire(store: PartitionStore, now_ms: int, limit: int = 50_000) -> int:
    """Delete the entries expired at ``now_ms`` (local only), about ``limit`` at most per
    call; returns how many."""
    return _DISTINCT.expire(store, now_ms, 0, limit)
