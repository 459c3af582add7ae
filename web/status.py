"""``GET /status``: one worker's operational state, for ``moments status``.

Partitions (active and standby), consumer lag per partition, bytes of RocksDB state on
disk, readiness with its checks, and the URLs of the whole fleet as the group's last
assignment gave them, so one worker's answer finds the others. It holds no account
data, so it stays open like ``/metrics`` when ``MOMENTS_WEB_TOKEN`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.metrics import Metrics
from engine.engine import Engine


def directory_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it is gone: a store closed meanwhile)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size  # noqa: PTH118 - os.walk gives strings
            except OSError:
                continue  # a file RocksDB compacted away while we walked
    return total


def lag_by_partition(metrics: Metrics) -> dict[int, int]:
    """Lag per partition, summed over the input topics, from the lag gauge's last refresh."""
    out: dict[int, int] = {}
    for family in metrics.consumer_lag.collect():
        for sample in family.samples:
            partition = int(sample.labels["partition"])
            out[partition] = out.get(partition, 0) + int(sample.value)
    return out


def status_view(engine: Engine, metrics: Metrics, url: str, fleet: Iterable[str]) -> dict[str, Any]:
    """What ``/status`` answers (see the module's docstring)."""
    active = sorted(engine.owned)
    standby = sorted(engine.standby)
    lag = lag_by_partition(metrics)
    stores = {p: o.store.path for p, o in engine.owned.items()}
    stores.update({p: s.path for p, s in engine.standby.items()})
    state = {str(p): directory_bytes(path) for p, path in sorted(stores.items())}
    ready = engine.is_ready()
    return {
        "url": url,
        "ready": ready,
        "checks": engine.readiness(),
        "partitions": {"active": active, "standby": standby},
        "lag": {str(p): lag[p] for p in active if p in lag},
        "lag_total": sum(lag.get(p, 0) for p in active),
        "state_bytes": state,
        "state_bytes_total": sum(state.values()),
        "fleet": sorted(set(fleet)),
    }
