"""The harness reads a worker's /metrics with prometheus_client's parser, and a series
that is not on the page fails instead of reading as 0 (tests/harness/metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.metrics import build_metrics
from tests.harness.metrics import Metrics, MissingSeries


def page() -> Metrics:
    registry = CollectorRegistry()
    records = Counter("moments_records_total", "r", ["outcome"], registry=registry)
    records.labels(outcome="accepted").inc(3)
    records.labels(outcome="late")
    latency = Histogram("lat_seconds", "l", buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.5, 0.5, 5.0):
        latency.observe(value)
    return Metrics(generate_latest(registry).decode())


def test_a_labelled_series_reads_its_value_and_zero_when_created_at_zero() -> None:
    metrics = page()
    assert metrics.value("moments_records_total", outcome="accepted") == 3
    assert metrics.value("moments_records_total", outcome="late") == 0


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("moments_record_total", {"outcome": "accepted"}),  # misspelled name
        ("moments_records_total", {"outcome": "acepted"}),  # misspelled label value
        ("moments_records_total", {"result": "accepted"}),  # wrong label name
        ("moments_records_total", {}),  # labels left out
    ],
)
def test_a_series_that_is_not_there_fails(name: str, labels: dict[str, str]) -> None:
    with pytest.raises(MissingSeries):
        page().value(name, **labels)


def test_totals_and_label_sums_need_the_metric() -> None:
    metrics = page()
    assert metrics.total("moments_records_total") == 3
    assert metrics.by_label("moments_records_total", "outcome") == {"accepted": 3, "late": 0}
    with pytest.raises(MissingSeries):
        metrics.total("moments_events_total")
    with pytest.raises(MissingSeries):
        metrics.by_label("moments_events_total", "kind")


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    metrics = page()
    # 4 observations: 1 <= 0.1, 3 <= 1.0, 4 <= +Inf; the median (rank 2) is in (0.1, 1.0].
    assert metrics.histogram_quantile("lat_seconds", 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    # Rank 3.96 falls in +Inf: the lower bound of that bucket.
    assert metrics.histogram_quantile("lat_seconds", 0.99) == 1.0


def test_an_empty_histogram_has_no_quantile() -> None:
    registry = CollectorRegistry()
    Histogram("idle_seconds", "i", registry=registry)
    metrics = Metrics(generate_latest(registry).decode())
    assert metrics.histogram_quantile("idle_seconds", 0.5) is None


def test_every_series_a_worker_reports_is_there_from_the_start() -> None:
    """What the harness counts on: a fresh worker's page already has each labelled
    series the tests and the bench read (app/metrics.py creates them up front)."""
    metrics = Metrics(generate_latest(build_metrics(CollectorRegistry()).registry).decode())
    assert metrics.value("moments_records_total", outcome="unknown_account") == 0
    assert metrics.value("moments_events_total", kind="billing-anniversary") == 0
    assert metrics.value("moments_plan_records_total", outcome="applied") == 0
    assert metrics.value("moments_batch_seconds_count") == 0
    assert metrics.total("moments_rebalances_total") == 0
