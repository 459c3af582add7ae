"""A usage step of an app built by the factory, driven against real RocksDB stores.

No broker: the records are built here, and the step's outputs (state writes and
queued messages) are checked before anything would be committed.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from agents.plans import PlansHandler
from agents.usage import UsageHandler
from engine.step import Step
from state.transaction import StepState
from tables.accounts import plan_of
from tables.totals import totals_of
from tests.cloudevents_oracle import event_payloads
from tests.harness.steps import Record, open_store, runtime_of


def test_a_usage_step_folds_records_and_queues_events(tmp_path: Path) -> None:
    runtime = runtime_of(tmp_path, 1)
    settings = runtime.settings
    store = open_store(tmp_path, 0)
    now = int(time.time() * 1000)

    plans = Step(0, StepState(store), now)
    plan = {"account_id": "a", "plan_id": "free", "updated_at": "2026-01-01T00:00:00Z"}
    PlansHandler(runtime).process(
        plans,
        settings.topic_accounts,
        [Record(b"a", orjson.dumps(plan), 0, now, settings.topic_accounts)],
    )
    store.apply(plans.state.updates())
    assert plan_of(store, "a") is not None

    def usage(i: int, quantity: int) -> Record:
        value = {
            "record_id": f"r{i}",
            "account_id": "a",
            "metric": "api_calls",
            "quantity": quantity,
            "timestamp": now,
        }
        return Record(b"a", orjson.dumps(value), i, now, settings.topic_usage)

    step = Step(0, StepState(store), now)
    headers = (("ce_id", b"e-1"), ("ce_type", b"x"))
    bad = Record(b"a", b"{", 3, now, settings.topic_usage, headers=headers)
    records = [usage(0, 400), usage(1, 450), usage(1, 450), bad]
    UsageHandler(runtime).process(step, settings.topic_usage, records)
    # Nothing reaches RocksDB before the engine commits the step.
    assert totals_of(store, "a").periods == {}
    near = step.messages[(settings.event_topic("threshold-near"), 0)]
    # Each event with its CloudEvents headers (binary mode), its JSON value the event itself.
    assert [e["level"] for e in event_payloads(near, settings.event_source)] == [0.8]  # 850/1,000
    [(_, letter, headers)] = step.messages[(settings.topic_usage_dlq, 0)]
    assert orjson.loads(letter)["offset"] == 3
    assert headers == bad.headers  # a dead letter keeps the record's headers (contract 1.4)
    store.apply(step.state.updates())
    [(period, total)] = totals_of(store, "a").periods["api_calls"].items()
    assert total == 850  # the repeated record_id counted once
    store.close()
