"""Account-plans agent: keeps the accounts table in step with the billing system.

Contract 1.2: tombstones forget the account, a record older than the one held is
ignored, a plan missing from the catalog (or any invalid record) goes to the
dead-letter topic. Plans are few; records are handled one at a time.
"""

from __future__ import annotations

import logging

import orjson
from faust.types import EventT, StreamT

from agents.batch import Writes
from app.commits import commit_guard
from app.gate import plans_gate
from app.main import app, catalog, clock, metrics, topics
from domain.accounts import AccountPlan, supersedes
from domain.deadletter import dead_letter
from domain.errors import InvalidPlanRecord
from domain.records import parse_plan
from tables.accounts import accounts, plan_of

logger = logging.getLogger(__name__)


async def apply_plan_event(event: EventT[bytes], writes: Writes) -> str:
    """Apply one account-plans record; returns its outcome."""
    message = event.message
    partition = message.partition
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    if message.value is None:
        if key is not None:
            writes.delete(accounts, key, partition)
        return "tombstone"
    try:
        record = parse_plan(message.value, catalog)
        if key is not None and key != record.account_id:
            raise InvalidPlanRecord(
                f"account_id: {record.account_id!r} differs from the record key {key!r}; "
                f"key account-plans records by account id"
            )
    except InvalidPlanRecord as exc:
        letter = dead_letter(
            exc, message.topic, message.partition, message.offset, message.value, clock.now_ms()
        )
        await writes.send(topics.accounts_dlq, message.key, orjson.dumps(letter), partition)
        return "invalid"
    held = plan_of(record.account_id)
    if not supersedes(record, held):
        return "stale"
    plan = orjson.dumps(AccountPlan.from_record(record).to_json())
    writes.put(accounts, record.account_id, plan, partition)
    return "applied"


@app.agent(topics.accounts)
async def process_plans(stream: StreamT[bytes]) -> None:
    """Consume account-plans records and report progress to the plans gate."""
    async for event in stream.events():
        commit_guard.install(app.consumer)
        async with commit_guard.lock:  # the record, its state and its offset: one transaction
            writes = Writes()
            outcome = await apply_plan_event(event, writes)
            await writes.flush()
            event.ack()
        metrics.plan_records.labels(outcome=outcome).inc()
        plans_gate.processed(event.message.partition, event.message.offset)
