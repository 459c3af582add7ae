"""What a step holds until its transaction commits costs about what it encodes.

A plans step and a usage step of an app built by the factory, driven against a real
RocksDB store, over many accounts: every value a step writes and every message it
queues is held until the engine has committed the step, with up to eight steps in
flight. Each must cost about its length: orjson 3.12+'s ``dumps`` output kept a 4 kB
allocation per value: a 100,000-account worker peaked at 1.8 GB of RSS before
``state.jsonbytes``, 0.95 GB after (docs/capacity.md, Memory).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import orjson

from agents.plans import PlansHandler
from agents.usage import UsageHandler
from engine.step import Step
from state.transaction import StepState
from tests.harness.steps import Record, open_store, runtime_of

ACCOUNTS = 1000


def _held_bytes(step: Step) -> tuple[int, int, int]:
    """(values, their total length, bytes freed when the step lets them go)."""
    values = [v for changes in step.state.updates().values() for v in changes.values() if v]
    values += [message[1] for queued in step.messages.values() for message in queued]
    count, length = len(values), sum(len(v) for v in values)
    del values
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    step.state.updates().clear()
    step.messages.clear()
    gc.collect()
    return count, length, before - tracemalloc.get_traced_memory()[0]


def _assert_right_sized(step: Step) -> None:
    count, length, freed = _held_bytes(step)
    assert count >= ACCOUNTS, count
    # A bytes object's header is 33 B; pymalloc rounds to 16 B and dict slots go too.
    assert freed < 2 * length + 80 * count, (
        f"{count} values of {length / count:.0f} B on average held {freed / count:.0f} B each"
    )


def test_a_step_holds_its_values_at_their_size(tmp_path: Path) -> None:
    runtime = runtime_of(tmp_path, 1)
    settings = runtime.settings
    store = open_store(tmp_path, 0)
    now = int(time.time() * 1000)
    accounts = [f"acct-{i:06d}" for i in range(ACCOUNTS)]
    plans = [
        Record(
            a.encode(),
            orjson.dumps(
                {"account_id": a, "plan_id": "free", "updated_at": "2026-01-01T00:00:00Z"}
            ),
            i,
            now,
            settings.topic_accounts,
        )
        for i, a in enumerate(accounts)
    ]
    usage = [
        Record(
            a.encode(),
            orjson.dumps(
                {
                    "record_id": f"r{i}",
                    "account_id": a,
                    "metric": "api_calls",
                    "quantity": 900,  # 90% of the free plan: a threshold-near event each
                    "timestamp": now,
                }
            ),
            i,
            now,
            settings.topic_usage,
        )
        for i, a in enumerate(accounts)
    ]
    tracemalloc.start()
    try:
        step = Step(0, StepState(store), now)
        PlansHandler(runtime).process(step, settings.topic_accounts, plans)
        store.apply(step.state.updates())
        _assert_right_sized(step)

        step = Step(0, StepState(store), now)
        UsageHandler(runtime).process(step, settings.topic_usage, usage)
        assert step.messages, "the usage step queued no events"
        store.apply(step.state.updates())
        _assert_right_sized(step)
    finally:
        tracemalloc.stop()
        store.close()
