"""Account-plans handler: keeps the accounts table in step with the billing system.

Contract 1.2: tombstones forget the account, a record older than the one held is
ignored, a plan missing from the catalog (or any invalid record) goes to the
dead-letter topic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from app.main import Runtime
from domain.accounts import AccountPlan, supersedes
from domain.deadletter import dead_letter
from domain.errors import InvalidPlanRecord
from domain.records import parse_plan
from engine.step import Step
from tables.accounts import forget_plan, plan_of, put_plan

logger = logging.getLogger(__name__)


class PlansHandler:
    """Handles the account-plans topic."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.dlq_topic = runtime.settings.topic_accounts_dlq

    def apply(self, step: Step, topic: str, record: Any) -> str:
        """Apply one account-plans record to the step; returns its outcome."""
        state = step.state
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if record.value is None:
            if key is not None:
                forget_plan(state, key)
            return "tombstone"
        try:
            parsed = parse_plan(record.value, self.runtime.catalog)
            if key is not None and key != parsed.account_id:
                raise InvalidPlanRecord(
                    f"account_id: {parsed.account_id!r} differs from the record key {key!r}; "
                    f"key account-plans records by account id"
                )
        except InvalidPlanRecord as exc:
            letter = dead_letter(
                exc, topic, step.partition, record.offset, record.value, step.now_ms
            )
            step.send(self.dlq_topic, record.key, orjson.dumps(letter))
            return "invalid"
        if not supersedes(parsed, plan_of(state, parsed.account_id)):
            return "stale"
        put_plan(state, parsed.account_id, AccountPlan.from_record(parsed))
        return "applied"

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Apply every record in order (a later one sees the earlier ones' writes)."""
        outcomes: Counter[str] = Counter(self.apply(step, topic, r) for r in records)
        metrics = self.runtime.metrics

        def count() -> None:
            for outcome, n in outcomes.items():
                metrics.plan_records.labels(outcome=outcome).inc(n)

        step.on_commit(count)
