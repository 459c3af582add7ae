"""Tables of hashes that expire by time: a key's 16-byte hash -> an 8-byte instant.

The design of the dedup table, shared by the distinct table (:mod:`tables.dedup`,
:mod:`tables.distinct`). The table's column holds hash -> instant (8-byte big-endian epoch
ms); the entry lives until ``instant + horizon``. For dedup the instant is when the record was
first seen and the horizon the dedup horizon; for distinct values it is when the entry expires
and the horizon 0. A local column (the expiry index, never changelogged) holds one entry per
step: instant + a random suffix -> the hashes that step marked, so expiry is a range scan from
the oldest and costs one index write per step.

The changelog is not one record per key: a step writes one *segment* holding every entry it
added (24 bytes each), and the changelog topic deletes segments by retention (the longest
life of an entry, plus a margin). Restore replays the segments still kept and skips entries
that have expired by now. So such a table costs one changelog record per step, and its disk,
memory and recovery time are bounded by the life of its entries.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

from state.store import PartitionStore
from state.table import TableSpec, Writes
from state.transaction import StepState

_INSTANT: Final = struct.Struct(">q")
_HASH_BYTES: Final = 16
_ENTRY: Final = _HASH_BYTES + _INSTANT.size
_SUFFIX: Final = 8

#: Entries per segment record: 480 kB, well under Kafka's default 1 MB message limit.
SEGMENT_ENTRIES: Final = 20_000


# An empty BLAKE2b of the digest size, copied for each key: the same digest as a new
# ``blake2b(data, digest_size=16)``, for about 60 % of its cost (the constructor's keyword
# parsing dominates a 30-byte key's hash; this runs for every usage record).
_EMPTY_HASH: Final = blake2b(digest_size=_HASH_BYTES)


def key_hash(key: str) -> bytes:
    """Fixed-size digest of a table key (the domain's unambiguous key text)."""
    h = _EMPTY_HASH.copy()
    h.update(key.encode())
    return h.digest()


def encode_segment(writes: Mapping[bytes, bytes | None]) -> list[bytes]:
    """Changelog values holding a step's new entries (one per 20,000 entries)."""
    entries = [h + instant for h, instant in writes.items() if instant is not None]
    return [
        b"".join(entries[i : i + SEGMENT_ENTRIES]) for i in range(0, len(entries), SEGMENT_ENTRIES)
    ]


@dataclass(frozen=True, slots=True)
class ExpiringHashes:
    """One such table: its column and the column of its local expiry index."""

    column: str
    index: str

    def spec(self, help: str, horizon_ms: int, retention_ms: int, keeps: str) -> TableSpec:
        """The table's spec: segments restored within ``horizon_ms``, kept ``retention_ms``
        (``keeps`` says what that retention keeps: :attr:`state.table.TableSpec.keeps`)."""
        return TableSpec(
            self.column,
            help,
            changelog="segments",
            probed=True,  # dedup: a record's id is nearly always new
            local_columns=(self.index,),
            encode_segment=encode_segment,
            restore_segment=lambda value, now_ms: self.restore_segment(value, now_ms, horizon_ms),
            retention_ms=retention_ms,
            keeps=keeps,
        )

    def restore_segment(self, value: bytes, now_ms: int, horizon_ms: int) -> Writes:
        """The writes a segment restores: its entries still alive at ``now_ms``."""
        entries: dict[bytes, bytes | None] = {}
        by_instant: dict[bytes, list[bytes]] = {}
        cutoff = now_ms - horizon_ms
        for i in range(0, len(value) - _ENTRY + 1, _ENTRY):
            h = value[i : i + _HASH_BYTES]
            instant = value[i + _HASH_BYTES : i + _ENTRY]
            if _INSTANT.unpack(instant)[0] > cutoff:
                entries[h] = instant
                by_instant.setdefault(instant, []).append(h)
        index: dict[bytes, bytes | None] = {
            instant + os.urandom(_SUFFIX): b"".join(hashes)
            for instant, hashes in by_instant.items()
        }
        return {self.column: entries, self.index: index}

    def held(self, state: StepState, hashes: Sequence[bytes]) -> dict[bytes, int]:
        """Instants of the hashes held (absent ones are left out), one multi-get."""
        out: dict[bytes, int] = {}
        for h, held in zip(hashes, state.get_many(self.column, hashes), strict=True):
            if held is not None:
                out[h] = _INSTANT.unpack(held)[0]
        return out

    def mark(self, state: StepState, hashes: Sequence[bytes], instant_ms: int) -> None:
        """Hold ``hashes`` with the instant ``instant_ms`` (one index entry for them all)."""
        if not hashes:
            return
        instant = _INSTANT.pack(instant_ms)
        state.put_many(self.column, hashes, instant)
        state.put(self.index, instant + os.urandom(_SUFFIX), b"".join(hashes))

    def expire(
        self, store: PartitionStore, now_ms: int, horizon_ms: int, limit: int = 50_000
    ) -> int:
        """Delete entries whose instant is ``horizon_ms`` or more ago (local only); how many.

        Takes whole steps' index entries until about ``limit`` hashes, so one call stays
        short (it runs on the engine's loop); called often, it keeps up with intake. An
        entry marked again later with another instant keeps its newer value: only the old
        marking's index entry goes.
        """
        cutoff = _INSTANT.pack(now_ms - horizon_ms)
        index: list[tuple[bytes, bytes]] = []
        hashes_taken = 0
        for key, value in store.items(self.index):
            if key[: _INSTANT.size] > cutoff or hashes_taken >= limit:
                break
            index.append((key, value))
            hashes_taken += len(value) // _HASH_BYTES
        if not index:
            return 0
        stale: dict[bytes, bytes | None] = {}
        removed = 0
        for key, value in index:
            instant = key[: _INSTANT.size]
            hashes = [value[i : i + _HASH_BYTES] for i in range(0, len(value), _HASH_BYTES)]
            for h, held in zip(hashes, store.get_many(self.column, hashes), strict=True):
                if held == instant:
                    stale[h] = None
                    removed += 1
        store.apply({self.index: dict.fromkeys(k for k, _ in index), self.column: stale})
        return removed
