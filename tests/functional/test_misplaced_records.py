"""Records placed by another partitioner than murmur2 (issue 16, item 10; contract 1.2).

A librdkafka producer at its defaults places a record keyed by its account on the partition
CRC32 gives the key. The worker must judge every record on the partition murmur2 gives its
account: a record found elsewhere is forwarded there inside the step (never judged where it
landed), counted by topic, and reported once in the log with the fix. Driven through the
real handlers against one real RocksDB store per partition, without a broker.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.plans import PlansHandler
from agents.usage import UsageHandler
from config.settings import Settings
from domain.common.timeutil import to_rfc3339
from domain.intake.partitioning import account_partition
from engine.step import Step
from state.store import PartitionStore
from state.transaction import StepState
from tables.accounts import plan_of
from tables.forget import forgotten_at
from tables.totals import totals_of
from tests.cloudevents_oracle import event_payloads
from tests.harness.steps import Record, commit, open_store, runtime_of

PARTITIONS = 2
NOW_MS = int(time.time() * 1000)


def _misplaced_account() -> str:
    """An account librdkafka's default partitioner (CRC32) puts on the other partition."""
    for i in range(100):
        account = f"acct-{i}"
        if zlib.crc32(account.encode()) % PARTITIONS != account_partition(account, PARTITIONS):
            return account
    raise AssertionError("no account where CRC32 and murmur2 differ")


ACCOUNT = _misplaced_account()
HOME = account_partition(ACCOUNT, PARTITIONS)
AWAY = 1 - HOME


class Worker:
    """Both partitions' stores and handlers, steps applied as the engine does after commit."""

    def __init__(self, tmp_path: Path) -> None:
        self.runtime = runtime_of(tmp_path, PARTITIONS)
        self.settings: Settings = self.runtime.settings
        self.stores: dict[int, PartitionStore] = {
            p: open_store(tmp_path, p) for p in range(PARTITIONS)
        }
        self.usage = UsageHandler(self.runtime)
        self.plans = PlansHandler(self.runtime)
        self.offset = 0

    def record(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: Any,
        timestamp: int = NOW_MS,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Record:
        self.offset += 1
        raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
        return Record(key, raw, self.offset, timestamp, topic, partition, headers)

    def step(self, partition: int, topic: str, *records: Record) -> Step:
        handler = self.plans if "plans" in topic or "account" in topic else self.usage
        step = Step(partition, StepState(self.stores[partition]), NOW_MS)
        handler.process(step, topic, list(records))
        commit(self.stores[partition], step)
        return step

    def deliver(self, step: Step, topic: str) -> Step | None:
        """Run the step that consumes what ``step`` forwarded to ``topic`` (one partition)."""
        targets = [(t, p) for t, p in step.messages if t == topic]
        if not targets:
            return None
        [(_, partition)] = targets
        records = [
            self.record(topic, partition, m[0], m[1], headers=m[2] if len(m) == 3 else ())
            for m in step.messages[(topic, partition)]
        ]
        return self.step(partition, topic, *records)

    def forwarded(self, topic: str) -> float:
        value = self.runtime.metrics.registry.get_sample_value(
            "moments_records_forwarded_total", {"topic": topic}
        )
        return value or 0.0

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


@pytest.fixture
def worker(tmp_path: Path) -> Any:
    w = Worker(tmp_path)
    yield w
    w.close()


def _usage(record_id: str, quantity: int = 100) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "account_id": ACCOUNT,
        "metric": "api_calls",
        "quantity": quantity,
        "timestamp": NOW_MS,
    }


def _plan(plan_id: str = "free", updated_ms: int = NOW_MS - 3_600_000) -> dict[str, Any]:
    return {"account_id": ACCOUNT, "plan_id": plan_id, "updated_at": to_rfc3339(updated_ms)}


def test_metric_series_of_both_inputs_exist_from_the_start(worker: Worker) -> None:
    s = worker.settings
    assert worker.forwarded(s.topic_usage) == 0
    assert worker.forwarded(s.topic_accounts) == 0
    sampled = worker.runtime.metrics.registry.get_sample_value(
        "moments_records_forwarded_total", {"topic": s.topic_usage}
    )
    assert sampled == 0.0


def test_usage_keyed_right_on_another_partition_is_forwarded_not_judged(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    s = worker.settings
    away = worker.step(
        AWAY, s.topic_usage, worker.record(s.topic_usage, AWAY, ACCOUNT.encode(), _usage("r1"))
    )
    # Nothing judged where it landed: no totals, no outcome counted, no event, no dead letter.
    assert totals_of(worker.stores[AWAY], ACCOUNT).periods == {}
    [(topic, partition)] = list(away.messages)
    assert (topic, partition) == (s.topic_rekey, HOME)
    assert worker.forwarded(s.topic_usage) == 1
    # Judged once on its account's partition.
    worker.deliver(away, s.topic_rekey)
    [(_, total)] = totals_of(worker.stores[HOME], ACCOUNT).periods["api_calls"].items()
    assert total == 100
    assert worker.forwarded(s.topic_rekey) == 0  # placed right by the worker: not forwarded


#: Headers a forwarded record must keep (a binary-mode CloudEvent's are its attributes).
HEADERS = (("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)


@pytest.mark.parametrize("keyed_right", [True, False], ids=["misplaced", "re-keyed"])
def test_a_forwarded_usage_record_keeps_its_headers(worker: Worker, keyed_right: bool) -> None:
    s = worker.settings
    key = ACCOUNT.encode() if keyed_right else b"not-the-account"
    record = worker.record(s.topic_usage, AWAY, key, _usage("r1"), headers=HEADERS)
    away = worker.step(AWAY, s.topic_usage, record)
    [(topic, _)] = list(away.messages)
    [forwarded] = away.messages[(topic, _)]
    assert forwarded == (ACCOUNT.encode(), record.value, HEADERS)
    # Without headers, the message stays a (key, value) pair.
    plain = worker.step(AWAY, s.topic_usage, worker.record(s.topic_usage, AWAY, key, _usage("r2")))
    assert [len(m) for m in plain.messages[(topic, _)]] == [2]


def test_the_fix_is_reported_once_per_topic(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    s = worker.settings
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            record = worker.record(s.topic_usage, AWAY, ACCOUNT.encode(), _usage(f"r{i}"))
            worker.step(AWAY, s.topic_usage, record)
        plan = worker.record(s.topic_accounts, AWAY, ACCOUNT.encode(), _plan())
        worker.step(AWAY, s.topic_accounts, plan)
    reports = [r.getMessage() for r in caplog.records if "murmur2_random" in r.getMessage()]
    assert len(reports) == 2, reports  # one per topic, not one per record
    assert reports[0].startswith(f"{s.topic_usage}:")
    assert reports[1].startswith(f"{s.topic_accounts}:")
    assert worker.forwarded(s.topic_usage) == 3
    assert worker.forwarded(s.topic_accounts) == 1


def test_a_plan_on_another_partition_is_applied_only_on_its_own(worker: Worker) -> None:
    s = worker.settings
    record = worker.record(s.topic_accounts, AWAY, ACCOUNT.encode(), _plan())
    away = worker.step(AWAY, s.topic_accounts, record)
    assert plan_of(worker.stores[AWAY], ACCOUNT) is None
    assert list(away.messages) == [(s.topic_plans_forward, HOME)]
    assert (
        worker.runtime.metrics.registry.get_sample_value(
            "moments_plan_records_total", {"outcome": "applied"}
        )
        == 0
    )
    worker.deliver(away, s.topic_plans_forward)
    held = plan_of(worker.stores[HOME], ACCOUNT)
    assert held is not None and held.plan_id == "free"
    assert (
        worker.runtime.metrics.registry.get_sample_value(
            "moments_plan_records_total", {"outcome": "applied"}
        )
        == 1
    )


def test_plan_and_usage_of_one_account_meet_on_its_partition(worker: Worker) -> None:
    """Plans from a murmur2 producer, usage from a librdkafka one: usage judged with its plan."""
    s = worker.settings
    worker.step(
        HOME, s.topic_accounts, worker.record(s.topic_accounts, HOME, ACCOUNT.encode(), _plan())
    )
    usage = worker.record(s.topic_usage, AWAY, ACCOUNT.encode(), _usage("r1", 900))
    away = worker.step(AWAY, s.topic_usage, usage)
    home = worker.deliver(away, s.topic_rekey)
    assert home is not None
    # free: api_calls 1,000, near level 0.8: 900 is announced against the plan.
    near = home.messages[(s.event_topic("threshold-near"), HOME)]
    assert [e["account_id"] for e in event_payloads(near, s.event_source)] == [ACCOUNT]


def test_a_forwarded_tombstone_keeps_the_time_it_was_published(worker: Worker) -> None:
    s = worker.settings
    worker.step(
        HOME, s.topic_accounts, worker.record(s.topic_accounts, HOME, ACCOUNT.encode(), _plan())
    )
    published_ms = NOW_MS - 600_000  # a tombstone that waited ten minutes on the other side
    tombstone = worker.record(s.topic_accounts, AWAY, ACCOUNT.encode(), None, published_ms)
    away = worker.step(AWAY, s.topic_accounts, tombstone)
    assert forgotten_at(worker.stores[AWAY], ACCOUNT) is None  # not applied where it landed
    worker.deliver(away, s.topic_plans_forward)
    assert plan_of(worker.stores[HOME], ACCOUNT) is None
    assert forgotten_at(worker.stores[HOME], ACCOUNT) == published_ms
    # The account re-created after the tombstone (but before it was forwarded) is applied.
    recreated = _plan("starter", updated_ms=published_ms + 60_000)
    record = worker.record(s.topic_accounts, HOME, ACCOUNT.encode(), recreated)
    worker.step(HOME, s.topic_accounts, record)
    held = plan_of(worker.stores[HOME], ACCOUNT)
    assert held is not None and held.plan_id == "starter"


def test_an_invalid_misplaced_plan_is_dead_lettered_where_it_landed(worker: Worker) -> None:
    s = worker.settings
    record = worker.record(s.topic_accounts, AWAY, ACCOUNT.encode(), b"{")
    step = worker.step(AWAY, s.topic_accounts, record)
    assert list(step.messages) == [(s.topic_accounts_dlq, AWAY)]
    assert worker.forwarded(s.topic_accounts) == 0
