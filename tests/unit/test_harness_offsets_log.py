"""The chaos tier judges "committed offsets never move back" on ``__consumer_offsets``
itself (tests/harness/offsets_log.py): its records decoded as Kafka writes them (built
here by hand with struct, from OffsetCommitKey.json and OffsetCommitValue.json), and
the check fails on a lower commit after a higher one."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.harness.offsets_log import (
    MovedBack,
    OffsetCommit,
    check_commits,
    decode_commit,
    decode_key,
    moved_back,
)

GROUP = "moments-app"
TOPIC = "moments.usage"


def string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def key(group: str = GROUP, topic: str = TOPIC, partition: int = 0, version: int = 1) -> bytes:
    return struct.pack(">h", version) + string(group) + string(topic) + struct.pack(">i", partition)


def value(
    offset: int,
    version: int = 3,
    *,
    epoch: int = 7,
    metadata: str = "",
    committed: int = 1_765_000_000_000,
    expires: int = 1_765_100_000_000,
) -> bytes:
    out = struct.pack(">hq", version, offset)
    if version >= 3:
        out += struct.pack(">i", epoch)
    out += string(metadata) + struct.pack(">q", committed)
    if version == 1:
        out += struct.pack(">q", expires)
    return out


def records(*offsets: int, partition: int = 0) -> list[OffsetCommit]:
    """Offset commits as the log would hold them, each through the decoder."""
    decoded = [decode_commit(key(partition=partition), value(o)) for o in offsets]
    return [c for c in decoded if c is not None]


@pytest.mark.parametrize("key_version", [0, 1])
def test_an_offset_commit_key_reads_group_topic_partition(key_version: int) -> None:
    assert decode_key(key("g-é", "t.x", 5, key_version)) == ("g-é", "t.x", 5)


@pytest.mark.parametrize(
    ("version", "epoch", "expires"),
    [(0, -1, -1), (1, -1, 1_765_100_000_000), (2, -1, -1), (3, 7, -1)],
)
def test_each_value_version_reads_its_fields(version: int, epoch: int, expires: int) -> None:
    got = decode_commit(key(partition=3), value(8_864, version, metadata="m"))
    assert got == OffsetCommit(GROUP, TOPIC, 3, 8_864, epoch, "m", 1_765_000_000_000, expires)


def test_value_version_4_reads_compact_string_and_skips_tagged_fields() -> None:
    flexible = (
        struct.pack(">hqi", 4, 12, 3)
        + bytes([len(b"meta") + 1])
        + b"meta"
        + struct.pack(">q", 99)
        + bytes([1, 0, 16])  # one tagged field, as Kafka 4.4.0 writes: tag 0, 16 bytes
        + bytes.fromhex("db27a5be034062a4c75a10932d46d5ff")  # the topic's id, not UTF-8
    )
    assert decode_commit(key(), flexible) == OffsetCommit(GROUP, TOPIC, 0, 12, 3, "meta", 99)


def test_a_value_as_kafka_4_4_0_wrote_it() -> None:
    # Offset 20 of partition 0 of a group, read from a 4.4.0 broker's __consumer_offsets.
    raw = "00040000000000000014ffffffff01000001a2502e507901001040db27a5be034062a4c75a10932d46d5"
    got = decode_commit(key(), bytes.fromhex(raw))
    assert got == OffsetCommit(GROUP, TOPIC, 0, 20, -1, "", 0x1A2502E5079)


def test_a_null_value_is_a_tombstone() -> None:
    assert decode_commit(key(), None) == OffsetCommit(GROUP, TOPIC, 0, None)


@pytest.mark.parametrize("key_version", [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
def test_other_key_versions_are_not_offset_commits(key_version: int) -> None:
    # v2: a classic group's metadata (its group string only); v3+: Kafka 4's
    # consumer/share group records, whatever their value.
    other = struct.pack(">h", key_version) + string(GROUP)
    assert decode_key(other) is None
    assert decode_commit(other, b"\x00\x00anything") is None
    assert decode_commit(other, None) is None


@pytest.mark.parametrize(
    "broken",
    [
        struct.pack(">h", 5) + struct.pack(">q", 1),  # a value version not known
        value(1)[:-1],  # cut short
        value(1) + b"\x00",  # bytes left over
    ],
)
def test_a_value_not_read_whole_raises(broken: bytes) -> None:
    with pytest.raises((ValueError, struct.error)):
        decode_commit(key(), broken)


def test_a_lower_commit_after_a_higher_one_moves_back() -> None:
    commits = records(10, 20, 20, 15, 30, 25)
    assert moved_back(commits) == [
        MovedBack(GROUP, TOPIC, 0, 20, 15, 3),
        MovedBack(GROUP, TOPIC, 0, 30, 25, 5),
    ]


def test_partitions_groups_and_topics_are_judged_apart() -> None:
    mixed = [
        OffsetCommit(GROUP, TOPIC, 0, 100),
        OffsetCommit(GROUP, TOPIC, 1, 5),
        OffsetCommit("other", TOPIC, 0, 3),
        OffsetCommit(GROUP, "other", 0, 4),
        OffsetCommit(GROUP, TOPIC, 0, 101),
    ]
    assert moved_back(mixed) == []


def test_a_tombstone_does_not_excuse_a_lower_commit() -> None:
    commits = [*records(50), OffsetCommit(GROUP, TOPIC, 0, None), *records(40)]
    assert moved_back(commits) == [MovedBack(GROUP, TOPIC, 0, 50, 40, 2)]


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=40))
def test_moved_back_is_every_commit_below_an_earlier_one(log: list[tuple[int, int]]) -> None:
    commits = [OffsetCommit(GROUP, TOPIC, p, o) for p, o in log]
    oracle = [i for i, (p, o) in enumerate(log) if any(q == p and o < e for q, e in log[:i])]
    assert [m.index for m in moved_back(commits)] == oracle


def test_the_check_passes_on_the_run_that_failed_on_a_stale_sample() -> None:
    # Kafka 4.4.0, seed 22103019: OffsetFetch once answered 8,832 after 8,864 for
    # partition 0, while every replica's log held strictly rising commits.
    commits = records(8_800, 8_832, 8_864, 8_900)
    check_commits(commits, {(TOPIC, 0): 8_900})


def test_the_check_fails_on_a_lower_commit_after_a_higher_one() -> None:
    commits = records(8_800, 8_864, 8_832, 8_900)
    with pytest.raises(AssertionError, match="moved back"):
        check_commits(commits, {(TOPIC, 0): 8_900})


@pytest.mark.parametrize(
    ("offsets", "end"),
    [((), 10), ((5, 8), 10)],
    ids=["no commit found", "last commit short of the end"],
)
def test_the_check_fails_when_a_partition_did_not_commit_its_end(
    offsets: tuple[int, ...], end: int
) -> None:
    with pytest.raises(AssertionError, match="end offsets"):
        check_commits(records(*offsets), {(TOPIC, 0): end})
