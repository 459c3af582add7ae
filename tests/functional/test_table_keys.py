"""``moments_table_keys``: a series for every table of the registry, from the first scrape,
set from the partition stores by the gauges' refresh."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from agents.gauges import refresh_gauges
from commands.worker.wiring import worker_runtime
from config.settings import load_settings
from state.store import PartitionStore, StoreOptions, open_partition
from tables.registry import TABLE_COLUMNS, TABLE_NAMES

METRIC = "moments_table_keys"


@dataclass
class _Owned:
    store: PartitionStore


@dataclass
class _Engine:
    """What the gauges' refresh reads of the engine when no consumer has fetched yet."""

    owned: dict[int, _Owned] = field(default_factory=dict)
    generation: int = 1
    topic_order: tuple[str, ...] = ()

    def is_ready(self) -> bool:
        return True


def _value(registry: CollectorRegistry, table: str) -> float | None:
    return registry.get_sample_value(METRIC, {"table": table})


def test_the_registry_names_every_table_once() -> None:
    assert len(set(TABLE_NAMES)) == len(TABLE_NAMES)
    assert {"anniversaries", "anniversary-passes"} <= set(TABLE_NAMES)
    assert set(TABLE_NAMES) <= set(TABLE_COLUMNS)


def test_every_table_reports_its_keys(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    settings = load_settings({"MOMENTS_DATA_DIR": str(tmp_path), "MOMENTS_PARTITIONS": "1"})
    runtime = worker_runtime(settings, registry)
    # Every table's series exists at zero before any refresh.
    assert {t: _value(registry, t) for t in TABLE_NAMES} == dict.fromkeys(TABLE_NAMES, 0.0)

    store = open_partition(tmp_path, 0, TABLE_COLUMNS, StoreOptions(cache_mb=8, write_buffer_mb=1))
    try:
        written = {table: i + 1 for i, table in enumerate(TABLE_NAMES)}
        store.apply({t: {f"key-{k}".encode(): b"v" for k in range(n)} for t, n in written.items()})
        stand_in: Any = SimpleNamespace(metrics=runtime.metrics, app=SimpleNamespace(consumer=None))
        refresh_gauges(stand_in, _Engine({0: _Owned(store)}))  # type: ignore[arg-type]
        assert {t: _value(registry, t) for t in TABLE_NAMES} == {
            t: float(n) for t, n in written.items()
        }
    finally:
        store.close()
