"""One record's delivery to one endpoint, from the attempt to its recorded outcome.

A record comes from an event topic (a first attempt) or from one of the endpoint's retry tiers
(its state in headers). The attempt's answer is classified (:func:`domain.delivery.outcomes.
classify`); a delivery to retry is written to the next tier with its due time, a dead one to
the dead-letter topic. The outcome counts as recorded only when Kafka acknowledged that write:
until :meth:`Deliverer.deliver` returns, the record's offset must not be committed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from commands.deliver.http import Answer
from commands.deliver.metrics import DeliverMetrics
from domain.delivery.endpoints import Endpoint
from domain.delivery.outcomes import classify
from domain.delivery.records import (
    EventFacts,
    RetryState,
    dead_letter,
    event_facts,
    retry_state,
)
from domain.delivery.schedule import RetrySchedule, retry_after_s, wait_s
from domain.delivery.signing import webhook_headers

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "retried", "dead", "skipped"]


class Poster(Protocol):
    """Sends one signed request (:class:`commands.deliver.http.HttpPoster`)."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer: ...


class Recorder(Protocol):
    """Writes a record to Kafka and returns once the broker acknowledged it."""

    async def write(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    """A record to deliver: where it was read, its key, value and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int = 0


@dataclass
class Deliverer:
    """Delivers records to one endpoint and records each outcome."""

    endpoint: Endpoint
    schedule: RetrySchedule
    #: The endpoint's tier topics, in schedule order.
    tier_topics: tuple[str, ...]
    dlq_topic: str
    poster: Poster
    recorder: Recorder
    metrics: DeliverMetrics
    now_ms: Callable[[], int]
    #: A number in [-1, 1] picking each wait's jitter.
    spread: Callable[[], float] = field(default=lambda: random.uniform(-1.0, 1.0))  # noqa: S311 - jitter, not a secret

    def is_tier(self, topic: str) -> bool:
        """Whether ``topic`` is one of this endpoint's retry tiers."""
        return topic in self.tier_topics

    async def deliver(self, record: Inbound) -> Outcome:
        """Deliver ``record`` once, and record what became of it (see the module)."""
        if record.value is None:
            return "skipped"  # a tombstone: not an event
        state = self._state(record)
        try:
            facts = event_facts(record.value)
        except ValueError as exc:
            await self._dead(record, None, "invalid", 0, Answer(None, error=str(exc)), None)
            return "dead"
        if state is None and not self.endpoint.wants(facts.kind, facts.plan_id, facts.account_id):
            return "skipped"
        attempts = (state.attempts if state else 0) + 1
        now_ms = self.now_ms()
        headers = webhook_headers(
            facts.event_id, now_ms // 1000, record.value, self.endpoint.secrets
        )
        answer = await self.poster.post(
            self.endpoint.url, record.value, headers, self.endpoint.timeout_s
        )
        name = self.endpoint.name
        self.metrics.attempts.labels(endpoint=name, result=answer.result).inc()
        verdict = classify(answer.status)
        if verdict == "ack":
            self.metrics.deliveries.labels(endpoint=name, outcome="delivered").inc()
            latency = _latency_s(facts, self.now_ms())
            if latency is not None:
                self.metrics.latency.labels(endpoint=name).observe(latency)
            return "delivered"
        first_ms = state.first_attempt_ms if state else now_ms
        tier = self.schedule.next_tier(attempts) if verdict == "retry" else None
        if tier is None:
            reason: Literal["rejected", "exhausted"] = (
                "rejected" if verdict == "dead" else "exhausted"
            )
            await self._dead(record, facts, reason, attempts, answer, first_ms, now_ms)
            return "dead"
        wait = wait_s(
            self.schedule.delays_s[tier],
            retry_after_s(answer.retry_after, now_ms / 1000),
            self.spread(),
        )
        retry = RetryState(
            attempts=attempts,
            due_ms=now_ms + round(wait * 1000),
            first_attempt_ms=first_ms,
            last_status=answer.status,
            last_error=answer.error or f"HTTP {answer.status}",
        )
        await self.recorder.write(self.tier_topics[tier], record.key, record.value, retry.headers())
        self.metrics.deliveries.labels(endpoint=name, outcome="retried").inc()
        logger.info(
            "endpoint %s: event %s retried in %.1fs (attempt %d: %s)",
            name,
            facts.event_id,
            wait,
            attempts,
            retry.last_error,
        )
        return "retried"

    def _state(self, record: Inbound) -> RetryState | None:
        """A tier record's state; None for a first attempt. A tier record without readable
        state (written by hand, say) is tried as if it came from the tier before."""
        if not self.is_tier(record.topic):
            return None
        try:
            return retry_state(record.headers)
        except ValueError:
            tier = self.tier_topics.index(record.topic)
            logger.warning(
                "%s: a record without delivery state at offset %d", record.topic, record.offset
            )
            return RetryState(attempts=tier + 1, due_ms=0, first_attempt_ms=self.now_ms())

    async def _dead(
        self,
        record: Inbound,
        facts: EventFacts | None,
        reason: Literal["rejected", "exhausted", "invalid"],
        attempts: int,
        answer: Answer,
        first_ms: int | None,
        last_ms: int | None = None,
    ) -> None:
        error = answer.error or (f"HTTP {answer.status}" if answer.status is not None else "")
        value = dead_letter(
            endpoint=self.endpoint.name,
            value=record.value or b"",
            facts=facts,
            reason=reason,
            attempts=attempts,
            last_status=answer.status,
            body=answer.body,
            error=error,
            first_attempt_ms=first_ms,
            last_attempt_ms=last_ms,
        )
        key = (
            record.key if record.key is not None else (facts.account_id.encode() if facts else None)
        )
        await self.recorder.write(self.dlq_topic, key, value, ())
        self.metrics.deliveries.labels(endpoint=self.endpoint.name, outcome="dead").inc()
        logger.warning(
            "endpoint %s: event %s dead-lettered (%s after %d attempt(s): %s)",
            self.endpoint.name,
            facts.event_id if facts else f"at {record.topic}/{record.partition}@{record.offset}",
            reason,
            attempts,
            error,
        )


def _latency_s(facts: EventFacts, now_ms: int) -> float | None:
    if facts.emitted_at is None:
        return None
    try:
        emitted = datetime.fromisoformat(facts.emitted_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, now_ms / 1000 - emitted.timestamp())
