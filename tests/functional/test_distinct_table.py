"""The distinct table against real RocksDB: write, restore from segments, expiry sweep."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import agents.usage
from agents.usage import UsageHandler
from app.main import build_runtime
from config.settings import load_settings
from domain.intake.batch import IntakeResult
from domain.intake.distinct import day_expiry, distinct_key
from domain.moments.usage import UsageOutcome, UsageState
from engine.step import Step
from state.store import PartitionStore, StoreOptions, open_partition
from state.table import TableSpec
from state.transaction import StepState
from tables.dedup import EXPIRY as DEDUP_EXPIRY
from tables.dedup import key_hash, mark_seen
from tables.distinct import EXPIRY, distinct_held, distinct_table, expire, mark_distinct
from tables.registry import TABLE_COLUMNS, TABLE_NAMES

COLUMNS = ("dedup", DEDUP_EXPIRY, "distinct", EXPIRY)
TABLE: TableSpec = distinct_table(retention_ms=37 * 86_400_000)


def key(value: str, scope: str = "d20454") -> bytes:
    return key_hash(distinct_key("acct-1", "active_users", scope, value))


@pytest.fixture
def options() -> StoreOptions:
    return StoreOptions(cache_mb=8, write_buffer_mb=1)


def test_the_table_is_registered_with_its_index_and_changelogged_as_segments() -> None:
    assert "distinct" in TABLE_NAMES
    assert {"distinct", EXPIRY} <= set(TABLE_COLUMNS)
    assert TABLE.columns == ("distinct", EXPIRY)
    assert TABLE.changelog == "segments"
    assert TABLE.retention_ms == 37 * 86_400_000
    assert TABLE.changelog_topic("app") == "app-distinct-segments-changelog"


def test_marked_values_are_held_until_they_expire(tmp_path: Path, options: StoreOptions) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    a, b, c = key('"a"'), key('"b"'), key('"c"')
    step = StepState(store)
    mark_distinct(step, {5_000: [a], 9_000: [b]})
    # A step reads its own marks, before they reach the store.
    assert distinct_held(step, [a, b, c], now_ms=1_000) == {a, b}
    store.apply(step.updates())
    later = StepState(store)
    assert distinct_held(later, [a, b, c], now_ms=1_000) == {a, b}
    # Expired but not swept yet: absent, as it would be after a restore.
    assert distinct_held(later, [a, b, c], now_ms=5_000) == {b}
    store.close()


class CountingState(StepState):
    """A step that counts its multi-gets."""

    def __init__(self, store: PartitionStore) -> None:
        super().__init__(store)
        self.multi_gets: list[int] = []

    def get_many(self, column: str, keys: Sequence[bytes]) -> list[bytes | None]:
        self.multi_gets.append(len(keys))
        return super().get_many(column, keys)


def test_one_multi_get_per_call(tmp_path: Path, options: StoreOptions) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    step = CountingState(store)
    distinct_held(step, [key(str(i)) for i in range(50)], now_ms=0)
    assert step.multi_gets == [50]
    store.close()


def test_a_distinct_entry_never_meets_a_dedup_entry(tmp_path: Path, options: StoreOptions) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    h = key('"a"')
    step = StepState(store)
    mark_seen(step, [h], 1_000)
    assert distinct_held(step, [h], now_ms=0) == set()
    store.close()


def test_segments_restore_only_what_has_not_expired(tmp_path: Path, options: StoreOptions) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    gone, alive = key('"gone"'), key('"alive"', "p1767225600000")
    step = StepState(store)
    mark_distinct(step, {4_000: [gone], 8_000: [alive]})
    # What the step sends to the changelog: one segment of 24-byte entries.
    assert TABLE.encode_segment is not None and TABLE.restore_segment is not None
    [segment] = TABLE.encode_segment(step.updates()["distinct"])
    assert len(segment) == 48
    store.close()

    rebuilt = open_partition(tmp_path / "rebuilt", 0, COLUMNS, options)
    rebuilt.apply(TABLE.restore_segment(segment, 5_000))
    assert rebuilt.get("distinct", gone) is None
    assert rebuilt.get("distinct", alive) == (8_000).to_bytes(8, "big")
    [(index_key, index_value)] = rebuilt.items(EXPIRY)
    assert index_key.startswith((8_000).to_bytes(8, "big"))
    assert index_value == alive
    # The restored index expires what it restored.
    assert expire(rebuilt, now_ms=8_000) == 1
    assert list(rebuilt.items("distinct")) == []
    rebuilt.close()


def test_the_sweep_deletes_expired_entries_and_their_index(
    tmp_path: Path, options: StoreOptions
) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    day = 20_454
    first, second = day_expiry(day, 35), day_expiry(day + 1, 35)
    today, tomorrow = key('"u"', f"d{day}"), key('"u"', f"d{day + 1}")
    step = StepState(store)
    mark_distinct(step, {first: [today], second: [tomorrow]})
    store.apply(step.updates())
    assert expire(store, now_ms=first - 1) == 0
    assert expire(store, now_ms=first) == 1
    assert store.get("distinct", today) is None
    assert store.get("distinct", tomorrow) == second.to_bytes(8, "big")
    assert len(list(store.items(EXPIRY))) == 1
    assert expire(store, now_ms=second + 1) == 1
    assert list(store.items("distinct")) == [] and list(store.items(EXPIRY)) == []
    store.close()


def test_the_sweep_takes_bounded_chunks(tmp_path: Path, options: StoreOptions) -> None:
    store = open_partition(tmp_path, 0, COLUMNS, options)
    for step_no in range(5):
        step = StepState(store)
        mark_distinct(step, {1_000 + step_no: [key(f"{step_no}-{i}") for i in range(100)]})
        store.apply(step.updates())
    assert expire(store, now_ms=10_000, limit=150) == 200  # two steps
    assert expire(store, now_ms=10_000, limit=150) == 200
    assert expire(store, now_ms=10_000, limit=150) == 100
    assert list(store.items("distinct")) == []
    store.close()


def test_the_usage_step_reads_and_persists_distinct_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usage step's side of the table: keys the intake asks about are looked up in it, and
    the keys the intake counted (``IntakeResult.distinct``) are written with their expiry."""
    settings = load_settings({"MOMENTS_DATA_DIR": str(tmp_path), "MOMENTS_PARTITIONS": "1"})
    runtime = build_runtime(settings, CollectorRegistry())
    store = open_partition(tmp_path, 0, TABLE_COLUMNS, StoreOptions(cache_mb=8, write_buffer_mb=1))
    old, new = (distinct_key("a", "active_users", "d20454", v) for v in ('"old"', '"new"'))
    before = StepState(store)
    mark_distinct(before, {9_000: [key_hash(old)]})
    store.apply(before.updates())
    asked: list[set[str]] = []

    def fake_run_usage(records: object, state: UsageState, context: object, *, now_ms: int):  # type: ignore[no-untyped-def]  # stands in for the lead's fold
        assert state.intake.distinct_held is not None
        asked.append(state.intake.distinct_held([old, new]))
        result = IntakeResult()
        result.distinct[new] = 12_000
        return UsageOutcome(result, {}, [])

    monkeypatch.setattr(agents.usage, "run_usage", fake_run_usage)
    step = Step(0, StepState(store), 5_000)
    UsageHandler(runtime).process(step, settings.topic_usage, [])
    assert asked == [{old}]
    store.apply(step.state.updates())
    assert store.get("distinct", key_hash(new)) == (12_000).to_bytes(8, "big")
    assert expire(store, now_ms=9_000) == 1
    assert distinct_held(StepState(store), [key_hash(old), key_hash(new)], 9_000) == {key_hash(new)}
    store.close()
