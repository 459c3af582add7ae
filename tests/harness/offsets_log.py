"""The offset commits a group really made, read from ``__consumer_offsets`` itself.

An OffsetFetch answer (what ``list_consumer_group_offsets`` asks) can be stale while a
group coordinator fails over: Kafka 4's group coordinator has been seen answering a
lower offset than one it had committed before, the log holding no lower commit. The
log is the group's history: a ``read_committed`` reader of ``__consumer_offsets`` sees
every offset commit that took effect, in the order it took effect, and none of an
aborted transaction (a TxnOffsetCommit of a fenced producer is in the log, rolled
back by its abort marker).

Records, as Kafka writes them (``group-coordinator/src/main/resources/common/message/
OffsetCommitKey.json`` and ``OffsetCommitValue.json``; core's ``GroupMetadataManager``
before 4.0), each key and value prefixed by its int16 version, big-endian:

- key v0/v1 (an offset commit): group string, topic string, partition int32; other
  key versions are other records (v2 a classic group's metadata, v3+ Kafka 4's
  consumer/share group records) and are skipped;
- value v0/v2: offset int64, metadata string, commit_timestamp int64; v1 adds
  expire_timestamp int64; v3: offset, leader_epoch int32, metadata, commit_timestamp;
  v4, the first flexible version, is v3 with a compact string and tagged fields (Kafka
  4.4.0 writes v4, with one tagged field: tag 0, the topic's 16-byte id; 3.9.1 writes
  v3); a null value is a tombstone (the offset deleted).

A string is an int16 length then UTF-8 bytes (compact: an unsigned varint of length+1).

``__consumer_offsets`` is compacted, which keeps only a key's last record; a chaos run's
few thousand commits stay in the active segment (``offsets.topic.segment.bytes``, 100
MiB by default), which is never compacted, so the whole history is there to judge.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.kafka import committed_consumer

OFFSETS_TOPIC = "__consumer_offsets"
#: Key versions of an offset commit; the others are group records.
OFFSET_COMMIT_KEYS = (0, 1)
#: Most seconds to read ``__consumer_offsets`` to its end (a bound against a hang, not
#: a speed expectation: the log of a chaos run is a few thousand records).
READ_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class OffsetCommit:
    """One offset commit record: ``offset`` None is a tombstone (the offset deleted)."""

    group: str
    topic: str
    partition: int
    offset: int | None
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1


@dataclass(frozen=True)
class MovedBack:
    """A commit lower than one before it, of the same group, topic and partition."""

    group: str
    topic: str
    partition: int
    before: int
    after: int
    #: Position of the lower commit among the commits checked (log order).
    index: int


class _Reader:
    """Big-endian fields read one after the other from a record's key or value."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self, length: int) -> str:
        if length < 0 or self.pos + length > len(self.data):
            raise ValueError(f"string of {length} bytes at {self.pos} of {len(self.data)}")
        text = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return text

    def skip(self, length: int) -> None:
        if length < 0 or self.pos + length > len(self.data):
            raise ValueError(f"{length} bytes at {self.pos} of {len(self.data)}")
        self.pos += length

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.take(">B")
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} bytes left after the last field")


def decode_key(key: bytes) -> tuple[str, str, int] | None:
    """(group, topic, partition) of an offset commit's key; None for another record."""
    r = _Reader(key)
    if r.take(">h") not in OFFSET_COMMIT_KEYS:
        return None
    group = r.string(r.take(">h"))
    topic = r.string(r.take(">h"))
    partition = r.take(">i")
    r.end()
    return group, topic, partition


def decode_commit(key: bytes, value: bytes | None) -> OffsetCommit | None:
    """The offset commit of a ``__consumer_offsets`` record; None for another record.

    Raises ValueError on an offset commit whose value version is unknown, so that a
    check never passes for having skipped the commits it should have judged.
    """
    where = decode_key(key)
    if where is None:
        return None
    group, topic, partition = where
    if value is None:
        return OffsetCommit(group, topic, partition, None)
    r = _Reader(value)
    version = r.take(">h")
    if version > 4:
        raise ValueError(f"offset commit value version {version} of {where}: unknown")
    offset = r.take(">q")
    leader_epoch = r.take(">i") if version >= 3 else -1
    if version == 4:
        metadata = r.string(r.uvarint() - 1)
    else:
        metadata = r.string(r.take(">h"))
    commit_timestamp = r.take(">q")
    expire_timestamp = r.take(">q") if version == 1 else -1
    if version == 4:
        for _ in range(r.uvarint()):  # tagged fields: tag, size, bytes (not needed)
            r.uvarint()
            r.skip(r.uvarint())
    r.end()
    return OffsetCommit(
        group, topic, partition, offset, leader_epoch, metadata, commit_timestamp, expire_timestamp
    )


def moved_back(commits: Iterable[OffsetCommit]) -> list[MovedBack]:
    """Every commit lower than an earlier one of its group, topic and partition, taking
    ``commits`` in their log order. A tombstone does not reset the highest: the groups
    checked never delete their offsets, so a lower commit after one still moved back."""
    highest: dict[tuple[str, str, int], int] = {}
    out: list[MovedBack] = []
    for index, c in enumerate(commits):
        if c.offset is None:
            continue
        where = (c.group, c.topic, c.partition)
        before = highest.get(where)
        if before is not None and c.offset < before:
            out.append(MovedBack(c.group, c.topic, c.partition, before, c.offset, index))
        else:
            highest[where] = c.offset
    return out


def check_commits(commits: Sequence[OffsetCommit], ends: Mapping[tuple[str, int], int]) -> None:
    """Fails (AssertionError) when a commit of ``commits`` (one group's, in log order,
    as :func:`read_offset_commits` returns them) went below an earlier one of its
    partition, or when the last commit of a (topic, partition) of ``ends`` is not its
    end offset (every record consumed; and the check judged the commits it should
    have, not none for a decoding gone wrong)."""
    back = moved_back(commits)
    assert not back, f"committed offsets moved back in {OFFSETS_TOPIC}: {back}"
    last = {(c.topic, c.partition): c.offset for c in commits}
    at_end = {where: last.get(where) for where in ends}
    assert at_end == dict(ends), f"last commits {at_end}, end offsets {dict(ends)}"


async def read_offset_commits(
    bootstrap: str, group: str, topics: Collection[str]
) -> list[OffsetCommit]:
    """The offset commits of ``group`` on ``topics`` that took effect, in log order.

    Reads every partition of ``__consumer_offsets`` ``read_committed``, from its start
    to its end offset (the last stable offset: a transaction still open is left out).
    A group's records all live in one partition of it, and log order is the order that
    counts: of a partition's commits that took effect, a coordinator holds the one
    latest in the log, even when a transaction's marker comes after a later record
    (core's ``GroupMetadata``, the group coordinator's ``OffsetMetadataManager``).
    """
    partitions = await _offsets_partitions(bootstrap)
    consumer = committed_consumer(bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(OFFSETS_TOPIC, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[int, list[OffsetCommit]] = {p: [] for p in partitions}

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        async def read() -> None:
            while await behind():
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    for m in messages:
                        if m.offset >= ends[tp] or m.key is None:
                            continue
                        commit = decode_commit(m.key, m.value)
                        if commit and commit.group == group and commit.topic in topics:
                            found[tp.partition].append(commit)

        await asyncio.wait_for(read(), READ_TIMEOUT_S)
    finally:
        await consumer.stop()
    return [c for p in partitions for c in found[p]]


async def _offsets_partitions(bootstrap: str) -> list[int]:
    """The partitions of ``__consumer_offsets``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([OFFSETS_TOPIC])
    finally:
        await admin.close()
    assert described["error_code"] == 0, f"{OFFSETS_TOPIC}: {described}"
    return sorted(p["partition"] for p in described["partitions"])
