"""Dedup table: which ``record_id`` each account sent within the dedup horizon.

Column ``dedup``: 16-byte BLAKE2b of the (account, record_id) key -> first-seen
time (8-byte big-endian epoch ms). Column ``dedup-expiry`` (local index): one entry
per step, first-seen time + a random suffix -> the hashes that step marked, so
expiry is a range scan from the oldest and costs one index write per step.

The changelog is not one record per key: a step writes one *segment* holding every
entry it added (24 bytes each), and the changelog topic deletes segments by
retention (horizon plus a day). Restore replays the segments still kept and skips
entries already past the horizon. So dedup costs one changelog record per step,
and its disk, memory and recovery time are bounded by the horizon.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from hashlib import blake2b

from state.store import PartitionStore
from state.table import TableSpec, Writes
from state.transaction import StepState

_SEEN = struct.Struct(">q")
_HASH_BYTES = 16
_ENTRY = _HASH_BYTES + _SEEN.size
EXPIRY = "dedup-expiry"
_DAY_MS = 86_400_000
_SUFFIX = 8


def key_hash(key: str) -> bytes:
    """Fixed-size digest of a dedup key (the domain's unambiguous account/record key)."""
    return blake2b(key.encode(), digest_size=_HASH_BYTES).digest()


#: Entries per segment record: 480 kB, well under Kafka's default 1 MB message limit.
SEGMENT_ENTRIES = 20_000


def encode_segment(writes: Mapping[bytes, bytes | None]) -> list[bytes]:
    """Changelog values holding a step's new entries (one per 20,000 entries)."""
    entries = [h + seen for h, seen in writes.items() if seen is not None]
    return [
        b"".join(entries[i : i + SEGMENT_ENTRIES]) for i in range(0, len(entries), SEGMENT_ENTRIES)
    ]


def restore_segment(value: bytes, now_ms: int, horizon_ms: int) -> Writes:
    """The writes a segment restores: its entries still inside the horizon."""
    dedup: dict[bytes, bytes | None] = {}
    by_seen: dict[bytes, list[bytes]] = {}
    cutoff = now_ms - horizon_ms
    for i in range(0, len(value) - _ENTRY + 1, _ENTRY):
        h = value[i : i + _HASH_BYTES]
        seen = value[i + _HASH_BYTES : i + _ENTRY]
        if _SEEN.unpack(seen)[0] > cutoff:
            dedup[h] = seen
            by_seen.setdefault(seen, []).append(h)
    expiry: dict[bytes, bytes | None] = {
        seen + os.urandom(_SUFFIX): b"".join(hashes) for seen, hashes in by_seen.items()
    }
    return {"dedup": dedup, EXPIRY: expiry}


def dedup_table(horizon_ms: int) -> TableSpec:
    """The dedup table for a given horizon (its changelog keeps segments that long)."""
    return TableSpec(
        "dedup",
        "record_ids seen within the dedup horizon.",
        changelog="segments",
        local_columns=(EXPIRY,),
        encode_segment=encode_segment,
        restore_segment=lambda value, now_ms: restore_segment(value, now_ms, horizon_ms),
        retention_ms=horizon_ms + _DAY_MS,
    )


def seen_many(state: StepState, hashes: Sequence[bytes]) -> dict[bytes, int]:
    """First-seen times of the hashes held (absent ones are left out), one multi-get."""
    out: dict[bytes, int] = {}
    for h, held in zip(hashes, state.get_many("dedup", hashes), strict=True):
        if held is not None:
            out[h] = _SEEN.unpack(held)[0]
    return out


def mark_seen(state: StepState, hashes: Sequence[bytes], seen_ms: int) -> None:
    """Record that the records of ``hashes`` were first seen at ``seen_ms``."""
    if not hashes:
        return
    seen = _SEEN.pack(seen_ms)
    for h in hashes:
        state.put("dedup", h, seen)
    state.put(EXPIRY, seen + os.urandom(_SUFFIX), b"".join(hashes))


def expire(store: PartitionStore, now_ms: int, horizon_ms: int, limit: int = 50_000) -> int:
    """Delete entries first seen more than the horizon ago (local only); returns how many.

    Takes whole steps' index entries until about ``limit`` hashes, so one call stays
    short (it runs on the engine's loop); called often, it keeps up with intake. An
    entry whose record was seen again later (and re-marked) keeps its newer value:
    only the old sighting's index entry goes.
    """
    cutoff = _SEEN.pack(now_ms - horizon_ms)
    index: list[tuple[bytes, bytes]] = []
    hashes_taken = 0
    for key, value in store.items(EXPIRY):
        if key[: _SEEN.size] > cutoff or hashes_taken >= limit:
            break
        index.append((key, value))
        hashes_taken += len(value) // _HASH_BYTES
    if not index:
        return 0
    stale: dict[bytes, bytes | None] = {}
    removed = 0
    for key, value in index:
        seen = key[: _SEEN.size]
        hashes = [value[i : i + _HASH_BYTES] for i in range(0, len(value), _HASH_BYTES)]
        for h, held in zip(hashes, store.get_many("dedup", hashes), strict=True):
            if held == seen:
                stale[h] = None
                removed += 1
    store.apply({EXPIRY: dict.fromkeys(k for k, _ in index), "dedup": stale})
    return removed
