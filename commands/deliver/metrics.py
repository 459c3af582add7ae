"""Prometheus metrics of ``moments deliver``, built by one typed factory on a given registry.

Every endpoint's series (and every tier's backlog) exist, at zero, from the first scrape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DeliveryOutcome = Literal["delivered", "retried", "dead"]
OUTCOMES: Final[tuple[DeliveryOutcome, ...]] = get_args(DeliveryOutcome)

# From a sub-second hop to the hours of the retry schedule.
_LATENCY_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeliverMetrics:
    """Every metric the deliverer exports."""

    registry: CollectorRegistry
    deliveries: Counter
    latency: Histogram
    retry_backlog: Gauge
    attempts: Counter
    ready: Gauge


def build_deliver_metrics(
    registry: CollectorRegistry, endpoints: Sequence[str], tiers: Sequence[str]
) -> DeliverMetrics:
    """The metrics, with the series of ``endpoints`` and their ``tiers`` created up front."""
    deliveries = Counter(
        "moments_deliveries_total",
        "Deliveries of events to webhook endpoints whose outcome is recorded, by endpoint and "
        "outcome: delivered (a 2xx), retried (written to a retry tier), dead (dead-lettered).",
        ["endpoint", "outcome"],
        registry=registry,
    )
    latency = Histogram(
        "moments_delivery_latency_seconds",
        "Time from an event's emitted_at to its acknowledged delivery, by endpoint.",
        ["endpoint"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    backlog = Gauge(
        "moments_delivery_retry_backlog",
        "Deliveries waiting in an endpoint's retry tier (records past this deliverer's "
        "position in the tier's partitions it holds), by endpoint and tier.",
        ["endpoint", "tier"],
        registry=registry,
    )
    attempts = Counter(
        "moments_delivery_attempts_total",
        "HTTP attempts, by endpoint and result: the status class (2xx, 4xx, 5xx...) or "
        "timeout or error (no answer).",
        ["endpoint", "result"],
        registry=registry,
    )
    ready = Gauge(
        "moments_deliver_ready",
        "1 when every endpoint's consumer has joined its group.",
        registry=registry,
    )
    for name in endpoints:
        latency.labels(endpoint=name)
        for outcome in OUTCOMES:
            deliveries.labels(endpoint=name, outcome=outcome)
        for tier in tiers:
            backlog.labels(endpoint=name, tier=tier)
        for result in ("2xx", "4xx", "5xx", "timeout", "error"):
            attempts.labels(endpoint=name, result=result)
    return DeliverMetrics(registry, deliveries, latency, backlog, attempts, ready)
