"""Timer that refreshes the gauges: consumer lag, table keys, readiness."""

from __future__ import annotations

import logging
from typing import Any

from app.health import readiness
from app.main import TABLE_NAMES, app, metrics, settings
from app.offsets import position

logger = logging.getLogger(__name__)

GAUGE_INTERVAL_S = 5.0


def _estimated_keys(table: Any) -> int:
    """RocksDB's own key estimate over the table's open partition stores (active + standby)."""
    total = 0
    for db in list(getattr(table.data, "_dbs", {}).values()):
        try:
            total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except Exception:  # noqa: BLE001, S112 - a store closed by a rebalance mid-count
            continue
    return total


async def refresh_gauges() -> None:
    """Update every gauge from the consumer and the stores."""
    metrics.ready.set(1 if readiness(app)["ready"] else 0)
    consumer: Any = app.consumer
    if consumer is None:
        return
    inputs = {
        settings.topic_usage,
        settings.topic_rekey,
        settings.topic_accounts,
        settings.topic_ticks,
    }
    metrics.consumer_lag.clear()
    for tp in consumer.assignment():
        if tp.topic not in inputs:  # not changelogs (standby) nor our own outputs
            continue
        highwater = consumer.highwater(tp)
        at = await position(consumer, tp)
        if highwater is None or at is None:
            continue
        lag = max(0, int(highwater) - at)
        metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
    for name in TABLE_NAMES:
        table = app.tables.get(name)
        if table is not None:
            metrics.table_keys.labels(table=name).set(_estimated_keys(table))


@app.timer(GAUGE_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
async def gauges_timer() -> None:
    """Refresh the gauges."""
    await refresh_gauges()
