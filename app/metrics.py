"""Prometheus metrics of the worker, all built by one typed factory.

The factory takes the registry as an argument so tests get a fresh one. Names
follow the contract (section 5); label values are created up front so every
series exists, at zero, from the first scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from domain.wording.kinds import KINDS

Outcome = Literal["accepted", "duplicate", "invalid", "late", "unknown_account", "unmetered"]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
EVENT_KINDS: Final[tuple[str, ...]] = KINDS
PLAN_OUTCOMES: Final[tuple[str, ...]] = ("applied", "stale", "invalid", "tombstone")
#: Optional fields of account-plans records whose invalid entries are left out (contract 1.2).
PLAN_OPTIONAL_FIELDS: Final[tuple[str, ...]] = ("limits", "members", "region")
#: Retriable produce errors whose series exist from the first scrape (others appear when
#: first seen); NotEnoughReplicasError is the broker's transaction verification (app.logs).
KAFKA_RETRY_ERRORS: Final[tuple[str, ...]] = (
    "NotEnoughReplicasError",
    "NotEnoughReplicasAfterAppendError",
    "NotLeaderForPartitionError",
    "LeaderNotAvailableError",
    "RequestTimedOutError",
)
#: Background works whose passes skip an account that fails (its metric label).
BACKGROUND_WORKS: Final[tuple[str, ...]] = ("drops", "anniversaries", "custom")

_C = TypeVar("_C", Counter, Gauge)

# The *_created series double every counter for no dashboard we ship.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

# Event latency spans sub-second (hot path) to minutes (drop evaluation after grace).
_LATENCY_BUCKETS: Final = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every metric the worker exports."""

    registry: CollectorRegistry
    records: Counter
    plan_records: Counter
    plan_entries_left_out: Counter
    records_forwarded: Counter
    events: Counter
    accounts_skipped: Counter
    event_latency: Histogram
    batch_seconds: Histogram
    consumer_lag: Gauge
    table_keys: Gauge
    rebalances: Counter
    ready: Gauge
    kafka_retries: Counter

    def count_background(self, events: Mapping[str, int], skipped: int, work: str) -> None:
        """Count a committed background slice: its events by kind, the accounts it skipped."""
        for kind, sent in events.items():
            self.events.labels(kind=kind).inc(sent)
        if skipped:
            self.accounts_skipped.labels(work=work).inc(skipped)


def _labelled(
    kind: type[_C],
    name: str,
    doc: str,
    label: str,
    values: Iterable[str],
    registry: CollectorRegistry,
) -> _C:
    """A metric with one label whose series for ``values`` exist, at zero, from the start."""
    metric = kind(name, doc, [label], registry=registry)
    for value in values:
        metric.labels(**{label: value})
    return metric


def build_metrics(
    registry: CollectorRegistry,
    tables: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    kinds: tuple[str, ...] = EVENT_KINDS,
) -> Metrics:
    """Create the worker's metrics in ``registry`` (series of ``tables``, input topics
    ``inputs`` and event ``kinds``, the rules' ``custom.<id>`` among them, exist from the
    start)."""
    return Metrics(
        registry=registry,
        records=_labelled(
            Counter,
            "moments_records_total",
            "Usage records processed, by outcome (each record counts under exactly one).",
            "outcome",
            OUTCOMES,
            registry,
        ),
        plan_records=_labelled(
            Counter,
            "moments_plan_records_total",
            "Account-plan records processed, by outcome.",
            "outcome",
            PLAN_OUTCOMES,
            registry,
        ),
        plan_entries_left_out=_labelled(
            Counter,
            "moments_plan_entries_left_out_total",
            "Invalid optional entries of account-plans records (a limit <= 0, say) left out "
            "while the rest of the record applied, by field.",
            "field",
            PLAN_OPTIONAL_FIELDS,
            registry,
        ),
        records_forwarded=_labelled(
            Counter,
            "moments_records_forwarded_total",
            "Input records keyed by their account id but found on another partition than "
            "Kafka's default partitioner (murmur2) gives it, forwarded to that partition, by "
            "input topic (their producer should use murmur2: librdkafka's "
            "partitioner=murmur2_random).",
            "topic",
            inputs,
            registry,
        ),
        events=_labelled(
            Counter, "moments_events_total", "Moment events emitted.", "kind", kinds, registry
        ),
        accounts_skipped=_labelled(
            Counter,
            "moments_background_accounts_skipped_total",
            "Accounts a drop evaluation or anniversary pass skipped because judging them raised "
            "(the pass goes on with the next account; each is logged with its error), by work.",
            "work",
            BACKGROUND_WORKS,
            registry,
        ),
        event_latency=Histogram(
            "moments_event_latency_seconds",
            "Event emission time minus arrival time of the record (or tick) that caused it.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        batch_seconds=Histogram(
            "moments_batch_seconds",
            "Time to process one batch of usage records.",
            registry=registry,
        ),
        consumer_lag=Gauge(
            "moments_consumer_lag",
            "Messages between this worker's position and the end of each assigned partition.",
            ["topic", "partition"],
            registry=registry,
        ),
        table_keys=_labelled(
            Gauge,
            "moments_table_keys",
            "Keys held in each table on this worker.",
            "table",
            tables,
            registry,
        ),
        rebalances=Counter(
            "moments_rebalances_total", "Consumer-group rebalances seen.", registry=registry
        ),
        ready=Gauge(
            "moments_ready",
            "1 when partitions are assigned and tables recovered.",
            registry=registry,
        ),
        kafka_retries=_labelled(
            Counter,
            "moments_kafka_retries_total",
            "Writes to Kafka the client retried after a retriable error, by error.",
            "error",
            KAFKA_RETRY_ERRORS,
            registry,
        ),
    )
