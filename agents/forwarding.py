"""Input records found on another partition than their account's: counted and reported once.

A producer whose partitioner is not murmur2 (librdkafka's default is CRC32-based) places a
record keyed by its account on a partition whose worker does not hold the account's state.
The usage and plans handlers forward such a record to its account's partition inside the
step's transaction (exactly once, as re-keyed usage records); this module counts them in
``moments_records_forwarded_total{topic}`` and says once per topic, in the log, what the
producer should change.
"""

from __future__ import annotations

import logging

from app.metrics import Metrics
from domain.intake.partitioning import PARTITIONER_FIX
from engine.step import Step

logger = logging.getLogger(__name__)


class Misplaced:
    """Counts one handler's forwarded records and reports the first of each topic once."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        #: Topics already reported by this process.
        self.reported: set[str] = set()

    def forwarded(
        self, step: Step, topic: str, count: int, account_id: str, found: int, home: int
    ) -> None:
        """``count`` records of ``topic`` are forwarded by ``step``; ``account_id``'s (found
        on partition ``found``, belonging on ``home``) stands for them in the report."""
        metrics = self.metrics

        def done() -> None:
            metrics.records_forwarded.labels(topic=topic).inc(count)
            if topic in self.reported:
                return
            self.reported.add(topic)
            logger.warning(
                "%s: records keyed by account id are on other partitions than Kafka's default "
                "partitioner (murmur2) gives their account (account %r on partition %d, not "
                "%d): their producer uses another partitioner, such as librdkafka's default "
                "(CRC32-based). Each is forwarded to its account's partition and counted in "
                "moments_records_forwarded_total; %s. Reported once per topic.",
                topic,
                account_id,
                found,
                home,
                PARTITIONER_FIX,
                extra={"account_id": account_id, "partition": found},
            )

        step.on_commit(done)
