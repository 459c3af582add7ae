"""The store layer against real RocksDB: atomic batches, offsets beside data, step views."""

from __future__ import annotations

from hashlib import blake2b
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.store import StoreOptions, open_partition
from state.transaction import StepState
from tables.dedup import EXPIRY, encode_segment, expire, key_hash, mark_seen, restore_segment
from tables.registry import table_specs

COLUMNS = ("a", "b", "dedup", EXPIRY)


@pytest.fixture
def options() -> StoreOptions:
    return StoreOptions(cache_mb=8, write_buffer_mb=1)


def test_apply_writes_data_and_offsets_together_and_survives_reopen(
    tmp_path: Path, options: StoreOptions
) -> None:
    store = open_partition(tmp_path, 3, COLUMNS, options)
    store.apply({"a": {b"k": b"1", b"x": b"2"}, "b": {b"k": b"3"}}, {"a": 41, "b": 7})
    store.apply({"a": {b"x": None}}, {"a": 42})
    store.close()
    again = open_partition(tmp_path, 3, COLUMNS, options)
    assert again.get("a", b"k") == b"1"
    assert again.get("a", b"x") is None
    assert again.get("b", b"k") == b"3"
    assert again.changelog_offset("a") == 42
    assert again.changelog_offset("b") == 7
    assert again.changelog_offset("dedup") is None
    assert list(again.items("a")) == [(b"k", b"1")]
    again.close()


def test_a_step_reads_its_own_writes_and_leaves_the_store_alone_until_applied(
    tmp_path: Path, options: StoreOptions
) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    store.apply({"a": {b"k": b"old"}})
    step = StepState(store)
    step.put("a", b"k", b"new")
    step.put("a", b"k", b"newer")  # coalesced: one write per key
    step.delete("a", b"gone")
    assert step.get("a", b"k") == b"newer"
    assert step.get_many("a", [b"k", b"gone", b"none"]) == [b"newer", None, None]
    assert store.get("a", b"k") == b"old"  # nothing reached RocksDB yet
    assert step.updates() == {"a": {b"k": b"newer", b"gone": None}}
    # An aborted step is simply dropped: the store is as it was.
    del step
    assert store.get("a", b"k") == b"old"
    store.close()


@pytest.mark.parametrize(
    "key", ["", "1:ax", "11:acct-000001\x1frec-1", "3:\u00e9\u4e2d\x1f" + "r" * 300]
)
def test_key_hash_is_the_16_byte_blake2b_of_the_key_text(key: str) -> None:
    # The stored and changelogged form of dedup and distinct keys: it must never change.
    assert key_hash(key) == blake2b(key.encode(), digest_size=16).digest()
    assert key_hash(key) == key_hash(key)


def test_mark_seen_writes_each_hash_with_its_instant_and_one_index_entry(
    tmp_path: Path, options: StoreOptions
) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    step = StepState(store)
    hashes = [key_hash(str(i)) for i in range(5)]
    mark_seen(step, hashes[:3], 1_000)
    mark_seen(step, hashes[2:], 2_000)
    updates = step.updates()
    assert updates["dedup"] == {
        h: (1_000 if i < 2 else 2_000).to_bytes(8, "big") for i, h in enumerate(hashes)
    }
    assert sorted(updates[EXPIRY].values()) == [b"".join(hashes[:3]), b"".join(hashes[2:])]
    store.close()


def test_dedup_segments_restore_only_what_is_inside_the_horizon() -> None:
    h1, h2 = key_hash("1:ax"), key_hash("1:ay")
    writes = {h1: (1_000).to_bytes(8, "big"), h2: (5_000).to_bytes(8, "big")}
    [segment] = encode_segment(writes)
    assert len(segment) == 48
    restored = restore_segment(segment, now_ms=6_000, horizon_ms=2_000)
    assert restored["dedup"] == {h2: (5_000).to_bytes(8, "big")}
    [(index_key, index_value)] = restored[EXPIRY].items()
    assert index_key.startswith((5_000).to_bytes(8, "big"))
    assert index_value == h2


def test_dedup_segments_are_split_to_stay_under_the_message_limit() -> None:
    writes = {key_hash(str(i)): (1_000).to_bytes(8, "big") for i in range(45_000)}
    segments = encode_segment(writes)
    assert [len(s) // 24 for s in segments] == [20_000, 20_000, 5_000]
    assert all(len(s) < 1_000_000 for s in segments)
    restored: dict[bytes, bytes | None] = {}
    for segment in segments:
        restored.update(restore_segment(segment, now_ms=1_500, horizon_ms=1_000)["dedup"])
    assert restored == writes


def test_dedup_expiry_deletes_old_entries_but_not_ones_seen_again(
    tmp_path: Path, options: StoreOptions
) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    old, again, fresh = key_hash("old"), key_hash("again"), key_hash("fresh")
    step = StepState(store)
    mark_seen(step, [old, again], 1_000)
    store.apply(step.updates())
    later = StepState(store)
    mark_seen(later, [again], 9_000)  # seen again after the first sighting expired
    mark_seen(later, [fresh], 9_500)
    store.apply(later.updates())
    removed = expire(store, now_ms=10_000, horizon_ms=5_000)
    assert removed == 1  # "old"; "again" was re-marked at 9,000 and stays
    assert store.get("dedup", old) is None
    assert store.get("dedup", again) == (9_000).to_bytes(8, "big")
    assert store.get("dedup", fresh) == (9_500).to_bytes(8, "big")
    assert len(list(store.items(EXPIRY))) == 2  # the 1,000 step's index entry is gone
    assert expire(store, now_ms=10_000, horizon_ms=5_000) == 0
    assert expire(store, now_ms=20_000, horizon_ms=5_000) == 2
    assert list(store.items("dedup")) == []
    store.close()


def test_dedup_expiry_takes_bounded_chunks(tmp_path: Path, options: StoreOptions) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    for step_no in range(5):
        step = StepState(store)
        mark_seen(step, [key_hash(f"{step_no}-{i}") for i in range(100)], 1_000 + step_no)
        store.apply(step.updates())
    assert expire(store, now_ms=10_000, horizon_ms=1_000, limit=150) == 200  # two steps
    assert expire(store, now_ms=10_000, horizon_ms=1_000, limit=150) == 200
    assert expire(store, now_ms=10_000, horizon_ms=1_000, limit=150) == 100
    assert list(store.items("dedup")) == []
    store.close()


def test_dedup_hash_distinguishes_what_a_separator_join_would_not() -> None:
    from domain.intake.batch import dedup_key

    assert key_hash(dedup_key("a\x1fb", "c")) != key_hash(dedup_key("a", "b\x1fc"))


@settings(max_examples=25, deadline=None)
@given(
    held=st.sets(st.binary(min_size=16, max_size=16), max_size=400),
    asked=st.lists(st.binary(min_size=16, max_size=16), max_size=200),
    flush_every=st.integers(min_value=1, max_value=200),
)
def test_a_probed_column_answers_every_lookup_as_an_unprobed_one(
    tmp_path_factory: pytest.TempPathFactory,
    held: set[bytes],
    asked: list[bytes],
    flush_every: int,
) -> None:
    # The memtable bloom filter may only skip keys the column does not hold: held keys in the
    # memtable, in flushed files or both, and absent ones, read the same with it as without.
    root = tmp_path_factory.mktemp("probed")
    store = open_partition(
        root, 0, ("probed", "plain"), StoreOptions(cache_mb=8, write_buffer_mb=1, probed=["probed"])
    )
    keys = sorted(held)
    for start in range(0, len(keys), flush_every):
        chunk = dict.fromkeys(keys[start : start + flush_every], b"v")
        store.apply({"probed": chunk, "plain": chunk})
        if start % (3 * flush_every) == 0:
            # Some keys in files, some in the memtable (the database's own flush() flushes
            # the default column family only: each column is flushed by its handle).
            store._cf["probed"].flush()
            store._cf["plain"].flush()
    # Deletions in the memtable of keys held in files must hide them too.
    gone = dict.fromkeys(keys[1::4])
    store.apply({"probed": gone, "plain": gone})
    lookups = [*asked, *keys[::3], *gone]
    expected = [b"v" if k in held and k not in gone else None for k in lookups]
    assert store.get_many("probed", lookups) == store.get_many("plain", lookups)
    assert store.get_many("probed", lookups) == expected
    assert [store.get("probed", k) for k in lookups] == expected
    store.close()


def test_the_workers_expiring_tables_are_the_probed_ones() -> None:
    # Dedup and distinct are asked once per record for a key they nearly never hold; the
    # per-account tables are asked for keys they mostly hold (no filter: it costs memory).
    specs = table_specs(86_400_000, 90_000_000)
    assert {spec.name for spec in specs if spec.probed} == {"dedup", "distinct"}
