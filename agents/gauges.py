"""Gauges refreshed on a timer: consumer lag, table keys, readiness."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import TopicPartition
from faust.types import TP as FaustTP

from app.main import TABLE_NAMES, Runtime
from engine.engine import Engine

logger = logging.getLogger(__name__)

GAUGE_INTERVAL_S = 5.0


def refresh_gauges(runtime: Runtime, engine: Engine) -> None:
    """Update every gauge from the consumer and the stores."""
    metrics = runtime.metrics
    metrics.ready.set(1 if engine.is_ready() else 0)
    consumer: Any = runtime.app.consumer
    metrics.consumer_lag.clear()
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
                metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
    stores = [o.store for o in engine.owned.values()]
    for name in TABLE_NAMES:
        total = 0
        for store in stores:
            try:
                total += store.estimate_keys(name)
            except Exception:  # noqa: BLE001, S112 - a store closed by a rebalance mid-count
                continue
        metrics.table_keys.labels(table=name).set(total)
