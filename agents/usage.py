"""Usage handler: raw usage records in, period totals, events and dead letters out.

It only moves data: it hands a step's records to :func:`domain.moments.usage.run_usage`
with lookups into the step's state, writes back each touched key once, and queues what it
decided. The engine puts
all of it, with the input offsets, in the partition's Kafka transaction.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from agents.forwarding import Misplaced
from app.main import Runtime
from config.settings import to_ms
from domain.intake.batch import IntakeRules, IntakeState
from domain.intake.deadletter import dead_letter
from domain.intake.partitioning import account_partition, key_partition
from domain.moments.usage import UsageContext, UsageState, run_usage
from engine.step import Step
from state import jsonbytes
from tables.accounts import plan_of
from tables.anniversary_passes import keep_closed_after
from tables.announced import announced_of, put_announced
from tables.custom_firings import firings_of, put_firings
from tables.daily import daily_of, put_daily
from tables.dedup import key_hash, mark_seen, seen_many
from tables.distinct import distinct_held, mark_distinct
from tables.lifetime import lifetime_of, put_lifetime
from tables.totals import put_totals, totals_of

logger = logging.getLogger(__name__)


def intake_rules(runtime: Runtime) -> IntakeRules:
    """The intake's rules from settings."""
    settings = runtime.settings
    return IntakeRules(
        max_clock_skew_ms=to_ms(settings.max_clock_skew_s),
        dedup_horizon_ms=to_ms(settings.dedup_horizon_s),
        late_grace_ms=to_ms(settings.late_grace_s),
        daily_retention_days=runtime.daily_days,
        partitions=settings.partitions,
    )


__all__ = ["UsageHandler", "intake_rules", "key_partition"]


class UsageHandler:
    """Handles the usage topic and the re-keyed usage topic."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.rules = intake_rules(runtime)
        settings = runtime.settings
        self.rekey_topic = settings.topic_rekey
        self.dlq_topic = settings.topic_usage_dlq
        self.partitions = settings.partitions
        self.misplaced = Misplaced(runtime.metrics)
        self.context = UsageContext(
            self.rules, runtime.catalog, runtime.templates, runtime.clock.now_ms
        )

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """Dead-letter a record the engine found unprocessable; it counts as ``invalid``."""
        letter = dead_letter(
            reason, topic, step.partition, record.offset, record.value, step.now_ms
        )
        step.send(self.dlq_topic, record.key, jsonbytes.dumps(letter), headers=record.headers)
        metrics = self.runtime.metrics
        step.on_commit(lambda: metrics.records.labels(outcome="invalid").inc())

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Fold ``records`` into the step's state and queue events and dead letters."""
        rt = self.runtime
        state = step.state
        now_ms = step.now_ms

        # Dedup key -> its hash, made once: looked up, then written for the keys accepted.
        hashes: dict[str, bytes] = {}

        def seen_at(key: str) -> int | None:
            held = state.get("dedup", key_hash(key))
            return None if held is None else int.from_bytes(held, "big", signed=True)

        def seen_many_of(keys: Sequence[str]) -> dict[str, int]:
            digests = [key_hash(key) for key in keys]
            hashes.update(zip(keys, digests, strict=True))
            held = seen_many(state, digests)
            return {key: held[h] for key, h in zip(keys, digests, strict=True) if h in held}

        def distinct_held_of(keys: Sequence[str]) -> set[str]:
            by_hash = {key_hash(key): key for key in keys}
            return {by_hash[h] for h in distinct_held(state, list(by_hash), now_ms)}

        state_in = UsageState(
            IntakeState(
                plan_of=lambda account: plan_of(state, account),
                totals_of=lambda account: totals_of(state, account),
                seen_at=seen_at,
                daily_of=lambda account: daily_of(state, account),
                lifetime_of=lambda account: lifetime_of(state, account),
                keep_closed_after_ms=keep_closed_after(state, step.partition),
                distinct_held=distinct_held_of,
                seen_many=seen_many_of,
            ),
            announced_of=lambda account: announced_of(state, account),
            firings_of=lambda account: firings_of(state, account),
        )
        # aiokafka's records are domain.intake.batch.Raw as they are.
        outcome = run_usage(records, state_in, self.context, now_ms=now_ms)
        result = outcome.intake
        for account_id, totals in result.totals.items():
            put_totals(state, account_id, totals)
        for seen_ms, seen_hashes in _hashes_by_instant(result.seen, hashes).items():
            mark_seen(state, seen_hashes, seen_ms)
        if result.distinct:
            mark_distinct(state, _hashes_by_instant(result.distinct, {}))
        for account_id, days in result.daily.items():
            put_daily(state, account_id, days)
        for account_id, levels in outcome.announced.items():
            put_announced(state, account_id, levels)
        for account_id, lifetime in result.lifetime.items():
            put_lifetime(state, account_id, lifetime)
        for account_id, firings in outcome.firings.items():
            put_firings(state, account_id, firings)
        moments = outcome.moments
        for moment in moments:
            rt.send_event(step, moment.kind, moment.account_id.encode(), moment.payload)
        for raw, letter in result.dead_letters:
            # With the record's headers: a binary-mode CloudEvent's ce_id, ce_type... are there.
            step.send(self.dlq_topic, raw.key, jsonbytes.dumps(letter), headers=raw.headers)
        for account_id, raw in result.rekey:
            # Inside the same transaction as the offsets: exactly once, even though
            # the account's partition may belong to another worker.
            account_key = account_id.encode()
            if raw.value is not None:
                target = key_partition(account_key, self.partitions)
                # The headers go along: a binary-mode CloudEvent's attributes are in them.
                step.send(self.rekey_topic, account_key, raw.value, target, raw.headers)
        if result.misplaced:
            # Keyed right, placed by another partitioner: forwarded the same way (contract 1.2).
            for account_id, raw in result.misplaced:
                if raw.value is not None:
                    target = account_partition(account_id, self.partitions)
                    step.send(self.rekey_topic, raw.key, raw.value, target, raw.headers)
            account_id, raw = result.misplaced[0]
            home = account_partition(account_id, self.partitions)
            self.misplaced.forwarded(
                step, topic, len(result.misplaced), account_id, raw.partition, home
            )
        outcomes: Counter[str] = result.outcomes
        metrics = rt.metrics
        clock = rt.clock

        def count() -> None:
            for outcome, n in outcomes.items():
                metrics.records.labels(outcome=outcome).inc(n)
            emitted_s = clock.now_ms() / 1000
            observe = metrics.event_latency.observe
            for moment in moments:
                observe(max(0.0, emitted_s - moment.arrived_ms / 1000))
            # One labelled series looked up per kind, not per event (a lock and a dict each).
            for kind, n in Counter(moment.kind for moment in moments).items():
                metrics.events.labels(kind=kind).inc(n)

        step.on_commit(count)


def _hashes_by_instant(
    keys: Mapping[str, int], hashes: Mapping[str, bytes]
) -> dict[int, list[bytes]]:
    """Key text -> instant, as instant -> the keys' hashes (one index entry per instant);
    ``hashes`` holds the hashes already made."""
    grouped: dict[int, list[bytes]] = {}
    for key, instant_ms in keys.items():
        digest = hashes.get(key)
        grouped.setdefault(instant_ms, []).append(key_hash(key) if digest is None else digest)
    return grouped
