"""A partition's steps run in this process, without Kafka: the real handlers on real
RocksDB stores, as the functional tests and the profiling scripts (``scripts/profile_plans.py``,
``scripts/profile_steps.py``) drive them.

- :class:`Record`: the fields of an aiokafka ``ConsumerRecord`` the handlers read;
- :func:`runtime_of`: the worker's runtime, built by the factory from the settings of a
  data directory;
- :func:`open_store`: a partition's store with every table of the registry;
- :func:`with_changelogs`: a step's messages plus its changelog records, as the engine
  commits them;
- :func:`commit`: a decided step applied as the engine applies it once Kafka holds it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Final, NamedTuple

from prometheus_client import CollectorRegistry

from app.main import Runtime, build_runtime
from config.settings import load_settings
from domain.common.timeutil import to_rfc3339
from engine.checkpoint import Checkpoint
from engine.step import Messages, Step
from state.store import PartitionStore, StoreOptions, open_partition
from tables.registry import TABLE_COLUMNS, table_specs

#: Small RocksDB buffers: a test's store holds a few keys.
SMALL: Final = StoreOptions(cache_mb=8, write_buffer_mb=1)

#: What :meth:`engine.checkpoint.Checkpoint.with_changelogs` reads of a checkpoint: the
#: changelogged tables (their retention plays no part in the records) and the app id the
#: changelog topics are named after.
_CHANGELOGS: Final = SimpleNamespace(
    _changelogged={s.name: s for s in table_specs(1, 1)}, app_id="profile"
)


class Record(NamedTuple):
    """The fields of an aiokafka ConsumerRecord the handlers read."""

    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int
    topic: str
    partition: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def runtime_of(data_dir: Path, partitions: int, *, clock_ms: int | None = None) -> Runtime:
    """The runtime of a worker of ``partitions`` partitions keeping its state in ``data_dir``,
    its metrics in a fresh registry; its clock a manual one set to ``clock_ms`` if given."""
    env = {"MOMENTS_DATA_DIR": str(data_dir), "MOMENTS_PARTITIONS": str(partitions)}
    if clock_ms is not None:
        env["MOMENTS_CLOCK"] = f"manual:{to_rfc3339(clock_ms)}"
    return build_runtime(load_settings(env), CollectorRegistry())


def open_store(
    data_dir: Path, partition: int, options: StoreOptions = SMALL, cached_objects: int = 0
) -> PartitionStore:
    """The store of ``partition`` under ``data_dir``, with every table of the registry."""
    return open_partition(data_dir, partition, TABLE_COLUMNS, options, cached_objects)


def with_changelogs(step: Step) -> Messages:
    """``step``'s messages plus its changelog records (one per touched key), as the engine
    sends them (changelog topics of the app id ``profile``)."""
    # A stand-in for the checkpoint: with_changelogs reads only these two attributes.
    messages, _ = Checkpoint.with_changelogs(_CHANGELOGS, step)  # type: ignore[arg-type]
    return messages


def commit(store: PartitionStore, step: Step) -> None:
    """Apply ``step`` as the engine does once Kafka holds it (``engine.checkpoint``): its
    writes to ``store``, its decoded values settled in the store's object cache, then its
    after-commit callbacks."""
    updates = step.state.updates()
    store.apply(updates)
    store.objects.settle(updates, step.state.objects)
    for callback in step.after_commit:
        callback()
