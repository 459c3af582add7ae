"""Gauges refreshed on a timer: consumer lag, table keys, readiness; and a backlog's
progress in the log."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import TopicPartition
from faust.types import TP as FaustTP

from app.main import Runtime
from engine.engine import Engine
from engine.progress import BacklogWatch
from tables.registry import TABLE_NAMES

logger = logging.getLogger(__name__)

GAUGE_INTERVAL_S = 5.0


def refresh_gauges(runtime: Runtime, engine: Engine, backlog: BacklogWatch | None = None) -> None:
    """Update every gauge from the consumer and the stores (and ``backlog`` from the lag)."""
    metrics = runtime.metrics
    metrics.ready.set(1 if engine.is_ready() else 0)
    consumer: Any = runtime.app.consumer
    metrics.consumer_lag.clear()
    lag_total = processed = 0
    measured: set[int] = set()
    if consumer is not None:
        for partition in list(engine.owned):
            for topic in engine.topic_order:
                tp = TopicPartition(topic, partition)
                try:
                    highwater = consumer.highwater(FaustTP(topic, partition))
                except Exception:  # noqa: BLE001, S112 - no fetch yet for this partition
                    continue
                if highwater is None:
                    continue
                done = engine.processed_next(tp)
                if done < 0:
                    continue
                lag = max(0, int(highwater) - done)
                lag_total += lag
                processed += done
                measured.add(partition)
                metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
    # Only with a lag from every partition: a backlog announced from the first partition
    # fetched would be understated.
    if backlog is not None and engine.owned and measured == set(engine.owned):
        line = backlog.observe(engine.generation, processed, lag_total)
        if line is not None:
            logger.info(line)
    stores = [o.store for o in engine.owned.values()]
    for name in TABLE_NAMES:
        total = 0
        for store in stores:
            try:
                total += store.estimate_keys(name)
            except Exception:  # noqa: BLE001, S112 - a store closed by a rebalance mid-count
                continue
        metrics.table_keys.labels(table=name).set(total)
